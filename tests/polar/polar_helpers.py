"""Shared builders for the polar tests: matrices with a known SVD and the scalar fp64 oracle."""

import numpy as np
import torch


def random_orthonormal(rows, cols, batch=(), generator=None):
    """(*batch, rows, cols) with orthonormal columns (cols <= rows), float64."""
    Z = torch.randn(*batch, rows, cols, dtype=torch.float64, generator=generator)
    Q, R = torch.linalg.qr(Z)
    return Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)


def with_spectrum(s, m, n, batch=(), generator=None):
    """G = U diag(s) V^T in float64 with random U (m x k), V (n x k), k = len(s) <= min(m, n).

    Returns (G, U, V) so tests know the exact singular vectors.
    """
    s = torch.as_tensor(s, dtype=torch.float64)
    k = s.shape[-1]
    U = random_orthonormal(m, k, batch, generator)
    V = random_orthonormal(n, k, batch, generator)
    return (U * s.unsqueeze(-2)) @ V.mT, U, V


def compose(schedule, x):
    """Apply the odd quintics of `schedule` to the numbers x in float64 (the scalar oracle)."""
    x = np.asarray(x, dtype=np.float64)
    for a, b, c in schedule:
        x = a * x + b * x**3 + c * x**5
    return x


def normalized(s, safety=1.01):
    """The singular values as msign's iterative backends see them: s / (safety ||s||_2).

    safety is 1.01 for polar_express and callables, 1.0 for newton_schulz (Cesista 2025, Alg. 2).
    """
    s = np.asarray(s, dtype=np.float64)
    return s / (safety * np.sqrt(np.sum(s**2, axis=-1, keepdims=True)))
