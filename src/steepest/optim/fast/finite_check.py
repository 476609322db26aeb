"""Whether every entry of many tensors is finite, into a device flag, without a host sync.

On CUDA (with triton, contiguous tensors) one Triton launch per dtype reads every tensor
through a table of data pointers (steepest.kernels.finite); elsewhere, where the kernel
cannot run and with kernel="torch", the foreach max-abs reduction of
steepest.optim.batching.finite_each (the reference).
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from typing import Final

import torch

from steepest.kernels import triton_available

from ..batching import finite_each
from .device_tables import DeviceTables

__all__ = ["CHUNK", "all_finite_into"]

#: Entries of one tensor each program of the kernel reads.
CHUNK: Final = 1 << 16
#: The kernel's dtypes (it sums in float32).
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

#: The kernel's tables (pointers, rows, numels), keyed by device, dtype, data pointers and
#: sizes: the caching allocator usually hands a step's new gradients the same addresses.
_TABLES = DeviceTables(kept=8)


def all_finite_into(flag: torch.Tensor, tensors: list[torch.Tensor], kernel: str = "auto") -> None:
    """flag (a 0-dim bool tensor on the tensors' one device) := no tensor holds inf or nan.

    ``kernel``: "auto" (the Triton kernel where it can run) or "torch" (the foreach
    reduction)."""
    if not tensors:
        flag.fill_(True)
        return
    if kernel == "torch" or not _kernel_runs(tensors):
        flag.copy_(finite_each(tensors).all())
        return
    from steepest.kernels.finite import clear_if_nonfinite_triton

    by_dtype: dict[torch.dtype, list[torch.Tensor]] = defaultdict(list)
    for t in tensors:
        by_dtype[t.dtype].append(t)
    launches = []
    for dtype, members in by_dtype.items():
        table = _TABLES.get(_key(members), partial(_build, members))
        if table is None:  # a new table while a CUDA graph records
            flag.copy_(finite_each(tensors).all())
            return
        launches.append((dtype, table))
    flag.fill_(True)
    for dtype, (pointers, rows, numels) in launches:
        clear_if_nonfinite_triton(dtype, pointers, rows, numels, flag, CHUNK)


def _kernel_runs(tensors: list[torch.Tensor]) -> bool:
    return triton_available() and all(
        t.is_cuda and t.is_contiguous() and t.dtype in KERNEL_DTYPES for t in tensors
    )


def _key(tensors: list[torch.Tensor]) -> tuple[object, ...]:
    return (
        tensors[0].device,
        tensors[0].dtype,
        *(t.data_ptr() for t in tensors),
        *(t.numel() for t in tensors),
    )


def _build(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """(pointers, rows, numels) on the tensors' device: a row (tensor, start) per program."""
    rows = [(i, s) for i, t in enumerate(tensors) for s in range(0, t.numel(), CHUNK)]
    device = tensors[0].device
    return (
        torch.tensor([t.data_ptr() for t in tensors], dtype=torch.int64, device=device),
        torch.tensor(rows, dtype=torch.int64, device=device),
        torch.tensor([t.numel() for t in tensors], dtype=torch.int64, device=device),
    )
