"""Where a fast-path step's wall time goes on the host: the recording's replay alone against the
whole ``step()``, cProfile of the host side, and the effect of Inductor's combo kernels.

For steepest.Muon (compile + cuda_graph) on one parameter set: times (isolated and pipelined,
see common.py) the whole step for nonfinite "raise" and "ignore", the CUDA-graph replay alone
(the device work with no Python around it), and the step with ``torch._inductor.config.
combo_kernels`` on (independent small kernels fused horizontally). Then profiles 20 pipelined
steps with cProfile and prints the functions with the most host time.

Usage: python bench/host_overhead.py [--set gpt2-small]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats

import torch
from common import SETS, parameters_with_gradients, pipelined, time_fn, write_result

import steepest


def make(shapes, device, **kwargs):
    params = parameters_with_gradients(shapes, device)
    opt = steepest.Muon(params, lr=0.02, compile=True, cuda_graph=device.type == "cuda", **kwargs)
    for _ in range(4):
        opt.step()
    return opt


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

    print(text.getvalue())
    for k, v in ms.items():
        print(f"{k:45s} {v:8.3f} ms")
    write_result(f"host_overhead-{args.set}", {"ms": ms, "cprofile": text.getvalue()}, args.out)


if __name__ == "__main__":
    main()
