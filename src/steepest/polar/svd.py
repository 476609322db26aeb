"""Exact polar factor through the SVD: the oracle for every other backend."""

from __future__ import annotations

import torch

__all__ = ["polar_svd", "zero_singular_threshold"]


def zero_singular_threshold(shape: torch.Size, dtype: torch.dtype) -> float:
    """Relative threshold below which a singular value counts as zero: max(m, n) * eps(dtype).

    A singular value s_i is treated as zero when s_i <= threshold * s_max (the convention of
    numpy.linalg.matrix_rank), so SVD round-off on an exactly rank-deficient matrix is dropped.
    """
    return max(shape[-2], shape[-1]) * torch.finfo(dtype).eps


def polar_svd(X: torch.Tensor) -> torch.Tensor:
    """U V^T of each (..., m, n) matrix of X, with zero singular directions mapped to zero.

    Math: X = U diag(s) V^T (thin SVD); returns U diag(1[s > t * s_max]) V^T with
    t = zero_singular_threshold(X.shape, X.dtype). A zero matrix gives zeros.

    Args:
        X: a floating (..., m, n) tensor in float32 or float64 (the compute precision).

    Returns:
        A tensor of X's shape and dtype.

    References:
        Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and Non-Riemannian
        Manifolds" (2025), the dualizer of the spectral norm (= U V^T) and §3.3.1.
    """
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)
    threshold = zero_singular_threshold(X.shape, X.dtype)
    keep = S > S.amax(dim=-1, keepdim=True) * threshold
    out: torch.Tensor = (U * keep.unsqueeze(-2).to(U.dtype)) @ Vh
    return out
