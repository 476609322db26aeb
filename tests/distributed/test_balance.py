"""The rank plan (steepest.distributed.balance) on the benchmark sets, without processes.

The busiest rank's flops must be within 10% of the mean on the GPT-2-small and 1.3B-like
sets (bench/common.py) at W = 2, 4, 8. The flops are recounted here from the products of one
quintic polar step, not taken from the plan.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from steepest.distributed import balance, plan_shapes


def _bench_sets() -> dict:
    """bench/common.py's SETS, loaded by path: bench/ stays off sys.path (its kernels.py
    would shadow the `kernels` package that transformers imports)."""
    path = Path(__file__).resolve().parents[2] / "bench" / "common.py"
    spec = importlib.util.spec_from_file_location("steepest_bench_common", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SETS


SETS = _bench_sets()


def recount(m: int, n: int, steps: int = 5) -> float:
    """Flops of `steps` polar steps on an m x n matrix, product by product: X X^T, A A, B X
    on the short side s and long side l (a product (a x b)(b x c) costs 2 a b c)."""
    s, l = min(m, n), max(m, n)
    gram = 2 * s * l * s
    square = 2 * s * s * s
    apply = 2 * s * s * l
    return steps * (gram + square + apply)


@pytest.mark.parametrize("name", ["gpt2-small", "1.3b"])
@pytest.mark.parametrize("world", [2, 4, 8])
def test_busiest_rank_within_10_percent_of_the_mean(name, world):
    shapes = SETS[name]
    plan = plan_shapes(shapes, world)
    stacks: dict[tuple[int, int], list[int]] = {}
    for i, shape in enumerate(shapes):
        stacks.setdefault(shape, []).append(i)
    loads = [0.0] * world
    owned = 0
    for s, (shape, members) in enumerate(stacks.items()):
        assert len(plan.owners[s]) == len(members)
        for owner in plan.owners[s]:
            loads[owner] += recount(*shape)
            owned += 1
    assert owned == len(shapes)
    mean = sum(loads) / world
    assert max(loads) / mean <= 1.1, (name, world, loads)


def test_lpt_spreads_a_large_matrix_and_small_ones():
    """One (64, 64) and four (8, 64) matrices on 2 ranks: the big one alone on rank 0, the
    four small ones on rank 1 (a split of each stack in halves would put the big one and two
    small ones on rank 0)."""
    plan = plan_shapes([(64, 64), (8, 64), (8, 64), (8, 64), (8, 64)], 2)
    assert plan.owners == ((0,), (1, 1, 1, 1))
    assert plan.loads[0] == recount(64, 64)
    assert plan.loads[1] == 4 * recount(8, 64)


def test_plans_continue_from_earlier_work():
    first = balance([[3.0]], 2)
    second = balance([[2.0, 1.0]], 2, start=first.totals)
    assert first.owners == ((0,),) and second.owners == ((1, 1),)
    assert second.totals == (3.0, 3.0) and second.imbalance == 1.0


def test_bad_world_raises():
    with pytest.raises(ValueError, match="world=0"):
        balance([[1.0]], 0)


def test_equal_items_go_to_each_rank_consecutively():
    """Seven equal items and three unequal ones on 3 ranks, rank 0 busy before (2.0): by
    hand, LPT gives the 2.0 items to ranks 1 and 2, then the unit items round-robin from
    rank 0 (3, 2, 2 of them) and the last unit item to rank 1. The equal stack's items are
    then regrouped so that each rank's are consecutive, in rank order (a rank's share of a
    stack is one slice of it), with the same counts and loads."""
    plan = balance([[1.0] * 7, [2.0, 1.0, 2.0]], 3, start=[2.0, 0.0, 0.0])
    assert plan.owners == ((0, 0, 0, 1, 1, 2, 2), (1, 1, 2))
    assert plan.loads == (3.0, 5.0, 4.0)
    assert plan.totals == (5.0, 5.0, 4.0)
