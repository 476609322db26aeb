"""Every Triton kernel of the library, each with its launcher; the torch references live with
their callers (named in each module). Imports nothing from the package, and no Triton module
is imported until a kernel runs, so CPU installs without triton import this package.

Modules: syrk (alpha X X^T + beta C + shift I, half the tiles), momentum (the fused stage 1's
momentum, direction, stack and norm), finite (the device-side finiteness verdict).
"""

from __future__ import annotations

import importlib.util

import torch

__all__ = ["triton_available"]


@torch.compiler.assume_constant_result  # type: ignore[untyped-decorator]  # untyped in torch
def triton_available() -> bool:
    """Whether the triton package can be imported (checked without importing it)."""
    return importlib.util.find_spec("triton") is not None
