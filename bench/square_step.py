"""The direct form's quintic step on square stacks, three ways, timed in a CUDA graph and
checked against the float64 iteration; and the symmetric kernel on column-major input.

Direct step X <- a X + (b A + c A^2) X with A = X X^T:
  baddbmm:    P = b A + c A^2 (symmetric kernel), then baddbmm(X, P, X, beta=a) (cuBLAS copies
              X into the output first, then runs a beta = a kernel);
  shift+bmm:  P = a I + b A + c A^2 (the shift in the symmetric kernel's epilogue), then bmm(P, X).
each in bfloat16 and float16. Error: the relative Frobenius distance of the 5-step Polar
Express result from the same iteration in float64 on the same normalized input (Gaussian
input, and input with log-uniform singular values in [1e-3, 1]), worst over the stack.

Column-major: X X^T of a (K, s, l) view of contiguous (K, l, s) tensors, read in place
(strides) against a copy to row-major first (what the fast path does today) and against
row-major input.

Usage: python bench/square_step.py [--reps 20]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from common import in_graph_ms, polar_express_float64, sample_matrices, write_result

from steepest.polar import polar_express_coefficients
from steepest.polar.kernels import symmetric_product
from steepest.polar.kernels._syrk_triton import syrk_triton

COEFFICIENTS = polar_express_coefficients(5, 1e-3)


def step_baddbmm(X: torch.Tensor, a: float, b: float, c: float) -> torch.Tensor:
    A = symmetric_product(X, kernel="triton")
    P = symmetric_product(A, c, A, b, kernel="triton")
    return torch.baddbmm(X, P, X, beta=a, alpha=1.0)


def step_shift(X: torch.Tensor, a: float, b: float, c: float) -> torch.Tensor:
    A = symmetric_product(X, kernel="triton")
    P = symmetric_product(A, c, A, b, kernel="triton", shift=a)
    return torch.bmm(P, X)


def iterate(step, X: torch.Tensor) -> torch.Tensor:
    for a, b, c in COEFFICIENTS:
        X = step(X, a, b, c)
    return X


def inputs(count: int, s: int) -> dict[str, torch.Tensor]:
    """The Gaussian and spread-spectrum stacks, normalized as msign does."""
    cases = sample_matrices(count, s, s)
    return {
        name: cases[name] / (1.01 * torch.linalg.matrix_norm(cases[name], keepdim=True))
        for name in ("gaussian", "log spectrum")
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    torch.set_default_device("cuda")
    torch.manual_seed(0)
    rows = []
    for count, s in ((12, 768), (24, 2048)):
        cases = inputs(count, s)
        for dtype in (torch.bfloat16, torch.float16):
            for name, step in (("baddbmm", step_baddbmm), ("shift+bmm", step_shift)):
                X = cases["gaussian"].to(dtype)
                us = in_graph_ms(partial(step, X, *COEFFICIENTS[0]), args.reps) * 1e3
                errors = {}
                for case, X0 in cases.items():
                    out = iterate(step, X0.to(dtype)).double()
                    ref = polar_express_float64(X0)
                    rel = torch.linalg.matrix_norm(out - ref) / torch.linalg.matrix_norm(ref)
                    errors[case] = rel.max().item()
                row = {"shape": (count, s, s), "dtype": str(dtype), "step": name, "us": us}
                rows.append({**row, **{f"error {k}": v for k, v in errors.items()}})
                cells = "  ".join(f"{k} {v:.2e}" for k, v in errors.items())
                print(f"{str((count, s, s)):18s} {str(dtype):15s} {name:10s} {us:7.1f} us  {cells}")
    for count, s, l in ((12, 768, 2304), (12, 768, 3072)):
        T = torch.randn(count, l, s, dtype=torch.float16) / l**0.5
        R = T.mT.contiguous()
        out = torch.empty(count, s, s, dtype=torch.float16)
        times = {
            "row-major": partial(syrk_triton, R, 1.0, None, 0.0, out),
            "column-major": partial(syrk_triton, T.mT, 1.0, None, 0.0, out),
            "copy, then row-major": lambda T=T, out=out: syrk_triton(
                T.mT.contiguous(), 1.0, None, 0.0, out
            ),
        }
        ref = torch.bmm(R.float(), R.float().mT)
        syrk_triton(T.mT, 1.0, None, 0.0, out)
        err = ((out.float() - ref).norm() / ref.norm()).item()
        cells = {k: in_graph_ms(fn, args.reps) * 1e3 for k, fn in times.items()}
        rows.append({"shape": (count, s, l), "syrk us": cells, "column-major error": err})
        text = "  ".join(f"{k} {v:6.1f} us" for k, v in cells.items())
        print(f"X X^T {str((count, s, l)):18s} {text}  (column-major rel. error {err:.1e})")
    write_result("square_step", {"rows": rows}, args.out)


if __name__ == "__main__":
    main()
