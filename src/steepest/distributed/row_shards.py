"""The collectives of a power iteration on a row-sharded matrix (Dion's distributed form).

A matrix B (m, n) whose rows are split over the ranks of a process group as torch.chunk splits
them (FSDP2's ``Shard(0)``) is never gathered: the power iteration exchanges only its small
factors. With P = B Q (m, r) row-sharded like B and Q, R (n, r) replicated:

* ``sum``: an all-reduce of a replicated quantity that is a sum over rows, e.g.
  R = B^T P = sum over ranks of B_i^T P_i (n x r), a sketch S P (k x r) or a Gram matrix
  P^T P (r x r), or the squared Frobenius norm of B (one number);
* ``gather``: an all-gather of the (m, r) factor P, for an orthonormalization that needs all
  of its rows (Householder QR).

Reference: Ahn, Xu, Abreu, Fan, Magakyan, Sharma, Zhan, Langford, "Dion: Distributed
Orthonormalized Updates", arXiv 2504.05295 (the sharded power iteration: the all-reduces of
the low-rank factors instead of the matrix).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Shard

from .sharded import shard_rows

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["RowShards", "like", "zeros_like_rows"]


class RowShards:
    """This rank's rows of a matrix of ``rows`` rows split over ``group`` (torch.chunk).

    Attributes:
        sizes: rows per rank; offset: the index of this rank's first row; size: its count.
    """

    def __init__(self, rows: int, group: ProcessGroup | None) -> None:
        self.group = group
        self.world, self.rank = dist.get_world_size(group), dist.get_rank(group)
        self.rows = rows
        self.sizes = shard_rows(rows, self.world)
        self.offset = sum(self.sizes[: self.rank])
        self.size = self.sizes[self.rank]

    @classmethod
    def of(cls, t: torch.Tensor) -> RowShards | None:
        """The row split of a DTensor placed ``(Shard(0),)`` on a 1-D mesh (FSDP2); None for
        any other tensor or placement."""
        if not isinstance(t, DTensor) or t.device_mesh.ndim != 1:
            return None
        if tuple(t.placements) != (Shard(0),):
            return None
        return cls(t.shape[0], t.device_mesh.get_group(0))

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """t summed over the ranks, in place (an all-reduce); returns t."""
        dist.all_reduce(t, group=self.group)
        return t

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """The (rows, ...) tensor whose rows this rank holds ``local`` of (an all-gather of
        ceil(rows / world) rows per rank, the short shards padded)."""
        if local.shape[0] != self.size:
            raise ValueError(
                f"RowShards.gather: rank {self.rank} holds {local.shape[0]} rows; expected "
                f"{self.size} of {self.rows} (torch.chunk split over {self.world} ranks)"
            )
        chunk = max(self.sizes)
        send = local.new_zeros((chunk, *local.shape[1:]))
        send[: self.size] = local
        parts = [torch.empty_like(send) for _ in range(self.world)]
        dist.all_gather(parts, send, group=self.group)
        return torch.cat([part[:size] for part, size in zip(parts, self.sizes, strict=True)])

    def mine(self, full: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a replicated (rows, ...) tensor (no communication)."""
        return full[self.offset : self.offset + self.size]

    def columns(self, full: torch.Tensor) -> torch.Tensor:
        """This rank's columns of a replicated (..., rows) tensor, e.g. a sketch matrix S
        whose product S B sums over B's rows (no communication)."""
        return full[..., self.offset : self.offset + self.size]


def like(t: DTensor, local: torch.Tensor) -> DTensor:
    """``local`` as this rank's shard of a DTensor with t's mesh, placements and shape."""
    return DTensor.from_local(
        local, t.device_mesh, t.placements, shape=t.shape, stride=t.stride(), run_check=False
    )


def zeros_like_rows(t: DTensor, columns: int, dtype: torch.dtype) -> DTensor:
    """A zero (t.shape[0], columns) DTensor split by rows like t (this rank's rows local)."""
    local = torch.zeros(t.to_local().shape[0], columns, dtype=dtype, device=t.to_local().device)
    return DTensor.from_local(
        local,
        t.device_mesh,
        t.placements,
        shape=torch.Size((t.shape[0], columns)),
        stride=(columns, 1),
        run_check=False,
    )
