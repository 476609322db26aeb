"""The Frobenius norm: the Euclidean (Riemannian) case of steepest descent."""

from __future__ import annotations

import torch

from .base import Norm
from .registry import register_norm

__all__ = ["Frobenius"]


@register_norm("frobenius")
class Frobenius(Norm):
    """||X||_F = sqrt(sum_ij x_ij^2) over the last two dims; self-dual.

    Math: dual_norm(G) = ||G||_F, dualize(G) = G / ||G||_F (zeros for G = 0): the normalized
    gradient, i.e. SGD (SchattenP(2) gives the same).

    Shapes: X, G are (..., m, n); norm and dual_norm return (...).

    References:
        Cesista (2025), §4.2.1 (Recovering SGD, p = q = 2).
    """

    def _norm(self, X: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(X, dim=(-2, -1))  # type: ignore[no-any-return]

    def _dual_norm(self, G: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(G, dim=(-2, -1))  # type: ignore[no-any-return]

    def _dualize(self, G: torch.Tensor) -> torch.Tensor:
        # the norm accumulated in float64 (a 16-bit G's sum of squares can overflow or lose
        # digits), then cast back; a zero (or non-finite) norm gives zeros
        norm = torch.linalg.vector_norm(G, dim=(-2, -1), keepdim=True, dtype=torch.float64)
        norm = norm.to(G.dtype)
        return torch.where(norm > 0, G / torch.where(norm > 0, norm, 1.0), 0.0)
