"""Fixtures of the experiments' tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """torch on one thread for the test: many small products run much faster so on a shared
    CPU; the thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
