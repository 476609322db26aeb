"""Where a fast-path steepest.Muon step spends its time: wall time per setting and a kernel table.

Times steepest.Muon (compile + cuda_graph, Gram form) on one parameter set with and without the
finiteness check (isolated steps and 20 pipelined ones), next to msign alone on the same
stacks, then profiles a few steps with torch.profiler and prints the kernels that take the most
device time and the step's total kernel time against its wall time (the gap is host time the
GPU waits for).

Usage: python bench/profile_step.py [--set gpt2-small] [--rows 25]
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
from common import SETS, parameters_with_gradients, pipelined, time_fn, write_result

import steepest
from steepest.polar import msign


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="gpt2-small")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_default_device(device)
    shapes = SETS[args.set]
    params = parameters_with_gradients(shapes)
    fast = {"compile": True, "cuda_graph": device.type == "cuda", "polar_form": "auto"}
    ms: dict[str, float] = {}
    for nonfinite in ("raise", "ignore"):
        opt = steepest.Muon(params, lr=0.02, nonfinite=nonfinite, **fast)
        for _ in range(4):
            opt.step()
        ms[f"step, nonfinite={nonfinite}"] = time_fn(opt.step, warmup=1, repeat=30)
        ms[f"step, nonfinite={nonfinite}, pipelined"] = pipelined(opt.step)
    stacks = [torch.randn(c, *s) for s, c in Counter(shapes).items()]
    compiled = torch.compile(msign, dynamic=False)

    def msign_only() -> None:
        for g in stacks:
            compiled(g, form="auto")

    ms["msign alone (compiled, form=auto)"] = time_fn(msign_only, warmup=3, repeat=30)
    for k, v in ms.items():
        print(f"{k:40s} {v:8.3f} ms")

    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    steps = 5
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    events = prof.key_averages()
    kernel_us = sum(e.device_time_total for e in events if e.device_type.name == "CUDA")
    wall = ms["step, nonfinite=ignore"]
    print(f"\nkernel time per step: {kernel_us / steps / 1e3:.3f} ms (wall {wall:.3f} ms)")
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    table = events.table(sort_by=sort, row_limit=args.rows, max_name_column_width=70)
    print(table)
    write_result(
        f"profile_step-{args.set}",
        {"ms": ms, "kernel_ms_per_step": kernel_us / steps / 1e3, "table": table},
        args.out,
    )


if __name__ == "__main__":
    main()
