"""One torch thread in these tests: the tiny matrices here run fastest single-threaded on a
shared CPU (multi-threaded matmuls of 100-wide matrices wait on busy cores)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
