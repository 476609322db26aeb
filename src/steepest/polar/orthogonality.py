"""orthogonality_error: how far an approximate polar factor's singular values are from 1."""

from __future__ import annotations

import torch

__all__ = ["orthogonality_error"]


def orthogonality_error(
    G: torch.Tensor, O: torch.Tensor, rtol: float | None = None
) -> torch.Tensor:
    """max_i |sigma_i(O restricted to G's singular subspaces) - 1| per matrix, in float64.

    Math: with G = U diag(s) V^T (thin SVD) and U_r, V_r the singular vectors whose
    s_i > rtol * s_max, returns max |sigma(U_r^T O V_r) - 1|. When O shares G's singular vectors
    (every polar backend does) these are the values O gives to G's nonzero singular directions;
    components of O outside span(U_r) x span(V_r) are not counted. A matrix with no nonzero
    singular value gives 0.

    Args:
        G: a real floating (..., m, n) tensor, the matrix that was orthogonalized.
        O: a tensor of the same shape, the approximate polar factor of G.
        rtol: relative threshold for s_i > 0; default max(m, n) * eps(G.dtype).

    Returns:
        A float64 tensor of shape G.shape[:-2] (0-dim for a single matrix).

    References:
        Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and Non-Riemannian
        Manifolds" (2025), §3.3.1 (msign(G) = U V^T).
    """
    if not isinstance(G, torch.Tensor) or not isinstance(O, torch.Tensor):
        raise TypeError("orthogonality_error: G and O must be torch.Tensors")
    if G.ndim < 2 or G.shape != O.shape:
        raise ValueError(
            f"orthogonality_error: need G and O of the same shape (..., m, n), got "
            f"{tuple(G.shape)} and {tuple(O.shape)}"
        )
    if not (G.is_floating_point() and O.is_floating_point()):
        raise TypeError(f"orthogonality_error: need floating tensors, got {G.dtype}, {O.dtype}")
    m, n = G.shape[-2:]
    if rtol is None:
        rtol = max(m, n) * torch.finfo(G.dtype).eps
    if not (0.0 <= rtol < 1.0):
        raise ValueError(f"orthogonality_error: rtol={rtol!r}; need a float in [0, 1)")
    batch = G.shape[:-2]
    if G.numel() == 0:
        return torch.zeros(batch, dtype=torch.float64, device=G.device)
    U, S, Vh = torch.linalg.svd(G.to(torch.float64), full_matrices=False)
    keep = S > rtol * S.amax(dim=-1, keepdim=True)
    restricted = U.mT @ O.to(torch.float64) @ Vh.mT
    mask = keep.to(torch.float64)
    restricted = restricted * mask.unsqueeze(-1) * mask.unsqueeze(-2)
    # The masked matrix has the r singular values of the kept block plus k - r zeros; the kept
    # block's values are therefore its r largest.
    sigma = torch.linalg.svdvals(restricted)
    rank = keep.sum(dim=-1, keepdim=True)
    in_block = torch.arange(sigma.shape[-1], device=G.device) < rank
    deviation = torch.where(in_block, (sigma - 1.0).abs(), 0.0)
    return deviation.amax(dim=-1)
