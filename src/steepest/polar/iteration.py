"""The core odd-quintic iteration shared by the Newton-Schulz and Polar Express backends."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .kernels import resolve_kernel, symmetric_product

__all__ = ["odd_quintic_iteration"]


def odd_quintic_iteration(
    X: torch.Tensor,
    coefficients: Sequence[tuple[float, float, float]],
    *,
    kernel: str = "auto",
) -> torch.Tensor:
    """Apply X <- a X + (b A + c A^2) X with A = X X^T, once per (a, b, c) triple.

    Math: with X = U S V^T each step maps every singular value s to p(s) = a s + b s^3 + c s^5 and
    keeps U, V. X should be short-and-wide (rows <= columns) so that A is the small Gram matrix.
    Per step: A = X X^T and P = a I + b A + c A^2 (both symmetric: symmetric_product, which with
    kernel="triton" computes one block-triangle and mirrors it, b A and a I added in the
    epilogue), then X <- P X as one bmm. (A baddbmm(X, P, X, beta=a) with P = b A + c A^2
    makes cuBLAS copy X into its output first: 70 against 54 us per step on twelve 768 x 768
    matrices on an H100, as accurate against the float64 iteration; bench/results/square_step-*.)
    No host syncs, so torch.compile can capture it; the triples are Python floats and become
    constants.

    Args:
        X: a (batch, s, l) tensor, s <= l for efficiency, already normalized (spectral norm <= 1).
        coefficients: the per-step (a, b, c) triples, applied in order.
        kernel: "auto" (default: the Triton kernels on CUDA bfloat16/float16 where they measured
            faster, else torch), "torch" (bmm/baddbmm only; the CPU path) or "triton" (raises
            ValueError where it cannot run). See steepest.polar.kernels.resolve_kernel.

    Returns:
        A new (batch, s, l) tensor in X's dtype.

    References:
        seeds/000_0ff94013880c6450.txt, Alg. 2 (the quintic step); arXiv 2505.16932, §4.5
        (Horner form).
    """
    kernel = resolve_kernel(kernel, X)
    for a, b, c in coefficients:
        if c == 0.0:  # P = a I + b X X^T in one product
            poly = symmetric_product(X, b, kernel=kernel, shift=a)
        else:
            gram = symmetric_product(X, kernel=kernel)
            poly = symmetric_product(gram, c, gram, b, kernel=kernel, shift=a)
        X = torch.bmm(poly, X)
    return X
