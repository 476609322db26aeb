"""Gram statistics (G G^T, G^T G) kept divided by a running max-abs scale.

Shampoo, CASPR and SOAP accumulate G G^T and G^T G. Formed in the state's dtype these
overflow for |G| beyond about 1e19 in float32 (1e154 in float64) and underflow to 0 below the
reciprocal, after which eigh fails or returns inf. Here each matrix view keeps a scale
s = max over steps of max|G| (per matrix), the statistics are stored as S / s^2 and the
gradient is used as G / s, whose entries lie in [-1, 1]. When s grows the stored statistics
are multiplied by (s_old / s_new)^2 <= 1, so nothing grows without bound.
"""

from __future__ import annotations

import torch

__all__ = ["normalize_gram"]


def normalize_gram(
    X: torch.Tensor, scale: torch.Tensor, statistics: list[torch.Tensor], running: bool
) -> torch.Tensor:
    """X / s for a stack of matrices, with the scale s and the stored statistics updated.

    Math: s_new = max(s_old, max|X|) if ``running`` else max|X| (per matrix); every stored
    statistic A = S / s_old^2 becomes S / s_new^2 = A (s_old / s_new)^2 (only when
    ``running``: otherwise the caller replaces the statistics). s is at least the smallest
    normal number of the dtype (a zero matrix gives X / s = 0); a fresh state has s_old = 0.

    Args:
        X: (..., m, n) matrices, in the statistics' dtype.
        scale: (..., 1, 1) state tensor holding s_old; overwritten with s_new.
        statistics: state tensors (..., k, k) or (..., m, n), quadratic in X, stored divided
            by s_old^2; rescaled in place.
        running: True to keep the largest scale seen so far (accumulated statistics).

    Returns:
        X / s_new, entries in [-1, 1].
    """
    largest = X.abs().amax(dim=(-2, -1), keepdim=True)
    new = torch.maximum(scale, largest) if running else largest
    new = new.clamp_min(torch.finfo(new.dtype).tiny)
    if running:
        ratio = (scale / new).square_()
        for statistic in statistics:
            statistic.mul_(ratio)
    scale.copy_(new)
    return X / new
