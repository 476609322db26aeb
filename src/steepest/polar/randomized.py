"""Low-rank polar factor U_r V_r^T by a randomized SVD (range finder + small SVD)."""

from __future__ import annotations

import torch

from .svd import zero_singular_threshold

__all__ = ["randomized_polar"]


def randomized_polar(
    G: torch.Tensor,
    rank: int,
    oversample: int = 5,
    power_iters: int = 2,
    seed: int = 0,
) -> torch.Tensor:
    """U_r V_r^T for the top-`rank` singular directions of every (..., m, n) matrix of G.

    Math: with a Gaussian sketch Omega (n x k), k = min(rank + oversample, m, n), the range
    finder Q = orth((G G^T)^q G Omega) (q = power_iters, re-orthonormalized after each
    product), the small SVD Q^T G = U_b diag(s) V^T and U = Q U_b give G's top singular
    triplets; the result keeps the first `rank` of them with s > max(m, n) eps(dtype) s_max.
    For rank >= min(m, n) this is the exact polar factor U V^T (up to round-off).
    The sketch is drawn from a generator seeded with `seed` on every call, so the output is a
    deterministic function of G (a resumed run repeats it bit for bit).

    Args:
        G: a real floating (..., m, n) tensor; leading dims are a batch.
        rank: the number r >= 1 of singular directions kept.
        oversample: extra sketch columns (>= 0), default 5.
        power_iters: power iterations q (>= 0), default 2.
        seed: seed of the Gaussian sketch.

    Returns:
        A tensor of G's shape and dtype (computed in float32, float64 for float64 input).

    References: Halko, Martinsson & Tropp 2011 (arXiv 0909.4061), Alg. 4.4 and 5.1;
    arXiv 2509.14562 (LiMuon: randomized SVD for low-rank Muon updates).
    """
    for name, value, low in (("rank", rank, 1), ("oversample", oversample, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"randomized_polar: {name}={value!r}; need an int >= {low}")
    if isinstance(power_iters, bool) or not isinstance(power_iters, int) or power_iters < 0:
        raise ValueError(f"randomized_polar: power_iters={power_iters!r}; need an int >= 0")
    if not isinstance(G, torch.Tensor) or not G.is_floating_point() or G.ndim < 2:
        raise ValueError("randomized_polar: G must be a real floating tensor of shape (..., m, n)")
    if G.numel() == 0:
        return torch.zeros_like(G)
    m, n = G.shape[-2:]
    dtype = torch.float64 if G.dtype == torch.float64 else torch.float32
    X = G.reshape(-1, m, n).to(dtype)
    k = min(rank + oversample, m, n)
    generator = torch.Generator().manual_seed(int(seed))
    omega = torch.randn(n, k, generator=generator, dtype=dtype).to(X.device)
    Q = torch.linalg.qr(X @ omega).Q
    for _ in range(power_iters):
        Q = torch.linalg.qr(X.mT @ Q).Q
        Q = torch.linalg.qr(X @ Q).Q
    U_b, s, Vh = torch.linalg.svd(Q.mT @ X, full_matrices=False)
    r = min(rank, k)
    U, s, Vh = (Q @ U_b)[..., :r], s[..., :r], Vh[..., :r, :]
    keep = s > s[..., :1] * zero_singular_threshold(X.shape, dtype)
    out: torch.Tensor = (U * keep.unsqueeze(-2).to(dtype)) @ Vh
    return out.reshape(G.shape).to(G.dtype)
