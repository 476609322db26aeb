"""Shared helpers for the norm tests: random inputs, the inner product, the norms under test."""

import math

import torch

from steepest.norms import (
    RMS,
    ColNorm,
    Frobenius,
    RowNorm,
    SchattenP,
    Sign,
    Spectral,
)

#: Every matrix norm configuration the property tests run (exact backends only).
MATRIX_NORMS = [
    Frobenius(),
    Spectral(),
    Spectral(rms=True),
    SchattenP(1),
    SchattenP(1.25),
    SchattenP(2),
    SchattenP(3),
    SchattenP(7.5),
    SchattenP(math.inf),
    Sign(),
    ColNorm(),
    ColNorm(rms=False),
    RowNorm(),
    RowNorm(rms=False),
]
VECTOR_NORMS = [RMS()]
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
