"""Column- and row-wise operator norms (ColNorm, RowNorm) with the RMS scalings of the LMO table.

Layout: a weight A has shape (..., d_out, d_in) as in torch.nn.Linear, so its column j
(length d_out) holds the weights from input j and its row i (length d_in) those into output i.
"""

from __future__ import annotations

import math

import torch

from .base import Norm, check_bool
from .registry import register_norm

__all__ = ["ColNorm", "RowNorm"]


def _normalize_along(G: torch.Tensor, dim: int) -> torch.Tensor:
    """G divided by its l2 norm along `dim`; slices with zero norm stay zero."""
    norm = torch.linalg.vector_norm(G, dim=dim, keepdim=True)
    return G / torch.where(norm > 0, norm, 1.0)


@register_norm("colnorm")
class ColNorm(Norm):
    """The largest column norm, by default in RMS units: the 1 -> RMS operator norm.

    Math (rms=True, the table's norm): ||A|| = max_j ||col_j(A)||_2 / sqrt(d_out);
    dual_norm(G) = sqrt(d_out) * sum_j ||col_j(G)||_2;
    dualize(G): col_j -> sqrt(d_out) col_j / ||col_j||_2 (the table's LMO up to its minus sign).
    rms=False drops the factor c = 1/sqrt(d_out): the 1 -> 2 operator norm max_j ||col_j||_2 with
    dual sum_j ||col_j||_2 and dualizer col_j / ||col_j||_2. Zero columns dualize to zero (they
    do not change <G, T>), so only a zero G gives an all-zero (norm-0) result.

    Shapes: (..., d_out, d_in); norm and dual_norm return (...).

    Args:
        rms: use the RMS factor of the LMO table (default True).

    References:
        Beznosikov (2025), the LMO table, column "1 -> RMS (ColNorm)"; the
        table is that of Scion (Pethick et al., arXiv 2502.07529).
    """

    def __init__(self, rms: bool = True):
        self.rms = check_bool("ColNorm", "rms", rms)

    @classmethod
    def examples(cls) -> list[Norm]:
        return [cls(), cls(rms=False)]

    def _params(self) -> dict[str, object]:
        return {"rms": self.rms}

    def _scale(self, shape: torch.Size) -> float:
        return 1.0 / math.sqrt(shape[-2]) if self.rms else 1.0

    def _norm(self, X: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(X, dim=-2).amax(dim=-1)  # type: ignore[no-any-return]

    def _dual_norm(self, G: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(G, dim=-2).sum(dim=-1)  # type: ignore[no-any-return]

    def _dualize(self, G: torch.Tensor) -> torch.Tensor:
        return _normalize_along(G, dim=-2)


@register_norm("rownorm")
class RowNorm(Norm):
    """The largest row norm, by default in RMS units: the RMS -> inf operator norm.

    Math (rms=True, the table's norm): ||A|| = sqrt(d_in) * max_i ||row_i(A)||_2;
    dual_norm(G) = sum_i ||row_i(G)||_2 / sqrt(d_in);
    dualize(G): row_i -> row_i / (sqrt(d_in) ||row_i||_2) (the table's LMO up to its minus sign).
    rms=False drops the factor c = sqrt(d_in): the 2 -> inf operator norm max_i ||row_i||_2 with
    dual sum_i ||row_i||_2 and dualizer row_i / ||row_i||_2. Zero rows dualize to zero.

    Shapes: (..., d_out, d_in); norm and dual_norm return (...).

    Args:
        rms: use the RMS factor of the LMO table (default True).

    References:
        Beznosikov (2025), the LMO table, column "RMS -> inf (RowNorm)"; the
        table is that of Scion (Pethick et al., arXiv 2502.07529).
    """

    def __init__(self, rms: bool = True):
        self.rms = check_bool("RowNorm", "rms", rms)

    @classmethod
    def examples(cls) -> list[Norm]:
        return [cls(), cls(rms=False)]

    def _params(self) -> dict[str, object]:
        return {"rms": self.rms}

    def _scale(self, shape: torch.Size) -> float:
        return math.sqrt(shape[-1]) if self.rms else 1.0

    def _norm(self, X: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(X, dim=-1).amax(dim=-1)  # type: ignore[no-any-return]

    def _dual_norm(self, G: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(G, dim=-1).sum(dim=-1)  # type: ignore[no-any-return]

    def _dualize(self, G: torch.Tensor) -> torch.Tensor:
        return _normalize_along(G, dim=-1)
