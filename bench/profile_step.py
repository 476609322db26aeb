"""Where a fast-path steepest.Muon step spends its time: wall time per setting and a kernel table.

Times steepest.Muon (compile + cuda_graph, Gram form) on one parameter set with and without the
finiteness check (isolated steps and 20 pipelined ones), next to msign alone on the same
stacks, then profiles a few steps with torch.profiler and prints the kernels that take the most
device time and the step's total kernel time against its wall time (the gap is host time the
GPU waits for), and, from the trace, how long per step products run alone, other kernels run
alone, both run at once (the stack streams), or the GPU idles.

With --kernels, it also writes every kernel of the profiled steps (name, stream, start, duration)
to a CSV and prints, per category (products, momentum, other), the kernel time per step and
the time the GPU spends with no kernel running while a step is in flight.

Usage: python bench/profile_step.py [--set gpt2-small] [--rows 25] [--stack-streams 4] [--kernels]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import tempfile
from collections import Counter
from pathlib import Path

import torch
from common import SETS, parameters_with_gradients, pipelined, time_fn, write_result

import steepest
from steepest.optim.fast import FastPath
from steepest.polar import msign

#: kernel names of matrix products (cuBLAS, our Triton syrk, Inductor's templates)
PRODUCT = re.compile(r"nvjet|gemm|syrk|xmma|cutlass|triton_tem")


def kernel_events(trace: Path) -> list[dict]:
    """The kernel events of a chrome trace, by start time."""
    events = [e for e in json.loads(trace.read_text())["traceEvents"] if e.get("cat") == "kernel"]
    return sorted(events, key=lambda e: float(e["ts"]))


def timeline(events: list[dict], steps: int) -> dict[str, float]:
    """Milliseconds per step, from kernel events, in which products run alone, other kernels
    run alone, both run (on different streams), or the GPU is idle between the first kernel
    and the last."""
    marks = []
    for e in events:
        kind = "product" if PRODUCT.search(e["name"]) else "other"
        marks += [(float(e["ts"]), 1, kind), (float(e["ts"]) + float(e["dur"]), -1, kind)]
    marks.sort(key=lambda m: (m[0], m[1]))
    running = {"product": 0, "other": 0}
    spans = {"products only": 0.0, "others only": 0.0, "both": 0.0, "idle": 0.0}
    for (t, delta, kind), (t_next, _, _) in zip(marks, marks[1:], strict=False):
        running[kind] += delta
        state = (running["product"] > 0, running["other"] > 0)
        name = {(1, 0): "products only", (0, 1): "others only", (1, 1): "both"}.get(
            (int(state[0]), int(state[1])), "idle"
        )
        spans[name] += t_next - t
    return {k: v / steps / 1e3 for k, v in spans.items()}


def kernel_rows(events: list[dict], out: Path, steps: int) -> dict[str, float]:
    """Write the kernels to out (CSV, by start time) and return milliseconds of kernel time per
    step and category (products, momentum, other), and the kernels per step."""
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["start_us", "dur_us", "stream", "grid", "name"])
        t0 = float(events[0]["ts"]) if events else 0.0
        for e in events:
            args = e.get("args", {})
            writer.writerow(
                [
                    f"{float(e['ts']) - t0:.2f}",
                    f"{float(e['dur']):.2f}",
                    args.get("stream"),
                    args.get("grid"),
                    e["name"][:90],
                ]
            )
    totals: Counter[str] = Counter()
    for e in events:
        name = e["name"]
        kind = "product" if PRODUCT.search(name) else "momentum" if "momentum" in name else "other"
        totals[kind] += float(e["dur"])
    result = {k: v / steps / 1e3 for k, v in totals.items()}
    result["kernels per step"] = len(events) / steps
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="gpt2-small")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--streams", type=int, default=FastPath().streams, help="FastPath.streams")
    parser.add_argument("--kernels", action="store_true", help="write the kernel CSV")
    parser.add_argument(
        "--profile", default="ignore", choices=("raise", "ignore"), help="nonfinite= profiled"
    )
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_default_device(device)
    shapes = SETS[args.set]
    params = parameters_with_gradients(shapes)
    fast = {
        "compile": True,
        "cuda_graph": device.type == "cuda",
        "polar_form": "auto",
        "fast": FastPath(streams=args.streams),
    }
    ms: dict[str, float] = {}
    optimizers = {}
    for nonfinite in ("raise", "ignore"):
        opt = optimizers[nonfinite] = steepest.Muon(params, lr=0.02, nonfinite=nonfinite, **fast)
        for _ in range(4):
            opt.step()
        ms[f"step, nonfinite={nonfinite}"] = time_fn(opt.step, warmup=1, repeat=30)
        ms[f"step, nonfinite={nonfinite}, pipelined"] = pipelined(opt.step)
    opt = optimizers[args.profile]
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
    spans: dict[str, float] = {}
    kinds: dict[str, float] = {}
    if device.type == "cuda":
        with tempfile.TemporaryDirectory() as tmp:
            trace = Path(tmp) / "trace.json"
            prof.export_chrome_trace(str(trace))
            events = kernel_events(trace)
            spans = timeline(events, steps)
            if args.kernels:
                name = f"kernels-{args.set}-streams{args.stack_streams}-{args.profile}.csv"
                kinds = kernel_rows(events, Path(args.out) / name, steps)
        print("\nper step, ms: " + ", ".join(f"{k} {v:.3f}" for k, v in spans.items()))
        if kinds:
            print(
                "kernel time per step, ms: " + ", ".join(f"{k} {v:.3f}" for k, v in kinds.items())
            )
    events = prof.key_averages()
    kernel_us = sum(e.device_time_total for e in events if e.device_type.name == "CUDA")
    wall = ms[f"step, nonfinite={args.profile}"]
    print(f"\nkernel time per step: {kernel_us / steps / 1e3:.3f} ms (wall {wall:.3f} ms)")
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    table = events.table(sort_by=sort, row_limit=args.rows, max_name_column_width=70)
    print(table)
    write_result(
        f"profile_step-{args.set}-streams{args.stack_streams}",
        {
            "ms": ms,
            "kernel_ms_per_step": kernel_us / steps / 1e3,
            "timeline_ms_per_step": spans,
            "kernel_kinds_ms_per_step": kinds,
            "stack_streams": args.stack_streams,
            "table": table,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
