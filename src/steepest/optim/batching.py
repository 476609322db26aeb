"""How the optimizer dualizes its stacks: locally (steepest.matrices.stacking) or across ranks.

``Stacks`` is the optimizer's hook around ``map_matrices``: it counts the matrices dualized
and, when torch.distributed is in use, hands the work to
``steepest.distributed`` (the only package with collectives).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch

from steepest.matrices.stacking import map_matrices
from steepest.matrices.views import View, local_part

__all__ = ["Stacks", "finite_each", "uses_distributed", "whole_matrix"]


class Stacks:
    """How one optimizer dualizes its stacks; counts the matrices dualized on this process.

    Local by default. When torch.distributed is in use (a direction is a DTensor, or the
    default process group has more than one rank) the work goes to
    ``steepest.distributed.ShardedDualizer`` (created with default options on first use, or
    set by ``steepest.distributed.configure``).

    Attributes:
        orthogonalizations: whole matrices dualized by this process since construction (for
            Muon: orthogonalized). Summed over the ranks of one shard group it equals the
            number of matrices updated.
        block_orthogonalizations: local-shard matrices dualized on block steps (MuonBP mode).
        steps: optimizer steps taken with this hook (saved in the optimizer's state_dict).
        distributed: None (local, or auto-detect) or a ShardedDualizer.
    """

    def __init__(self) -> None:
        self.orthogonalizations = 0
        self.block_orthogonalizations = 0
        self.steps = 0
        self.distributed: Any = None

    def start_step(self) -> None:
        """Called by the optimizer once per step that updates parameters."""
        self.steps += 1

    def counted(
        self, fn: Callable[..., torch.Tensor], *, block: bool = False
    ) -> Callable[..., torch.Tensor]:
        """fn on a (K, m, n) stack (and any further arguments), adding K to the counter
        (block steps to their own)."""

        def run(X: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
            if block:
                self.block_orthogonalizations += X.shape[0]
            else:
                self.orthogonalizations += X.shape[0]
            return fn(X, *args)

        return run

    def map(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        tensors: list[torch.Tensor],
        view: View = "auto",
        blocks: Sequence[int] | None = None,
        key: object = None,
    ) -> list[torch.Tensor]:
        """fn on every stack of the tensors' matrices, locally or shared across ranks.

        Args:
            fn: maps a (K, m, n) stack to a tensor of the same shape, matrix by matrix.
            tensors: the directions (plain tensors or DTensors), each read under view/blocks.
            view, blocks: the group's matrix view (see views.py).
            key: names the rank plan of these stacks (the param group's index).

        Returns:
            one update per tensor, of its shape (a DTensor with its placements for a DTensor).
        """
        if self.distributed is None and uses_distributed(tensors):
            self.sharing()
        if self.distributed is not None:
            updates: list[torch.Tensor] = self.distributed.map(self, fn, tensors, view, blocks, key)
            return updates
        return map_matrices(self.counted(fn), tensors, view, blocks)

    def sharing(self) -> Any:
        """The ShardedDualizer (steepest.distributed), created with default options on
        first use."""
        if self.distributed is None:
            from steepest.distributed import ShardedDualizer

            self.distributed = ShardedDualizer()
        return self.distributed

    def first_nonfinite(self, grads: list[torch.Tensor]) -> int | None:
        """Index of the first gradient holding inf or nan, or None; the same on every rank.

        One max-abs reduction and one host sync per device, on local shards (empty shards of
        uneven FSDP2 splits skipped); under torch.distributed the ranks then agree on the
        smallest bad index, so that all of them skip (or raise) together.
        """
        distributed = uses_distributed(grads)
        local = [local_part(g) for g in grads] if distributed else grads
        by_device: dict[torch.device, list[int]] = defaultdict(list)
        for i, g in enumerate(local):
            if g.numel():
                by_device[g.device].append(i)
        bad = None
        for members in by_device.values():
            finite = finite_each([local[i] for i in members])
            if not bool(finite.all()):
                first = members[int((~finite).nonzero()[0])]
                bad = first if bad is None else min(bad, first)
        if self.distributed is None and distributed:
            self.sharing()
        if self.distributed is not None:
            bad = self.distributed.agree_on_index(bad, len(grads), grads)
        return bad

    def state_dict(self) -> dict[str, int]:
        """The step count (the same on every rank; the counters are per process, not saved)."""
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the step count (0 if absent)."""
        self.steps = int(state.get("steps", 0))


def finite_each(tensors: list[torch.Tensor]) -> torch.Tensor:
    """A bool vector on the tensors' (one) device: whether each holds no inf or nan, from one
    foreach max-abs reduction, without a host sync."""
    peaks = list(torch._foreach_norm(tensors, math.inf))
    if len({x.dtype for x in peaks}) > 1:
        peaks = [x.float() for x in peaks]
    return torch.stack(peaks).isfinite()


def whole_matrix(
    t: torch.Tensor,
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """(t whole, the way back to t's layout): steepest.distributed.whole for a DTensor (an
    all-gather), t itself and the identity otherwise (no torch.distributed import)."""
    if not uses_distributed([t]):
        return t, _identity
    from steepest.distributed import whole

    return whole(t)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def uses_distributed(tensors: list[torch.Tensor]) -> bool:
    """True if a tensor is a DTensor or the default process group has more than one rank."""
    dist = torch.distributed
    if not dist.is_available() or not dist.is_initialized():
        return False  # a DTensor lives on a device mesh, which needs the default process group
    from torch.distributed.tensor import DTensor

    if any(isinstance(t, DTensor) for t in tensors):
        return True
    return dist.get_world_size() > 1
