"""The dtype that optimizer state and matrix factorizations run in for a parameter dtype."""

from __future__ import annotations

import torch

__all__ = ["work_dtype"]


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for 16-bit parameters (eigh and small second moments need it), else dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
