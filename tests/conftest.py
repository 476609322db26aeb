"""Session setup shared by every test directory.

Without a GPU, Triton kernels run in Triton's interpreter (numpy on CPU): triton reads
TRITON_INTERPRET when it is first imported, so it is set here, before any test imports it. The
interpreter tests in tests/polar/test_kernels.py then check the kernels themselves in CI; on a
machine with a GPU the variable stays unset and the compiled kernels run in the CUDA tests.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
