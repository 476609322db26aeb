"""Shared helpers for the norm tests: random inputs, the inner product, the norms under test."""

import torch

from steepest import norms

#: Every registered norm's example configurations (exact backends): the property tests run
#: these, so a norm registered with @register_norm is tested without editing this list.
REGISTERED = [
    example for name in norms.available() for example in norms.norm_class(name).examples()
]
MATRIX_NORMS = [norm for norm in REGISTERED if norm.min_ndim == 2]
VECTOR_NORMS = [norm for norm in REGISTERED if norm.min_ndim == 1]
ALL_NORMS = MATRIX_NORMS + VECTOR_NORMS


def gaussian(shape, seed, dtype=torch.float64):
    """A standard Gaussian tensor from its own generator (reproducible from `seed`)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=dtype, generator=generator)


def low_rank(batch, m, n, rank, seed):
    """A (batch..., m, n) float64 tensor of rank <= `rank` (product of Gaussian factors)."""
    A = gaussian((*batch, m, rank), seed)
    B = gaussian((*batch, rank, n), seed + 1)
    return A @ B


def random_orthogonal(n, seed):
    """An n x n orthogonal matrix from the QR of a Gaussian (signs fixed by diag(R))."""
    Q, R = torch.linalg.qr(gaussian((n, n), seed))
    return Q * torch.sign(torch.diagonal(R)).unsqueeze(-2)


def with_spectrum(s, m, n, seed):
    """U diag(s) V^T with Haar-like U (m x k), V (n x k), k = len(s), float64."""
    k = s.shape[-1]
    U = random_orthogonal(m, seed)[:, :k]
    V = random_orthogonal(n, seed + 7)[:, :k]
    return (U * s) @ V.T
