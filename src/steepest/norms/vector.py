"""The RMS norm of vectors (biases, gains): the l2 norm divided by sqrt(n)."""

from __future__ import annotations

import math

import torch

from .base import Norm
from .registry import register_norm

__all__ = ["RMS"]


@register_norm("rms")
class RMS(Norm):
    """||x||_rms = ||x||_2 / sqrt(n) over the last dim (n = x.shape[-1]).

    Math: with c = 1/sqrt(n), the dual is ||g||_* = max_{||t||_2 = sqrt(n)} <g, t>
    = sqrt(n) ||g||_2, reached at dualize(g) = sqrt(n) g / ||g||_2 (every entry of size ~1,
    ||dualize(g)||_rms = 1); a zero vector dualizes to zeros.

    Shapes: x, g are (..., n); norm and dual_norm return (...).

    References:
        Beznosikov (2025), the LMO table (the RMS vector geometry behind its
        "RMS" columns); Cesista (2025), §2.3 (the dualizer).
    """

    min_ndim = 1

    def _scale(self, shape: torch.Size) -> float:
        return 1.0 / math.sqrt(shape[-1])

    def _norm(self, X: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(X, dim=-1)  # type: ignore[no-any-return]

    def _dual_norm(self, G: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(G, dim=-1)  # type: ignore[no-any-return]

    def _dualize(self, G: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(G, dim=-1, keepdim=True)
        return G / torch.where(norm > 0, norm, 1.0)
