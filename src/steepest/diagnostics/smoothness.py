"""Nuclear vs Frobenius gradient norms and the smoothness constants of the Frobenius and spectral
geometries, estimated from two consecutive iterates.

References: Shen et al., "On the Convergence Analysis of Muon", arXiv 2505.23737.
"""

from __future__ import annotations

import torch

from ._checks import check_matrix, svd_dtype
from .matrix import nuclear_rank

__all__ = ["muon_advantage_ratio", "nuclear_frobenius_ratio", "smoothness_estimates"]


def nuclear_frobenius_ratio(G: torch.Tensor) -> torch.Tensor:
    """||G||_*^2 / ||G||_F^2 per matrix (the nuclear rank of the gradient; 0 for G = 0).

    Args:
        G: gradient, real floating tensor of shape (..., m, n).

    Returns:
        Tensor of shape (...), in [1, rank(G)] for G != 0.

    References:
        Shen et al., arXiv 2505.23737, Fig. 3-4 (||grad||_*^2 / ||grad||_F^2).
    """
    check_matrix("nuclear_frobenius_ratio", "G", G)
    return nuclear_rank(G)


def smoothness_estimates(
    W_prev: torch.Tensor, W: torch.Tensor, G_prev: torch.Tensor, G: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Secant estimates of the smoothness constants L (Frobenius) and J (spectral) of two iterates.

    Math, with dW = W - W_prev and dG = G - G_prev (G = grad f(W)):
        L_est = ||dG||_F / ||dW||_F      (Lipschitz constant of the gradient, l2 geometry; GD),
        J_est = ||dG||_* / ||dW||_2      (gradient Lipschitz from spectral to nuclear norm; Muon),
        ratio = J_est / L_est.
    Each is a lower bound on its constant (the constant is a sup over all pairs; this is one
    pair). For a quadratic with gradient map G = A W, L_est <= ||A||_2 with equality when dW
    lies in A's top eigenspace. With stochastic gradients the two G's come from different
    batches and the estimates include gradient noise.

    Args:
        W_prev, W: consecutive iterates, real floating tensors of shape (..., m, n).
        G_prev, G: the gradients at W_prev and W, same shape.

    Returns:
        dict of tensors of shape (...): `frobenius_smoothness` (L_est), `spectral_smoothness`
        (J_est), `ratio` (J_est / L_est); nan where dW = 0.

    References:
        Shen et al., arXiv 2505.23737, Fig. 3-4 (J_t and L_t along training).
    """
    tensors = {"W_prev": W_prev, "W": W, "G_prev": G_prev, "G": G}
    for name, X in tensors.items():
        check_matrix("smoothness_estimates", name, X)
    shapes = {name: tuple(X.shape) for name, X in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"smoothness_estimates: shapes differ: {shapes}; they must match")
    dtype = svd_dtype(W)
    dW = (W - W_prev).to(dtype)
    dG = (G - G_prev).to(dtype)
    nan = torch.tensor(float("nan"), dtype=dtype, device=W.device)
    dW_fro = torch.linalg.matrix_norm(dW, ord="fro")
    dW_spec = torch.linalg.svdvals(dW)[..., 0]
    moved = dW_fro > 0
    L_est = torch.where(moved, torch.linalg.matrix_norm(dG, ord="fro") / dW_fro, nan)
    J_est = torch.where(moved, torch.linalg.svdvals(dG).sum(-1) / dW_spec, nan)
    return {"frobenius_smoothness": L_est, "spectral_smoothness": J_est, "ratio": J_est / L_est}


def muon_advantage_ratio(
    G: torch.Tensor, frobenius_smoothness: torch.Tensor, spectral_smoothness: torch.Tensor
) -> torch.Tensor:
    """(||G||_*^2 / ||G||_F^2) * (L / J): above 1 where arXiv 2505.23737 favors Muon over GD.

    Math: arXiv 2505.23737 compares GD's rate, driven by ||G||_F^2 / L, with Muon's, driven by
    ||G||_*^2 / J; Muon's is better when ||G||_*^2 L / (||G||_F^2 J) > 1 (its Equation (7), the
    "average ratio" plotted in Fig. 4(e)).

    Args:
        G: gradient, real floating tensor of shape (..., m, n).
        frobenius_smoothness: L (estimate), broadcastable to shape (...).
        spectral_smoothness: J (estimate), broadcastable to shape (...).

    Returns:
        Tensor of shape (...).

    References:
        Shen et al., arXiv 2505.23737, Fig. 4(e) and its Equation (7).
    """
    check_matrix("muon_advantage_ratio", "G", G)
    return nuclear_rank(G) * frobenius_smoothness / spectral_smoothness
