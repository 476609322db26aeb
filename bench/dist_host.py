"""The host time of the sharded exchange's bookkeeping: ShardedDualizer.map_local at world size
1 on CPU (gloo) with a dualization that returns its input, so that nothing but the grouping,
stacking, planning and (degenerate) exchange of the stacks is timed.

    torchrun --standalone --nproc_per_node 1 bench/dist_host.py [--set gpt2-small] [--steps 500]
        [--rounds 5] [--out bench/results]

The directions are the fast path's: FSDP2 row shards of the set's shapes divided by 32 (the
bookkeeping does not depend on sizes), each same-shape stack back to back in one buffer, with
their squared norms, and the same tensors every step (as the recorded stages 1-2 hand them
over on a GPU). Prints the median over --rounds rounds of the ms per step and writes
dist_host-<device>.json to --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SETS, init_rank, parameters_in_layout, write_result  # noqa: E402

from steepest.distributed import ShardedDualizer  # noqa: E402
from steepest.optim.batching import Stacks  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="gpt2-small", choices=sorted(SETS))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    init_rank()
    torch.manual_seed(0)
    shapes = [(max(m // 32, 1), max(n // 32, 1)) for m, n in SETS[args.set]]
    params = parameters_in_layout(
        [torch.randn(*s) for s in shapes], [torch.randn(*s) for s in shapes], "FSDP2"
    )
    members: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(params):
        members.setdefault(tuple(p.shape), []).append(i)
    directions: list[torch.Tensor] = [torch.empty(0)] * len(params)
    squares: list[torch.Tensor | None] = [None] * len(params)
    for shape, indices in members.items():
        stack = torch.randn(len(indices), *shape)
        norms = torch.rand(len(indices), 1, dtype=torch.float64)
        for j, i in enumerate(indices):
            directions[i], squares[i] = stack[j], norms[j]
    dualizer, stacks = ShardedDualizer(), Stacks()
    stacks.distributed = dualizer

    def step() -> None:
        stacks.start_step()
        dualizer.map_local(
            stacks, lambda X, *known: X, directions, params, "auto", None, 0,
            reuse=True, squares=squares,
        )  # fmt: skip

    for _ in range(5):
        step()
    rounds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        rounds.append((time.perf_counter() - start) * 1e3 / args.steps)
    ms = statistics.median(rounds)
    print(f"{args.set}: {len(params)} tensors in {len(members)} stacks; {ms:.3f} ms per step")
    payload = {"set": args.set, "stacks": len(members), "ms_per_step": ms, "rounds_ms": rounds}
    print(f"wrote {write_result('dist_host', payload, args.out)}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
