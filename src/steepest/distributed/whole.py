"""Whole matrices for the members whose state belongs to a whole matrix (NorMuon's per-row
second moment with its norm ratio, Shampoo's and CASPR's L and R, SOAP's bases).

Under FSDP2 their stage input is a DTensor sharded by rows; ``whole`` gathers it, the member
computes exactly what one process would with its state kept whole (replicated on every rank,
as in single-process training), and the returned function cuts the result back into the
input's placements on each rank without communication (every rank holds the same whole
result).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["whole"]


def whole(t: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """(t as a plain tensor of its global shape, a function taking a result of that shape back
    to t's layout). A DTensor is all-gathered; any other tensor passes through unchanged."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(t, DTensor):
        return t, _same
    mesh, placements = t.device_mesh, t.placements

    def back(result: torch.Tensor) -> torch.Tensor:
        # every rank holds the same result: slice locally (src_data_rank=None), no scatter
        return distribute_tensor(result, mesh, placements, src_data_rank=None)

    return t.full_tensor(), back


def _same(result: torch.Tensor) -> torch.Tensor:
    return result
