"""Optimizer step time: steepest.Muon against torch.optim.Muon, fused AdamW and the floor.

One run measures, side by side on one device and on the same parameters and gradients:
the bf16 matmul ceiling, the arithmetic floor of 5 quintic steps, steepest.Muon's step
(eager; with ``cuda_graph=True``; with ``compile=True, cuda_graph=True`` and its defaults:
``polar_form="auto"``, the Gram form for rectangular matrices, and the Triton symmetric kernels
where "auto" picks them; the same with the direct form, with cuBLAS only and with jordan
newton_schulz), torch.optim.Muon's step and fused AdamW's step. Two times per row: "isolated",
one step between CUDA events with a sync after each (host overhead included), and
"pipelined", 20 steps back to back divided by 20 (the host runs ahead, as in a training loop).
Prints ms, the floor's share and ratios; writes JSON to bench/results/.

Until session 13 this script called torch.set_default_device, whose TorchFunctionMode
intercepts every torch call the optimizers' host code makes: the fast-path step read
4.1-5.7 ms isolated and 2.6-3.6 ms pipelined here against 2.6-3.2 / 2.44-2.53 ms in
bench/ab_step.py and a plain script on the same machines (bench/results/step-session13-*).
Each optimizer built in one process also makes later ones' steps a little slower on the
host (0.50 against 0.90 ms of host time per step), so the default fast-path row (the
issue's target) is built first. --rows runs a subset of our rows in the given order.

Usage: python bench/step.py [--sets gpt2-small,1.3b,moe-64x2048x1408] [--rows "..."]
"""

from __future__ import annotations

import argparse
import contextlib
import gc

import torch
from common import (
    SETS,
    matmul_ceiling,
    parameters_with_gradients,
    pipelined,
    quintic_flops,
    time_fn,
    write_result,
)

import steepest
from steepest.polar.kernels import symmetric


@contextlib.contextmanager
def cublas_only():
    """kernel="auto" resolves to cuBLAS for every shape while active."""
    saved = symmetric.AUTO_MIN_SIDE
    symmetric.AUTO_MIN_SIDE = 1 << 30
    try:
        yield
    finally:
        symmetric.AUTO_MIN_SIDE = saved


#: Pipelined times are the median over this many runs (one run of 20 steps read 2.60 ms for
#: the GPT-2-small default row in session 13, where bench/ab_step.py's medians of 5 read
#: 2.47-2.48 ms on the same machine).
ROUNDS = 5


def time_step(opt, context=contextlib.nullcontext) -> tuple[float, float]:
    """Warm up (eager steps, compilation, recording) inside the context (a kernel choice),
    then time (isolated: median of 20 steps; pipelined: median over ROUNDS runs of 20 steps
    back to back)."""
    with context():
        for _ in range(4):
            opt.step()
        return time_fn(opt.step, warmup=1, repeat=20), pipelined(opt.step, rounds=ROUNDS)


def bench_set(name: str, device: torch.device, ceiling: float, rows: str = "") -> dict:
    shapes = SETS[name]
    params = parameters_with_gradients(shapes, device)
    floor_ms = sum(quintic_flops(m, n, 5) for m, n in shapes) / (ceiling * 1e12) * 1e3
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
    fast = {"compile": True, "cuda_graph": True}
    jordan = {"backend": "newton_schulz", "coefficients": "jordan", "scale": "jordan"}
    plain = contextlib.nullcontext
    ours = {  # name -> (keyword arguments, context); built one at a time (memory)
        "steepest.Muon compile+graph": (fast, plain),  # first: see the module docstring
        "steepest.Muon eager": ({}, plain),
        "steepest.Muon cuda_graph": ({"cuda_graph": True}, plain),
        "steepest.Muon compile+graph direct form": ({**fast, "polar_form": "direct"}, plain),
        "steepest.Muon compile+graph cuBLAS": (fast, cublas_only),
        "steepest.Muon jordan NS compile+graph": ({**jordan, **fast}, plain),
    }
    if rows:  # a subset of our rows, in the order given
        ours = {k: ours[k] for k in rows.split(",")}
    ms, piped = {}, {}
    for k, (kwargs, context) in ours.items():
        opt = steepest.Muon(params, lr=0.02, **kwargs)
        ms[k], piped[k] = time_step(opt, context)
        del opt  # free its state and recording before the next one
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    muon = torch.optim.Muon(params, lr=0.02, momentum=0.95, nesterov=True)
    ms["torch.optim.Muon"] = time_fn(muon.step, warmup=3, repeat=5)
    piped["torch.optim.Muon"] = pipelined(muon.step, steps=5, rounds=ROUNDS)
    del muon
    adamw = torch.optim.AdamW(params, lr=1e-3, **fused)
    ms["fused AdamW"] = time_fn(adamw.step, warmup=3, repeat=20)
    piped["fused AdamW"] = pipelined(adamw.step, rounds=ROUNDS)
    return {
        "set": name,
        "matrices": len(shapes),
        "floor_ms": floor_ms,
        "ms": ms,
        "pipelined_ms": piped,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="gpt2-small,1.3b,moe-64x2048x1408")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument(
        "--rows", default="", help="our rows to run, comma-separated in order (default: all)"
    )
    parser.add_argument("--name", default="step", help="the result file's name")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # no torch.set_default_device: its mode intercepts every torch call of the host code
    ceiling = matmul_ceiling(device, n=8192 if device.type == "cuda" else 1024)
    print(f"device {device}, matmul ceiling {ceiling:.1f} TFLOP/s")
    results = []
    for name in args.sets.split(","):
        r = bench_set(name, device, ceiling, args.rows)
        results.append(r)
        print(f"\n== {name}: {r['matrices']} matrices, floor {r['floor_ms']:.2f} ms")
        print(f"{'':38s} {'isolated':>12s} {'pipelined':>12s}  floor/this  torch.Muon/this")
        torch_muon, torch_piped = r["ms"]["torch.optim.Muon"], r["pipelined_ms"]["torch.optim.Muon"]
        for k, ms in r["ms"].items():
            piped = r["pipelined_ms"][k]
            print(
                f"{k:38s} {ms:9.3f} ms {piped:9.3f} ms  "
                f"{r['floor_ms'] / ms:5.2f}/{r['floor_ms'] / piped:4.2f}  "
                f"{torch_muon / ms:6.2f}x/{torch_piped / piped:5.2f}x"
            )
        # written after every set, so a run cut short keeps what it measured
        path = write_result(args.name, {"ceiling_tflops": ceiling, "sets": results}, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
