"""The max-entry norm, whose dualizer is the entrywise sign (sign descent)."""

from __future__ import annotations

import torch

from .base import Norm
from .registry import register_norm

__all__ = ["Sign"]


@register_norm("sign")
class Sign(Norm):
    """||X||_max = max_ij |x_ij| over the last two dims (the 1 -> inf operator norm).

    Math: dual_norm(G) = sum_ij |g_ij| (entrywise l1), dualize(G) = sign(G); entries equal to
    zero map to zero (any value in [-1, 1] is optimal there), so a zero G dualizes to zeros.

    Shapes: X, G are (..., m, n); norm and dual_norm return (...).

    References:
        Beznosikov (2025), the LMO table, column "1 -> inf (Sign)":
        norm max_ij |A_ij|, LMO A -> -sign(A).
    """

    def _norm(self, X: torch.Tensor) -> torch.Tensor:
        return X.abs().amax(dim=(-2, -1))

    def _dual_norm(self, G: torch.Tensor) -> torch.Tensor:
        return G.abs().sum(dim=(-2, -1))

    def _dualize(self, G: torch.Tensor) -> torch.Tensor:
        return torch.sign(G)
