"""The core odd-quintic iteration shared by the Newton-Schulz and Polar Express backends."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["odd_quintic_iteration"]


def odd_quintic_iteration(
    X: torch.Tensor, coefficients: Sequence[tuple[float, float, float]]
) -> torch.Tensor:
    """Apply X <- a X + (b A + c A^2) X with A = X X^T, once per (a, b, c) triple.

    Math: with X = U S V^T each step maps every singular value s to p(s) = a s + b s^3 + c s^5 and
    keeps U, V. X should be short-and-wide (rows <= columns) so that A is the small Gram matrix.
    The body is two fused batched products per step (baddbmm), without host syncs, so
    torch.compile can capture it; the triples are Python floats and become constants.

    Args:
        X: a (batch, s, l) tensor, s <= l for efficiency, already normalized (spectral norm <= 1).
        coefficients: the per-step (a, b, c) triples, applied in order.

    Returns:
        A new (batch, s, l) tensor in X's dtype.

    References:
        seeds/000_0ff94013880c6450.txt, Alg. 2 (the quintic step); arXiv 2505.16932, §4.5
        (Horner form).
    """
    for a, b, c in coefficients:
        gram = torch.bmm(X, X.mT)
        if c == 0.0:
            poly = gram * b
        else:
            poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        X = torch.baddbmm(X, poly, X, beta=a, alpha=1.0)
    return X
