"""Where a fast-path step's wall time goes on the host: the recording's replay alone against the
whole ``step()``, cProfile of the host side, and the effect of Inductor's combo kernels.

For steepest.Muon (compile + cuda_graph) on one parameter set: times (isolated and pipelined,
see common.py) the whole step for nonfinite "raise" and "ignore", the CUDA-graph replay alone
(the device work with no Python around it), and the step with ``torch._inductor.config.
combo_kernels`` on (independent small kernels fused horizontally). Also: the host time of one
``step()`` call started on an idle GPU (what an isolated step waits before its first kernel),
the finiteness check's device time alone, and a torch.profiler table of isolated "raise" steps
(host ops and kernels). Then profiles 20 pipelined steps with cProfile and prints the functions
with the most host time.

Usage: python bench/host_overhead.py [--set gpt2-small]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time

import torch
from common import SETS, parameters_with_gradients, pipelined, time_fn, write_result

import steepest
from steepest.optim.batching import finite_each


def make(shapes, device, **kwargs):
    params = parameters_with_gradients(shapes, device)
    opt = steepest.Muon(params, lr=0.02, compile=True, cuda_graph=device.type == "cuda", **kwargs)
    for _ in range(4):
        opt.step()
    return opt


def host_ms(step, repeat: int = 30) -> float:
    """Median host time of one step() call that starts with the GPU idle."""
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def profile_table(step, device: torch.device, steps: int = 5) -> str:
    """torch.profiler over isolated steps: host ops and kernels by total time."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
    return prof.key_averages().table(
        sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="gpt2-small")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shapes = SETS[args.set]
    ms: dict[str, float] = {}

    for nonfinite in ("raise", "ignore"):
        opt = make(shapes, device, nonfinite=nonfinite)
        ms[f"step nonfinite={nonfinite}"] = time_fn(opt.step, warmup=1, repeat=30)
        ms[f"step nonfinite={nonfinite} pipelined"] = pipelined(opt.step)
        ms[f"host time of step() nonfinite={nonfinite}"] = host_ms(opt.step)
        if nonfinite == "raise":
            grads = [p.grad for group in opt.param_groups for p in group["params"]]

            def check(grads=grads):
                return finite_each(grads).all()

            ms["finiteness check alone (device)"] = time_fn(check, warmup=2, repeat=30)
            ms["host time of the check"] = host_ms(check)
            raise_table = profile_table(opt.step, device)
    graph = next(iter(opt.graphs.values()), None)  # none on CPU (no recording)
    replay = graph._replay if graph is not None else None
    if replay is not None:
        ms["replay alone"] = time_fn(replay, warmup=1, repeat=30)
        ms["replay alone pipelined"] = pipelined(replay)

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(20):
        opt.step()
    profile.disable()
    if device.type == "cuda":
        torch.cuda.synchronize()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(20)
    del opt

    torch._dynamo.reset()
    torch._inductor.config.combo_kernels = True
    opt = make(shapes, device, nonfinite="ignore")
    ms["step ignore, combo kernels"] = time_fn(opt.step, warmup=1, repeat=30)
    ms["step ignore, combo kernels pipelined"] = pipelined(opt.step)

    print(raise_table)
    print(text.getvalue())
    for k, v in ms.items():
        print(f"{k:45s} {v:8.3f} ms")
    write_result(
        f"host_overhead-{args.set}",
        {"ms": ms, "cprofile": text.getvalue(), "raise_profile": raise_table},
        args.out,
    )


if __name__ == "__main__":
    main()
