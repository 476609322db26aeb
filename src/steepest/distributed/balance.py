"""Which rank dualizes which matrix: a longest-processing-time plan over the polar flops.

Every item (a matrix of a replicated stack, or a whole row-sharded tensor of an FSDP2 stack)
costs the matrix products of the polar iteration on it, counted from its shape. Items are
taken from the most to the least costly and each goes to the rank with the least work so far
(Graham's LPT rule), so a stack with fewer matrices than ranks, or a mix of large and small
shapes, does not leave one rank with most of the work, and no stack is padded.

Reference: R. L. Graham, "Bounds on Multiprocessing Timing Anomalies", SIAM J. Appl. Math.
17 (1969) (LPT: the busiest machine is within 4/3 - 1/(3W) of the optimum).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["RankPlan", "balance", "plan_shapes", "polar_flops"]

#: Steps of the polar iteration counted per matrix (Polar Express' default; the plan only
#: compares items, so the count scales every cost alike).
PLAN_STEPS: Final = 5


def polar_flops(m: int, n: int, steps: int = PLAN_STEPS) -> float:
    """Matrix-product flops of `steps` quintic polar steps on one m x n matrix.

    Per step, with s = min(m, n) and l = max(m, n): A = X X^T (2 s^2 l), B = b A + c A^2
    (2 s^3), X <- a X + B X (2 s^2 l).

    References: Amsel, Persson, Musco, Gower, "The Polar Express: Optimal Matrix Sign Methods
    and Their Application to the Muon Algorithm", arXiv 2505.16932, Algorithm 1.
    """
    s, l = min(m, n), max(m, n)
    return steps * (4.0 * s * s * l + 2.0 * s**3)


@dataclass(frozen=True)
class RankPlan:
    """Owners of the items of some stacks.

    Attributes:
        owners: per stack, the owning rank of each of its items.
        loads: flops per rank of these stacks' items.
        totals: flops per rank with the work the plan started from (earlier groups of the
            step) added.
    """

    owners: tuple[tuple[int, ...], ...]
    loads: tuple[float, ...]
    totals: tuple[float, ...]

    def mine(self, stack: int, rank: int) -> list[int]:
        """Indices of stack `stack`'s items that `rank` owns, in stack order."""
        return [i for i, owner in enumerate(self.owners[stack]) if owner == rank]

    @property
    def imbalance(self) -> float:
        """Busiest rank's flops over the mean, counting the work the plan started from (1.0:
        even; nan without work)."""
        mean = sum(self.totals) / len(self.totals)
        return max(self.totals) / mean if mean > 0 else math.nan

    def summary(self) -> str:
        """One line: ranks, items, flops per rank and the busiest rank's ratio to the mean."""
        items = sum(len(o) for o in self.owners)
        loads = ", ".join(f"{x:.3g}" for x in self.loads)
        return (
            f"{len(self.loads)} ranks, {items} items in {len(self.owners)} stacks; "
            f"polar flops per rank [{loads}]; with the step's earlier groups max/mean "
            f"{self.imbalance:.3f}"
        )


def balance(
    costs: Sequence[Sequence[float]], world: int, start: Sequence[float] | None = None
) -> RankPlan:
    """The LPT plan of items with these costs (one list per stack) over `world` ranks.

    Args:
        costs: per stack, the flops of each item (e.g. ``polar_flops`` of its matrices).
        world: the number of ranks, >= 1.
        start: work each rank already has (earlier groups of the same step), default none;
            the returned loads count only these items.

    Returns:
        the plan; every rank computing it from the same costs gets the same plan (ties go to
        the lower rank; equal items keep stack order). In a stack of equal items each rank's
        items are consecutive, in rank order (so its share is a slice of the stack).
    """
    if world < 1:
        raise ValueError(f"balance: world={world}; need an int >= 1")
    busy = list(start) if start is not None else [0.0] * world
    if len(busy) != world:
        raise ValueError(f"balance: start has {len(busy)} entries; need world={world}")
    heap = [(load, rank) for rank, load in enumerate(busy)]
    heapq.heapify(heap)
    items = sorted(
        ((c, s, i) for s, stack in enumerate(costs) for i, c in enumerate(stack)),
        key=lambda item: (-item[0], item[1], item[2]),
    )
    owners = [[0] * len(stack) for stack in costs]
    loads = [0.0] * world
    for cost, s, i in items:
        load, rank = heapq.heappop(heap)
        owners[s][i] = rank
        loads[rank] += cost
        heapq.heappush(heap, (load + cost, rank))
    for s, stack in enumerate(costs):  # equal items: each rank's share consecutive
        if len(set(stack)) == 1:
            owners[s].sort()
    totals = tuple(a + b for a, b in zip(busy, loads, strict=True))
    return RankPlan(tuple(tuple(o) for o in owners), tuple(loads), totals)


def plan_shapes(shapes: Sequence[tuple[int, int]], world: int) -> RankPlan:
    """The plan of replicated (m, n) matrices of these shapes over `world` ranks: one stack
    per shape in order of first appearance, as ``ShardedDualizer`` stacks them in one
    step."""
    stacks: dict[tuple[int, int], list[float]] = {}
    for m, n in shapes:
        stacks.setdefault((m, n), []).append(polar_flops(m, n))
    return balance(list(stacks.values()), world)
