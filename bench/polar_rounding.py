"""bfloat16 quintic iteration on the torch path: time and error of steepest's form against the
P-form (X <- P X with P = a I + b A + c A^2 rounded once), one line per shape.

steepest's torch path for bfloat16/float16 forms B = b A + c A^2 in float32, rounds it once and
adds a X in baddbmm's accumulator (torch.optim.Muon's form). Errors are relative to the float64
iteration from the same bfloat16 input; times are medians of 20 CUDA-synchronized runs.

Run on a GPU: python bench/polar_rounding.py
"""

from __future__ import annotations

import statistics
import time

import torch

from steepest.polar import odd_quintic_iteration, polar_express_coefficients

SHAPES = [(12, 256, 256), (12, 512, 512), (12, 256, 1024), (4, 640, 2560)]


def p_form(X: torch.Tensor, coefficients: list[tuple[float, float, float]]) -> torch.Tensor:
    for a, b, c in coefficients:
        A = torch.bmm(X, X.mT).float()
        P = torch.baddbmm(A, A, A, beta=b, alpha=c)
        P.diagonal(dim1=-2, dim2=-1).add_(a)
        X = torch.bmm(P.to(X.dtype), X)
    return X


def median_ms(fn, *args) -> float:
    times = []
    for _ in range(20):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn(*args)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    coefficients = polar_express_coefficients(5)
    for shape in SHAPES:
        G = torch.randn(*shape, device="cuda", dtype=torch.float64)
        X = (G / (1.01 * G.norm(dim=(-2, -1), keepdim=True))).to(torch.bfloat16)
        oracle = odd_quintic_iteration(X.double(), coefficients, kernel="torch")

        def ours(X: torch.Tensor) -> torch.Tensor:
            return odd_quintic_iteration(X, coefficients, kernel="torch")

        def error(Y: torch.Tensor, oracle: torch.Tensor = oracle) -> float:
            return ((Y.double() - oracle).norm() / oracle.norm()).item()

        print(
            f"{shape}: steepest {median_ms(ours, X):.3f} ms err {error(ours(X)):.4f} | "
            f"P-form {median_ms(p_form, X, coefficients):.3f} ms "
            f"err {error(p_form(X, coefficients)):.4f}"
        )


if __name__ == "__main__":
    main()
