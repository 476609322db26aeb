"""Low-rank Kronecker approximation of a matrix (a layer's Hessian) by Van Loan's rearrangement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from ._checks import check_matrix, svd_dtype

__all__ = ["KroneckerApprox", "kronecker_approx", "kronecker_sum"]


class KroneckerApprox(NamedTuple):
    """Factors of H ~ sum_k A[k] (x) B[k] and the captured energy.

    A: (..., r, pa, qa); B: (..., r, pb, qb); energy: (..., r), energy[k-1] is the fraction of
    ||H||_F^2 captured by the best rank-k approximation (non-decreasing, at most 1).
    """

    A: torch.Tensor
    B: torch.Tensor
    energy: torch.Tensor


def _check_shape(name: str, shape: object) -> tuple[int, int]:
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise ValueError(f"kronecker_approx: {name}={shape!r}; need two positive ints (rows, cols)")
    return int(shape[0]), int(shape[1])


def kronecker_approx(
    H: torch.Tensor, shape_a: Sequence[int], shape_b: Sequence[int], rank: int
) -> KroneckerApprox:
    """Best rank-r Kronecker-sum approximation H ~ sum_{k<=r} A_k (x) B_k in Frobenius norm.

    Math (Van Loan rearrangement): H of shape (pa*pb, qa*qb) has blocks H[i1, j1] of shape
    (pb, qb); R(H) is the (pa*qa, pb*qb) matrix whose row (i1, j1) is vec(H[i1, j1]). Since
    R(A (x) B) = vec(A) vec(B)^T, ||H - sum A_k (x) B_k||_F = ||R(H) - sum vec(A_k) vec(B_k)^T||_F,
    and the truncated SVD R(H) = sum s_k u_k v_k^T gives A_k = sqrt(s_k) mat(u_k),
    B_k = sqrt(s_k) mat(v_k) (Eckart-Young). energy[k-1] = sum_{j<=k} s_j^2 / ||H||_F^2.
    (x) is torch.kron's Kronecker product: (A (x) B)[i1*pb + i2, j1*qb + j2] = A[i1,j1] B[i2,j2].

    Args:
        H: real floating tensor of shape (..., pa*pb, qa*qb); leading dims are a batch.
        shape_a: (pa, qa), the shape of each A_k.
        shape_b: (pb, qb), the shape of each B_k.
        rank: number of terms r, 1 <= r <= min(pa*qa, pb*qb).

    Returns:
        KroneckerApprox(A, B, energy) with A (..., r, pa, qa), B (..., r, pb, qb), energy (..., r).

    References:
        C. F. Van Loan and N. Pitsianis, "Approximation with Kronecker products", 1993 (cited by
        arXiv 2606.04662, ref. [111]); arXiv 2606.04662, Fig. 5
        (energy captured by rank-r Kronecker approximations of attention Hessians).
    """
    check_matrix("kronecker_approx", "H", H)
    pa, qa = _check_shape("shape_a", shape_a)
    pb, qb = _check_shape("shape_b", shape_b)
    if tuple(H.shape[-2:]) != (pa * pb, qa * qb):
        raise ValueError(
            f"kronecker_approx: H has shape {tuple(H.shape)}; with shape_a={(pa, qa)} and "
            f"shape_b={(pb, qb)} it must end in {(pa * pb, qa * qb)}"
        )
    max_rank = min(pa * qa, pb * qb)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= max_rank:
        raise ValueError(f"kronecker_approx: rank={rank!r}; need an int in [1, {max_rank}]")
    batch = H.shape[:-2]
    X = H.to(svd_dtype(H)).reshape(*batch, pa, pb, qa, qb)
    R = X.transpose(-3, -2).reshape(*batch, pa * qa, pb * qb)
    U, S, Vh = torch.linalg.svd(R, full_matrices=False)
    root = S[..., :rank].sqrt()
    A = (U[..., :, :rank] * root.unsqueeze(-2)).mT.reshape(*batch, rank, pa, qa)
    B = (Vh[..., :rank, :] * root.unsqueeze(-1)).reshape(*batch, rank, pb, qb)
    total = S.square().sum(-1, keepdim=True)
    captured = S[..., :rank].square().cumsum(-1)
    energy = torch.where(total > 0, captured / torch.where(total > 0, total, 1.0), 1.0)
    return KroneckerApprox(A, B, energy)


def kronecker_sum(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """sum_k A[..., k] (x) B[..., k]: (..., r, pa, qa), (..., r, pb, qb) -> (..., pa*pb, qa*qb).

    The inverse of `kronecker_approx` at full rank; use it to reconstruct and measure the error.
    """
    check_matrix("kronecker_sum", "A", A)
    check_matrix("kronecker_sum", "B", B)
    if A.ndim < 3 or A.shape[:-2] != B.shape[:-2]:
        raise ValueError(
            f"kronecker_sum: A {tuple(A.shape)} and B {tuple(B.shape)} need the same leading "
            f"(..., r) dims"
        )
    pa, qa = A.shape[-2:]
    pb, qb = B.shape[-2:]
    prod = A[..., :, None, :, None] * B[..., None, :, None, :]
    return prod.sum(-5).reshape(*A.shape[:-3], pa * pb, qa * qb)
