"""The host time of the sharded step on CPU (gloo, world size 1), where the GPU's work is taken
away, so that what remains is what the host spends issuing a step.

    torchrun --standalone --nproc_per_node 1 bench/dist_host.py [--set gpt2-small] [--steps 300]
        [--rounds 5] [--out bench/results]

Two measurements on the set's shapes divided by 32 (the host's work does not depend on sizes):

* exchange: ShardedDualizer.map_local alone, with a dualization that returns its input, on
  FSDP2 row shards that lie back to back per same-shape stack with their squared norms, the
  same tensors every step (as the recorded stages 1-2 hand them over on a GPU): the grouping,
  stacking, planning and (degenerate) exchange of the stacks.
* step: steepest.Muon's whole step in each layout (single process, replicated, FSDP2) on the
  fast path's recorded route, with a recorder whose replay returns the recorded outputs
  without running anything (as a CUDA graph's replay costs the host almost nothing), and
  nonfinite="ignore" (no verdict is read). The CUDA-only host work (streams, events) is not
  in it. Each sharded layout is also given as a ratio to the single process, measured side
  by side.

Prints the median over --rounds rounds of the ms per step and Python calls per step, and
writes dist_host-<device>.json to --out.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SETS, init_rank, parameters_in_layout, write_result  # noqa: E402

import steepest  # noqa: E402
from steepest.distributed import ShardedDualizer, configure  # noqa: E402
from steepest.optim.batching import Stacks  # noqa: E402
from steepest.optim.fast import FastPath  # noqa: E402

LAYOUTS = ("single process", "replicated", "FSDP2")


def replay_nothing(fn: Callable[[], object]) -> Callable[[], object]:
    """A recorder whose replay returns the recorded outputs and runs nothing."""
    outputs = fn()
    return lambda: outputs


def timed(step: Callable[[], None], steps: int, rounds: int) -> tuple[float, list[float], float]:
    """(median ms per step over rounds, the rounds, Python calls per step)."""
    for _ in range(5):
        step()
    rounds_ms = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rounds_ms.append((time.perf_counter() - start) * 1e3 / steps)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(10):
        step()
    profiler.disable()
    calls = pstats.Stats(profiler).total_calls / 10  # type: ignore[attr-defined]
    return statistics.median(rounds_ms), rounds_ms, calls


def exchange_step(shapes: list[tuple[int, int]]) -> Callable[[], None]:
    """map_local alone on FSDP2 row shards, each same-shape stack back to back."""
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

    return step


def optimizer_step(
    shapes: list[tuple[int, int]], layout: str, polar_dtype: torch.dtype | None
) -> Callable[[], None]:
    """steepest.Muon's step in `layout` on the recorded route, replays running nothing."""
    weights = [torch.randn(*s) for s in shapes]
    params = parameters_in_layout(weights, [torch.randn(*s) for s in shapes], layout)
    opt = steepest.Muon(
        params, lr=0.02, compile="eager", cuda_graph=True, nonfinite="ignore",
        fast=FastPath(capture=replay_nothing), polar_dtype=polar_dtype,
    )  # fmt: skip
    if layout == "replicated":
        configure(opt)
    opt.step()
    path = opt.fast_path_report()[0].path
    if path != "compiled+recorded":
        raise RuntimeError(f"{layout}: the step took the {path!r} route, not the recorded one")
    return opt.step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="gpt2-small", choices=sorted(SETS))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument(
        "--float16",
        action="store_true",
        help="float16 polar iterations: prescaled float16 stacks, as on CUDA (FSDP2: shared)",
    )
    args = parser.parse_args()
    polar_dtype = torch.float16 if args.float16 else None
    init_rank()
    torch.manual_seed(0)
    shapes = [(max(m // 32, 1), max(n // 32, 1)) for m, n in SETS[args.set]]
    stacks = len(set(shapes))
    ms, rounds, calls = timed(exchange_step(shapes), args.steps, args.rounds)
    print(f"{args.set}: {len(shapes)} tensors in {stacks} stacks")
    print(f"{'measured':26s} {'ms/step':>8s} {'calls':>6s} {'vs single':>9s}")
    print(f"{'exchange (map_local)':26s} {ms:8.3f} {calls:6.0f}")
    payload: dict = {
        "set": args.set,
        "polar_dtype": str(polar_dtype),
        "stacks": stacks,
        "exchange": {"ms_per_step": ms, "rounds_ms": rounds, "calls_per_step": calls},
        "step": {},
    }
    for layout in LAYOUTS:
        step = optimizer_step(shapes, layout, polar_dtype)
        ms, rounds, calls = timed(step, args.steps, args.rounds)
        single = payload["step"].get("single process", {}).get("ms_per_step", ms)
        payload["step"][layout] = {
            "ms_per_step": ms,
            "rounds_ms": rounds,
            "calls_per_step": calls,
            "vs_single": ms / single,
        }
        print(f"{'step, ' + layout:26s} {ms:8.3f} {calls:6.0f} {ms / single:9.2f}")
    name = "dist_host-float16" if args.float16 else "dist_host"
    print(f"wrote {write_result(name, payload, args.out)}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
