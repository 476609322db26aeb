"""Step time of the newer members beside Muon's fast path, and AOL's accuracy at those shapes.

Rows per set (the shapes of common.SETS, one parameter per shape with a normal gradient):
Muon compile+graph (the default fast path), Muon eager, Muon with polar_precondition="aol"
and steps=4 (eager and compile+graph), Dion eager at rank fraction 1 and 1/4 (QR and
randomized Cholesky-QR). Two times per row as in step.py: "isolated" (median of 20 steps,
a sync after each) and "pipelined" (20 steps back to back). Then, per distinct shape, the
relative Frobenius error against the float64 SVD polar factor of msign in bfloat16 with 5
Polar Express steps and with AOL + 4 steps. Prints one line per row, writes JSON to
bench/results/family_step-<device>.json.

Usage: python bench/family_step.py [--sets gpt2-small,1.3b]
"""

from __future__ import annotations

import argparse
import gc

import torch
from common import SETS, parameters_with_gradients, pipelined, time_fn, write_result

import steepest
from steepest.polar import msign, polar_svd


def time_step(opt) -> tuple[float, float]:
    for _ in range(4):  # warm up: compilation, recording
        opt.step()
    if time_fn(opt.step, warmup=0, repeat=1) > 20.0:  # slow rows (Dion): fewer samples
        return time_fn(opt.step, warmup=0, repeat=5), pipelined(opt.step, steps=5)
    return time_fn(opt.step, warmup=1, repeat=20), pipelined(opt.step, rounds=5)


def build(kind: str, kwargs: dict, params: list[torch.nn.Parameter]) -> steepest.Steepest:
    if kind == "muon":
        groups = [{"params": params, "algorithm": "muon", **kwargs.pop("group", {})}]
        return steepest.Muon(groups, lr=0.02, **kwargs)
    return steepest.Dion(params, lr=0.02, **kwargs)


def bench_set(name: str, device: torch.device) -> dict:
    shapes = SETS[name]
    params = parameters_with_gradients(shapes, device)
    fast = {"compile": True, "cuda_graph": True}
    eager = {"compile": False, "cuda_graph": False}
    aol = {"group": {"polar_precondition": "aol"}, "steps": 4}
    rows = {
        "Muon compile+graph": ("muon", dict(fast)),
        "Muon eager": ("muon", dict(eager)),
        "Muon AOL 4 steps eager": ("muon", {**aol, **eager}),
        "Muon AOL 4 steps compile+graph": ("muon", {**aol, **fast}),
        "Dion rank 1 qr eager": ("dion", {}),
        "Dion rank 1/4 qr eager": ("dion", {"rank_fraction": 0.25}),
        "Dion rank 1/4 cholesky_qr eager": (
            "dion",
            {"rank_fraction": 0.25, "orthonormalize": "cholesky_qr"},
        ),
    }
    ms, piped = {}, {}
    for row, (kind, kwargs) in rows.items():
        opt = build(kind, dict(kwargs), params)
        ms[row], piped[row] = time_step(opt)
        print(f"{name:12s} {row:34s} {ms[row]:8.3f} ms isolated {piped[row]:8.3f} ms pipelined")
        del opt
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    errors = {}
    for m, n in sorted({tuple(s[-2:]) for s in shapes}):
        G = torch.randn(4, m, n, device=device, dtype=torch.float64)
        reference = polar_svd(G)

        def error(O: torch.Tensor, reference: torch.Tensor = reference) -> float:
            gap = torch.linalg.matrix_norm(O.double() - reference)
            return (gap / torch.linalg.matrix_norm(reference)).max().item()

        low = G.to(torch.bfloat16)
        standard = error(msign(low, steps=5))
        turbo = error(msign(low, steps=4, precondition="aol", lower_bound=1e-2))
        errors[f"{m}x{n}"] = {"pe5": standard, "aol4": turbo}
        print(f"{name:12s} {m}x{n}: rel. error PE 5 steps {standard:.4f}, AOL + 4 {turbo:.4f}")
    return {"set": name, "ms": ms, "pipelined_ms": piped, "polar_error": errors}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="gpt2-small,1.3b")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = [bench_set(name, device) for name in args.sets.split(",")]
    print(write_result("family_step", {"sets": results}))


if __name__ == "__main__":
    main()
