"""Symmetric-product kernels: Triton against cuBLAS, per shape and inside msign, in one run.

One run measures, side by side on one device:
  * the bf16 matmul ceiling (8192^3 product),
  * per distinct (batch, s, l) of each set: torch.bmm(X, X^T) against the Triton
    symmetric_product (every tile config, and the default pick), and torch.baddbmm(A, A, A)
    against the fused Triton b A + c A^2,
  * msign (Polar Express, 5 steps, bf16) on each set with kernel="torch", "triton" and "auto",
and prints time, TFLOP/s (flops of the full product, so the symmetric saving shows as a rate above
the ceiling), percent of the measured ceiling and the ratios; JSON goes to bench/results/.

Usage: python bench/kernels.py [--sets gpt2-small,1.3b,moe-64x2048x1408] [--out bench/results]
"""

from __future__ import annotations

import argparse
from collections import Counter
from functools import partial

import torch
from common import SETS, matmul_ceiling, quintic_flops, time_fn, write_result

from steepest.polar import msign
from steepest.polar.kernels import resolve_kernel


def _short_wide(batch: int, m: int, n: int, device) -> torch.Tensor:
    """A normalized bf16 (batch, s, l) stack as the iteration sees it (contiguous)."""
    s, l = min(m, n), max(m, n)
    X = torch.randn(batch, s, l, device=device)
    X = X / (1.01 * torch.linalg.matrix_norm(X).reshape(batch, 1, 1))
    return X.to(torch.bfloat16)


def _product_row(name, op, operand, C, beta, torch_fn, flop, ceiling) -> dict:
    """Time one product through torch and through every Triton tile config."""
    from steepest.kernels.syrk import TILE_CONFIGS, pick_config, syrk_triton

    batch, s, l = operand.shape
    alpha = 1.0 if C is None else 2.0315
    out = torch.empty(batch, s, s, device=operand.device, dtype=operand.dtype)
    row = {"set": name, "op": op, "batch": batch, "s": s, "l": l, "torch_ms": time_fn(torch_fn)}
    row["triton_ms"] = {
        config: time_fn(partial(syrk_triton, operand, alpha, C, beta, out, config=config))
        for config in TILE_CONFIGS
    }
    row["default_config"] = pick_config(s, l, batch)
    row["best_config"] = min(row["triton_ms"], key=row["triton_ms"].get)
    default_ms = row["triton_ms"][row["default_config"]]
    row["tflops_torch"] = flop / (row["torch_ms"] * 1e-3) / 1e12
    row["tflops_triton_default"] = flop / (default_ms * 1e-3) / 1e12
    row["pct_ceiling_torch"] = 100.0 * row["tflops_torch"] / ceiling
    row["pct_ceiling_triton_default"] = 100.0 * row["tflops_triton_default"] / ceiling
    row["speedup_default"] = row["torch_ms"] / default_ms
    row["speedup_best"] = row["torch_ms"] / row["triton_ms"][row["best_config"]]
    return row


def bench_products(name: str, device, ceiling: float) -> list[dict]:
    rows = []
    for (m, n), batch in Counter(SETS[name]).items():
        X = _short_wide(batch, m, n, device)
        _, s, l = X.shape
        A = torch.bmm(X, X.mT)
        gram = partial(torch.bmm, X, X.mT)
        poly = partial(torch.baddbmm, A, A, A, beta=-4.775, alpha=2.0315)
        rows.append(
            _product_row(name, "gram", X, None, 0.0, gram, 2.0 * batch * s * s * l, ceiling)
        )
        rows.append(_product_row(name, "poly", A, A, -4.775, poly, 2.0 * batch * s**3, ceiling))
        # X <- a X + B X stays on cuBLAS (baddbmm's epilogue); timed to show where steps go.
        update_ms = time_fn(partial(torch.baddbmm, X, A, X, beta=3.4445, alpha=1.0))
        tflops = 2.0 * batch * s * s * l / (update_ms * 1e-3) / 1e12
        rows.append(
            {"set": name, "op": "update", "batch": batch, "s": s, "l": l, "torch_ms": update_ms}
            | {"tflops_torch": tflops, "pct_ceiling_torch": 100.0 * tflops / ceiling}
        )
    return rows


def bench_msign(name: str, device, ceiling: float, steps: int = 5) -> dict:
    shapes = SETS[name]
    stacks = [
        torch.randn(count, *shape, device=device, dtype=torch.float32)
        for shape, count in Counter(shapes).items()
    ]
    flop = sum(quintic_flops(m, n, steps) for m, n in shapes)
    result = {"set": name, "flop": flop, "floor_ms": flop / (ceiling * 1e12) * 1e3, "ms": {}}
    outputs = {}
    for kernel in ("torch", "triton", "auto"):

        def run(kernel=kernel):
            return [msign(g, steps=steps, dtype=torch.bfloat16, kernel=kernel) for g in stacks]

        result["ms"][kernel] = time_fn(run)
        outputs[kernel] = run()
    result["auto_picks"] = [
        resolve_kernel("auto", g[:1, : min(g.shape[-2:]), : max(g.shape[-2:])].bfloat16())
        for g in stacks
    ]
    result["pct_ceiling"] = {
        k: 100.0 * flop / (v * 1e-3) / 1e12 / ceiling for k, v in result["ms"].items()
    }
    result["speedup_triton"] = result["ms"]["torch"] / result["ms"]["triton"]
    result["speedup_auto"] = result["ms"]["torch"] / result["ms"]["auto"]
    # Agreement of the two bf16 paths (both approximate the same float64 iteration).
    diff = [
        ((a.double() - b.double()).norm() / b.double().norm()).item()
        for a, b in zip(outputs["triton"], outputs["torch"], strict=True)
    ]
    result["max_relative_difference_triton_vs_torch"] = max(diff)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="gpt2-small,1.3b,moe-64x2048x1408")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench/kernels.py needs a CUDA GPU (the Triton kernels run only there)")
    device = torch.device("cuda")
    torch.manual_seed(0)
    ceiling = matmul_ceiling(device)
    print(f"device {torch.cuda.get_device_name()}, matmul ceiling {ceiling:.1f} TFLOP/s")
    names = args.sets.split(",")
    products = [row for name in names for row in bench_products(name, device, ceiling)]
    sets = [bench_msign(name, device, ceiling) for name in names]
    path = write_result(
        "kernels", {"ceiling_tflops": ceiling, "products": products, "msign": sets}, args.out
    )

    print(f"\n== products (TFLOP/s count the full product; ceiling {ceiling:.0f})")
    print(
        f"{'set':17s} {'op':6s} {'batch x s x l':>15s} {'torch ms':>9s} {'TF/s':>5s} "
        f"{'triton ms':>9s} {'TF/s':>5s} {'speedup':>7s} {'best cfg':>11s} {'best x':>6s}"
    )
    for r in products:
        dims = f"{r['batch']}x{r['s']}x{r['l']}"
        if "triton_ms" not in r:
            print(
                f"{r['set']:17s} {r['op']:6s} {dims:>15s} "
                f"{r['torch_ms']:9.3f} {r['tflops_torch']:5.0f}   (cuBLAS baddbmm only)"
            )
            continue
        t_ms = r["triton_ms"][r["default_config"]]
        print(
            f"{r['set']:17s} {r['op']:6s} {dims:>15s} "
            f"{r['torch_ms']:9.3f} {r['tflops_torch']:5.0f} "
            f"{t_ms:9.3f} {r['tflops_triton_default']:5.0f} {r['speedup_default']:6.2f}x "
            f"{r['best_config']:>11s} {r['speedup_best']:5.2f}x"
        )
    print("\n== msign, polar_express 5 steps, bf16 (floor = flop / ceiling)")
    for r in sets:
        ms, pct = r["ms"], r["pct_ceiling"]
        print(
            f"{r['set']:17s} floor {r['floor_ms']:7.2f} ms | torch {ms['torch']:8.2f} ms "
            f"({pct['torch']:4.1f}%) | triton {ms['triton']:8.2f} ms ({pct['triton']:4.1f}%) "
            f"{r['speedup_triton']:4.2f}x | auto {ms['auto']:8.2f} ms {r['speedup_auto']:4.2f}x "
            f"| diff {r['max_relative_difference_triton_vs_torch']:.1e}"
        )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
