"""AOL preconditioning of the polar iteration (Turbo-Muon): a diagonal rescaling that bounds
the spectral norm by 1 and brings the small singular values up, so that the iteration can
start closer to convergence and drop a step."""

from __future__ import annotations

import torch

__all__ = ["PRECONDITIONERS", "aol_rescale", "aol_rescale_with_gram"]

#: The names msign's ``precondition`` accepts (None: the Frobenius normalization alone).
PRECONDITIONERS = ("aol",)


def aol_rescale(X: torch.Tensor) -> torch.Tensor:
    """diag(d) X with d_i = (sum_j |X X^T|_ij)^(-1/2), for every (s, l) matrix of the
    (batch, s, l) stack X (wide: s <= l, so X X^T is the small Gram matrix).

    Math: for any X, ||diag(d) X||_2 <= 1 (the AOL bound: the Gram matrix of diag(d) X is
    dominated by its diagonal sums). A zero row gets d_i = 0. The row scaling changes the
    polar factor unless the rows' Gram sums are equal: msign(diag(d) X) is the polar factor
    of a preconditioned matrix, close to msign(X) when X's rows have similar norms and
    overlaps (the accuracy test reports both errors against the float64 SVD). For a 16-bit X
    the Gram product runs in X's dtype (the matmul accumulates in float32, each entry is
    rounded once: a float32 product costs about as much as the iteration it saves on a
    GPU), else in X's dtype (float32 or float64); the row sums, d and d X are taken in
    float32 (float64 for float64 X) and rounded once to X's dtype. The result does not
    depend on X's scale.

    References: Boissin, Massena, Mamalet, Serrurier, "Turbo-Muon: Accelerating
    Orthogonality-Based Optimization with Pre-Conditioning", arXiv 2512.04632 (AOL
    preconditioning of Newton-Schulz, one iteration fewer); Prach & Lampert, "Almost-
    Orthogonal Layers for Efficient General-Purpose Lipschitz Networks", arXiv 2208.03160,
    Theorem 1 (the rescaling and its bound).
    """
    return aol_rescale_with_gram(X)[0]


def aol_rescale_with_gram(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """aol_rescale(X) and the Gram matrix of the result, diag(d) (X X^T) diag(d), both in X's
    dtype, from aol_rescale's one product: the polar iteration starts from this Gram matrix
    instead of forming it again, so AOL costs no extra product (Boissin et al., arXiv
    2512.04632)."""
    work = torch.float64 if X.dtype == torch.float64 else torch.float32
    gram = (X @ X.mT).to(work)
    sums = gram.abs().sum(dim=-1, keepdim=True)
    d = torch.where(sums > 0, sums.rsqrt(), 0.0)
    return (d * X.to(work)).to(X.dtype), (d * gram * d.mT).to(X.dtype)
