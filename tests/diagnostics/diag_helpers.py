"""Builders for the diagnostics tests: SPD Kronecker-sum Hessians and the quadratic they define."""

import torch


def random_spd(n, generator, shift=0.5):
    """A random symmetric positive definite n x n float64 matrix (eigenvalues >= shift)."""
    Z = torch.randn(n, n, dtype=torch.float64, generator=generator)
    return Z @ Z.T / n + shift * torch.eye(n, dtype=torch.float64)


def kronecker_spd(m, n, terms, generator):
    """H = sum_k A_k (x) B_k with A_k (m x m), B_k (n x n) SPD, hence H SPD; also the factors."""
    As = torch.stack([random_spd(m, generator) for _ in range(terms)])
    Bs = torch.stack([random_spd(n, generator) for _ in range(terms)])
    H = sum(torch.kron(A, B) for A, B in zip(As, Bs, strict=False))
    return H, As, Bs


def quadratic(H, b, params):
    """loss_fn for f(w) = 1/2 w^T H w + <b, w>, w the row-major flattening of all params joined."""

    def loss_fn():
        w = torch.cat([p.reshape(-1) for p in params])
        return 0.5 * w @ (H @ w) + b @ w

    return loss_fn
