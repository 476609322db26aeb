"""Optimizer step time: steepest.Muon against torch.optim.Muon, fused AdamW and the floor.

One run measures, side by side on one device and on the same parameters and gradients: the
bf16 matmul ceiling, the arithmetic floor of 5 quintic steps, and these rows (--rows picks a
subset of ours, in order):
  default            steepest.Muon(params): on CUDA the fast path (compiled and recorded)
  fast path          steepest.Muon(params, compile=True, cuda_graph=True): the same, asked for
  eager              steepest.Muon(params, compile=False, cuda_graph=False)
  direct form        the fast path with polar_form="direct"
  cuBLAS             the fast path with polar_kernel="torch"
  jordan NS          the fast path with jordan Newton-Schulz (torch.optim.Muon's iteration)
then torch.optim.Muon and fused AdamW. Two times per row: "isolated", one step between CUDA
events with a sync after each (host overhead included), and "pipelined", 20 steps back to
back divided by 20 (the host runs ahead, as in a training loop), the median of 5 runs. Prints
ms, the floor's share and ratios, and the default row against the fast-path row; writes JSON.

The default row is built first: each optimizer built in one process makes later ones' host
code a little slower. torch.set_default_device is not used: its mode intercepts every torch
call the optimizers' host code makes.

Usage: python bench/step.py [--sets gpt2-small,1.3b,moe-64x2048x1408] [--rows default,...]
"""

from __future__ import annotations

import argparse
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

#: Pipelined times are the median over this many runs of 20 steps.
ROUNDS = 5

FAST = {"compile": True, "cuda_graph": True}
#: our rows: name -> steepest.Muon keyword arguments (built one at a time: memory)
ROWS = {
    "default": {},
    "fast path": FAST,
    "eager": {"compile": False, "cuda_graph": False},
    "direct form": {**FAST, "polar_form": "direct"},
    "cuBLAS": {**FAST, "polar_kernel": "torch"},
    "jordan NS": {**FAST, "backend": "newton_schulz", "coefficients": "jordan", "scale": "jordan"},
}


def time_step(opt) -> tuple[float, float]:
    """Warm up (eager steps, compilation, recording), then time (isolated: median of 20
    steps; pipelined: median over ROUNDS runs of 20 steps back to back)."""
    for _ in range(4):
        opt.step()
    return time_fn(opt.step, warmup=1, repeat=20), pipelined(opt.step, rounds=ROUNDS)


def bench_set(name: str, device: torch.device, ceiling: float, rows: str = "") -> dict:
    shapes = SETS[name]
    params = parameters_with_gradients(shapes, device)
    floor_ms = sum(quintic_flops(m, n, 5) for m, n in shapes) / (ceiling * 1e12) * 1e3
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
    ours = {k: ROWS[k] for k in rows.split(",")} if rows else ROWS
    ms, piped, paths = {}, {}, {}
    for k, kwargs in ours.items():
        opt = steepest.Muon(params, lr=0.02, **kwargs)
        ms[k], piped[k] = time_step(opt)
        paths[k] = [row.path for row in opt.fast_path_report()]
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
        "paths": paths,
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
        if "default" in r["ms"] and "fast path" in r["ms"]:
            ratio = r["pipelined_ms"]["default"] / r["pipelined_ms"]["fast path"]
            print(f"default / fast path (pipelined): {ratio:.3f} (paths {r['paths']['default']})")
        # written after every set, so a run cut short keeps what it measured
        path = write_result(args.name, {"ceiling_tflops": ceiling, "sets": results}, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
