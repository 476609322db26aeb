"""Whether every entry of many tensors is finite, into a device flag, without a host sync.

On CUDA (with triton, contiguous tensors) one Triton launch per dtype reads every tensor
through a table of data pointers (steepest.optim._finite_triton); elsewhere, and where the
kernel cannot run, the foreach max-abs reduction of steepest.optim.batching.finite_each.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from steepest.polar.kernels import triton_available

from .batching import finite_each

__all__ = ["CHUNK", "FINITE_KERNEL", "all_finite_into"]

#: "auto" (the Triton kernel where it can run) or "torch" (always the foreach reduction).
FINITE_KERNEL = "auto"
#: Entries of one tensor each program of the kernel reads.
CHUNK = 1 << 16
#: The kernel's dtypes (it sums in float32).
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

#: (device, dtype, data pointers, numels) -> the kernel's device tables, for the last 8 sets
_TABLES: dict[tuple[object, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def all_finite_into(flag: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    """flag (a 0-dim bool tensor on the tensors' one device) := no tensor holds inf or nan."""
    if not tensors:
        flag.fill_(True)
        return
    if not _kernel_runs(tensors):
        flag.copy_(finite_each(tensors).all())
        return
    from ._finite_triton import clear_if_nonfinite_triton

    flag.fill_(True)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = defaultdict(list)
    for t in tensors:
        by_dtype[t.dtype].append(t)
    for dtype, members in by_dtype.items():
        clear_if_nonfinite_triton(dtype, *_tables(members), flag, CHUNK)


def _kernel_runs(tensors: list[torch.Tensor]) -> bool:
    return (
        FINITE_KERNEL == "auto"
        and triton_available()
        and all(t.is_cuda and t.is_contiguous() and t.dtype in KERNEL_DTYPES for t in tensors)
    )


def _tables(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pointers, rows, numels) on the tensors' device, cached by the tensors' addresses
    (the caching allocator usually hands a step's new gradients the same ones)."""
    key = (
        tensors[0].device,
        tensors[0].dtype,
        *(t.data_ptr() for t in tensors),
        *(t.numel() for t in tensors),
    )
    tables = _TABLES.get(key)
    if tables is None:
        rows = [(i, s) for i, t in enumerate(tensors) for s in range(0, t.numel(), CHUNK)]
        device = tensors[0].device
        tables = (
            torch.tensor([t.data_ptr() for t in tensors], dtype=torch.int64, device=device),
            torch.tensor(rows, dtype=torch.int64, device=device),
            torch.tensor([t.numel() for t in tensors], dtype=torch.int64, device=device),
        )
        if len(_TABLES) >= 8:
            _TABLES.pop(next(iter(_TABLES)))
        _TABLES[key] = tables
    return tables
