"""Averages over the ranks of a process group: MuLoCo's outer gradient (the mean of the
workers' parameter deltas) and the common starting point of the workers.

Reference: Thérien, Huang, Rish, Belilovsky, "MuLoCo: Muon is a practical inner optimizer for
DiLoCo", arXiv 2505.23725; Douillard et al., "DiLoCo: Distributed Low-Communication Training of
Language Models", arXiv 2311.08455 (the all-reduce of the outer gradients).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["all_reduce_mean", "broadcast_"]


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    start = 0
    for t in tensors:
        t.copy_(flat[start : start + t.numel()].view_as(t))
        start += t.numel()


def all_reduce_mean(tensors: list[torch.Tensor], group: ProcessGroup | None = None) -> None:
    """Replace every tensor (one dtype) by its mean over the ranks of ``group``: one
    all-reduce of all of them, flattened, then a division by the world size."""
    if not tensors:
        return
    if len({t.dtype for t in tensors}) > 1:
        raise ValueError(
            f"all_reduce_mean: tensors have dtypes {sorted({str(t.dtype) for t in tensors})}; "
            "need one dtype"
        )
    flat = _flat(tensors)
    dist.all_reduce(flat, group=group)
    _unflat(flat / dist.get_world_size(group), tensors)


def broadcast_(tensors: list[torch.Tensor], group: ProcessGroup | None = None) -> None:
    """Replace every tensor by the first rank's (of ``group``) values, one broadcast per
    dtype."""
    src = dist.get_global_rank(group, 0) if group is not None else 0
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for members in by_dtype.values():
        flat = _flat(members)
        dist.broadcast(flat, src=src, group=group)
        _unflat(flat, members)
