"""Triton kernel that multiplies the rows of the matrices of a stack by their row factors,
in place, and leaves every matrix whose factors are all 1 unread (the rare rescale of a
sharded fused step's owned stack: steepest.optim.fast.row_scales).

Imported lazily (it imports triton at the top); use steepest.optim.fast.row_scales.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .momentum import BLOCK, FIX_PROGRAMS, NUM_WARPS

__all__ = ["rescale_rows_triton"]


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _rescale_rows_kernel(  # type: ignore[no-untyped-def]  # triton.jit reads the annotations
    x_ptr,
    factor_ptr,
    rows,
    cols,
    BLOCK: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    # program (p, k): the p-th share of matrix k's blocks, after a look at its row factors
    k = tl.program_id(1).to(tl.int64)
    lanes_r = tl.arange(0, BLOCK_R)
    differ = 0
    for start in range(0, rows, BLOCK_R):
        f = tl.load(factor_ptr + k * rows + start + lanes_r, mask=start + lanes_r < rows, other=1.0)
        differ += tl.sum(tl.where(f != 1.0, 1, 0), axis=0)
    if differ > 0:
        size = rows * cols
        lanes = tl.arange(0, BLOCK)
        for start in range(tl.program_id(0) * BLOCK, size, tl.num_programs(0) * BLOCK):
            offs = start + lanes
            ok = offs < size
            x = tl.load(x_ptr + k * size + offs, mask=ok, other=0.0).to(tl.float32)
            f = tl.load(factor_ptr + k * rows + offs // cols, mask=ok, other=1.0)
            tl.store(x_ptr + k * size + offs, (x * f).to(x_ptr.dtype.element_ty), mask=ok)


def rescale_rows_triton(X: torch.Tensor, factors: torch.Tensor) -> None:
    """X (K, rows, cols) contiguous, times factors (K, rows) float32 along its rows, in place;
    a matrix whose factors are all 1 is not read. The caller checks arguments."""
    k, rows, cols = X.shape
    _rescale_rows_kernel[(FIX_PROGRAMS, k)](
        X,
        factors,
        rows,
        cols,
        BLOCK=BLOCK,
        BLOCK_R=min(triton.next_power_of_2(rows), 1024),
        num_warps=NUM_WARPS,
    )
