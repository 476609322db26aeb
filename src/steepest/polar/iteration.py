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
    Per step: A = X X^T and B = b A + c A A (both symmetric: symmetric_product, which with
    kernel="triton" computes one block-triangle and mirrors it, the b A term fused into the
    epilogue), then X <- a X + B X as one baddbmm (cuBLAS with its alpha/beta epilogue). No host
    syncs, so torch.compile can capture it; the triples are Python floats and become constants.

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
        gram = symmetric_product(X, kernel=kernel)
        if c == 0.0:
            poly = gram * b
        else:
            poly = symmetric_product(gram, c, gram, b, kernel=kernel)
        X = torch.baddbmm(X, poly, X, beta=a, alpha=1.0)
    return X
