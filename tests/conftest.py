"""Session setup shared by every test directory.

Without a GPU, Triton kernels run in Triton's interpreter (numpy on CPU): triton reads
TRITON_INTERPRET when it is first imported, so it is set here, before any test imports it. The
interpreter tests in tests/polar/test_kernels.py then check the kernels themselves in CI; on a
machine with a GPU the variable stays unset and the compiled kernels run in the CUDA tests.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` (``pytest -m cuda`` selects them) are skipped without a GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run `pytest -m cuda` on one)")
    for item in items:
        if "cuda" in item.keywords and item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
