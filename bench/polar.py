"""Orthogonalization speed: steepest.polar.msign against the matmul ceiling and the anchors.

One run measures, side by side on one device:
  * the bf16 matmul ceiling (8192^3 product),
  * steepest.polar.msign on each same-shape stack of a parameter set (eager and torch.compile;
    compiled with form="auto", the Gram form in float16 for stacks of aspect ratio >= 2; its
    TFLOP/s and percent of the ceiling count the direct form's flops, so they are effective
    rates that can exceed what the hardware does),
  * a per-matrix 5-step Newton-Schulz loop (the unbatched baseline),
  * torch.optim.Muon's and fused AdamW's full optimizer step on the same parameters,
and prints time, TFLOP/s, percent of the measured ceiling and the ratios; JSON goes to
bench/results/.

Usage: python bench/polar.py [--sets gpt2-small,1.3b,moe-64x2048x1408] [--steps 5]
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
from common import (
    SETS,
    matmul_ceiling,
    parameters_with_gradients,
    quintic_flops,
    time_fn,
    write_result,
)

from steepest.polar import msign, orthogonality_error


def per_matrix_newton_schulz(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The unbatched baseline: Jordan's quintic (Cesista 2025, Alg. 2), per matrix, in bf16."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.bfloat16()
    tall = X.size(0) > X.size(1)
    if tall:
        X = X.T
    X = X / (X.norm() + 1e-7)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tall else X


def bench_set(name: str, device: torch.device, steps: int, ceiling: float) -> dict:
    shapes = SETS[name]
    stacks = {
        shape: torch.randn(count, *shape, device=device, dtype=torch.float32)
        for shape, count in Counter(shapes).items()
    }
    flops = sum(quintic_flops(m, n, steps) for m, n in shapes)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def ours():
        for g in stacks.values():
            msign(g, backend="polar_express", steps=steps, dtype=dtype)

    # One specialization per stack shape and set: lift dynamo's recompile limit for the bench.
    torch._dynamo.config.recompile_limit = 64
    compiled = torch.compile(msign, dynamic=False)

    def ours_compiled():
        for g in stacks.values():
            compiled(g, backend="polar_express", steps=steps, dtype=dtype)

    def ours_gram():
        for g in stacks.values():
            compiled(g, backend="polar_express", steps=steps, form="auto")

    flat = [g[i] for g in stacks.values() for i in range(g.size(0))]

    def per_matrix():
        for g in flat:
            per_matrix_newton_schulz(g, steps)

    params = parameters_with_gradients(shapes, device, scale=1.0)
    torch_muon = torch.optim.Muon(params, lr=0.02, momentum=0.95, nesterov=True)
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
    adamw = torch.optim.AdamW(params, lr=1e-3, **fused)

    rows = {
        "steepest.msign (eager)": time_fn(ours),
        "steepest.msign (compiled)": time_fn(ours_compiled),
        "steepest.msign form=auto (compiled)": time_fn(ours_gram),
        "per-matrix NS (eager)": time_fn(per_matrix, repeat=5),
        "torch.optim.Muon step": time_fn(torch_muon.step, repeat=5),
        "fused AdamW step": time_fn(adamw.step),
    }
    # Accuracy on one stack: orthogonality error of the bf16 result (max |sigma - 1|).
    g = next(iter(stacks.values()))
    err = orthogonality_error(g.double(), msign(g, steps=steps, dtype=dtype).double()).max().item()
    # The same for the Gram form on the set's most rectangular stack (float16 on CUDA).
    g = max(stacks.values(), key=lambda t: max(t.shape[-2:]) / min(t.shape[-2:]))
    gram_out = msign(g, steps=steps, form="gram").double()
    gram_err = orthogonality_error(g.double(), gram_out).max().item()
    direct_err = orthogonality_error(g.double(), msign(g, steps=steps, dtype=dtype).double())
    return {
        "set": name,
        "matrices": len(shapes),
        "flop": flops,
        "ms": rows,
        "tflops": {
            k: flops / (v * 1e-3) / 1e12 for k, v in rows.items() if "msign" in k or "NS" in k
        },
        "pct_ceiling": {
            k: 100.0 * flops / (v * 1e-3) / 1e12 / ceiling
            for k, v in rows.items()
            if "msign" in k or "NS" in k
        },
        "floor_ms": flops / (ceiling * 1e12) * 1e3,
        "orthogonality_error": err,
        "gram_stack": list(g.shape),
        "orthogonality_error_gram": gram_err,
        "orthogonality_error_direct_same_stack": direct_err.max().item(),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="gpt2-small,1.3b,moe-64x2048x1408")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ceiling = matmul_ceiling(device, n=8192 if device.type == "cuda" else 1024)
    print(f"device {device}, matmul ceiling {ceiling:.1f} TFLOP/s")
    results = []
    for name in args.sets.split(","):
        r = bench_set(name, device, args.steps, ceiling)
        results.append(r)
        print(
            f"\n== {name}: {r['matrices']} matrices, {r['flop'] / 1e12:.3f} TFLOP, "
            f"floor {r['floor_ms']:.2f} ms, orth. error {r['orthogonality_error']:.3f}; "
            f"on {r['gram_stack']}: direct {r['orthogonality_error_direct_same_stack']:.3f}, "
            f"gram {r['orthogonality_error_gram']:.3f}"
        )
        muon = r["ms"]["torch.optim.Muon step"]
        for k, ms in r["ms"].items():
            pct = r["pct_ceiling"].get(k)
            pct_s = f"{pct:6.1f}% ceil" if pct is not None else " " * 11
            print(f"{k:36s} {ms:9.3f} ms  {pct_s}  torch.Muon/this {muon / ms:6.2f}x")
    path = write_result(
        "polar", {"ceiling_tflops": ceiling, "steps": args.steps, "sets": results}, args.out
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
