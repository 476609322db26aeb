"""Where the sharded step spends its time at W = 1: a kernel table of steepest.Muon's
replicated and FSDP2 steps beside the single-process fast path (torch.profiler).

    torchrun --standalone --nproc_per_node 1 bench/profile_dist.py [--set gpt2-small] [--rows 15]

Per layout: the pipelined ms of 10 steps, the kernel time per step, the time per step by
category (products, copies, collectives, other) and the kernels that take the most time;
with --host, the Python functions that take the host's time (cProfile). Whether the step
waits for the host: bench/host_issue.py.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import sys
from collections import Counter
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))

CATEGORIES = {
    "products": re.compile(r"nvjet|gemm|syrk|xmma|cutlass|triton_tem"),
    "collectives": re.compile(r"nccl", re.I),
    "copies": re.compile(r"copy|Memcpy|Memset|cat|elementwise_kernel.*direct_copy", re.I),
}


def category(name: str) -> str:
    for label, pattern in CATEGORIES.items():
        if pattern.search(name):
            return label
    return "other"


def profile(opt, steps: int, rows: int, host: bool) -> None:
    from common import pipelined

    for _ in range(4):
        opt.step()
    torch.cuda.synchronize()
    ms = pipelined(opt.step, steps=20, rounds=3)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            opt.step()
        torch.cuda.synchronize()
    table: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for e in prof.key_averages():
        if e.device_time_total > 0:
            table[e.key] += e.device_time_total / steps / 1e3
            calls[e.key] += e.count // steps
    by_cat: Counter[str] = Counter()
    for k, v in table.items():
        by_cat[category(k)] += v
    print(
        f"  pipelined {ms:.3f} ms/step; kernel time {sum(table.values()):.3f} ms/step; "
        + ", ".join(f"{k} {v:.3f}" for k, v in by_cat.most_common())
    )
    for k, v in table.most_common(rows):
        print(f"    {v:8.3f} ms {calls[k]:4d}x  {category(k):11s} {k[:90]}")
    if host:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(steps):
            opt.step()
        profiler.disable()
        torch.cuda.synchronize()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(rows)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(2 * rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="gpt2-small")
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--host", action="store_true", help="cProfile of the step")
    args = parser.parse_args()
    from common import SETS, init_rank
    from dist import build

    _, _, device = init_rank()
    for mode in ("single process", "replicated", "FSDP2"):
        print(f"{args.set} {mode}")
        profile(build(SETS[args.set], mode, device, 1), 5, args.rows, args.host)
        torch.cuda.empty_cache()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
