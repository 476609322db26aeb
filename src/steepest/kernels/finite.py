"""Triton kernel: whether every entry of many contiguous tensors is finite, in one launch.

Program p reads one chunk of one tensor (its table row: tensor index and start) through a
table of data pointers, sums x - x (0 for a finite x, nan for inf or nan) and clears the flag
if the sum is not 0. Imported lazily (it imports triton at the top); use
steepest.optim.fast.finite_check, which builds the tables and sets the chunk size.
"""

from __future__ import annotations

from typing import Final

import torch
import triton
import triton.language as tl

from .momentum import TRITON_TYPES

__all__ = ["clear_if_nonfinite_triton"]

#: Entries per load.
BLOCK: Final = 4096


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _clear_if_nonfinite_kernel(  # type: ignore[no-untyped-def]  # triton.jit reads the body
    pointers,
    rows,
    numels,
    flag_ptr,
    DTYPE: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    tensor = tl.load(rows + 2 * pid)
    start = tl.load(rows + 2 * pid + 1)
    n = tl.load(numels + tensor)
    base = tl.load(pointers + tensor).to(tl.pointer_type(DTYPE))
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for offset in range(0, CHUNK, BLOCK):
        idx = start + offset + tl.arange(0, BLOCK)
        x = tl.load(base + idx, mask=idx < n, other=0.0).to(tl.float32)
        acc += x - x
    total = tl.sum(acc, axis=0)
    if total != 0.0:  # nan != 0: an inf or nan was read (a finite x - x is exactly 0)
        tl.store(flag_ptr, 0)


def clear_if_nonfinite_triton(
    dtype: torch.dtype, pointers: torch.Tensor, rows: torch.Tensor, numels: torch.Tensor,
    flag: torch.Tensor, chunk: int,
) -> None:  # fmt: skip
    """Launch over contiguous tensors of one dtype: pointers (int64 data pointers), rows
    (int64 (tensor, start) per program, starts chunk apart) and numels on their device; flag
    (uint8 or bool) is set to 0 if an entry is not finite and left as it is otherwise."""
    _clear_if_nonfinite_kernel[(rows.shape[0],)](
        pointers,
        rows,
        numels,
        flag,
        DTYPE=TRITON_TYPES[dtype],
        CHUNK=chunk,
        BLOCK=BLOCK,
        num_warps=8,
    )
