"""Schatten-p dualizers approach the spectral one as p grows, as tests.

Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and Non-Riemannian
Manifolds" (2025), Proposition 5 (variance of the dualized singular values t_i
falls to 0 as p -> inf, quadratically in 1/p) and Definition 7 / §4.3.2 (the stable rank
||T||_F^2 / ||T||_2^2 of the dualized gradient rises to that of the spectral dualizer, which is
the rank). All on fixed-seed float64 matrices with known singular values; the singular values of
the dualized matrix are recomputed with torch.linalg.svdvals (an independent SVD).

Measured here (not in the survey): the raw variance is NOT monotone in p over all spectra. With a
spectrum spanning 3 decades (sigma = logspace(0, -3, 16)) it rises from 0.043 (p = 1.5) to 0.051
(p = 3) before falling, because the normalization ||T||_{S_p} = 1 also moves the mean. On a
gradient-like spectrum (Zipf, sigma_i = 1/i: low stable rank, as the survey's raw gradients) it
falls monotonically over the whole sweep. Both behaviours are asserted below, as is the exact
rate behind Prop. 5: (p - 1)^2 Var(t) -> Var_i(ln sigma_i) as p -> inf (first-order expansion
t_i = exp((q - 1) ln(sigma_i / ||sigma||_q)) with q - 1 = 1 / (p - 1)).
"""

import math
from itertools import pairwise

import torch
from norms_helpers import with_spectrum

from steepest.norms import SchattenP, Spectral

SWEEP = [1.5, 2.0, 3.0, 4.0, 8.0, 16.0, 64.0, math.inf]
M, N = 32, 16
ZIPF = 1.0 / torch.arange(1, N + 1, dtype=torch.float64)
WIDE = torch.logspace(0, -3, N, dtype=torch.float64)


def _dualized_singular_values(G, p):
    return torch.linalg.svdvals(SchattenP(p).dualize(G))


def _variance(t):
    return t.var(unbiased=False).item()


def _stable_rank(T):
    s = torch.linalg.svdvals(T)
    return ((s**2).sum() / s[0] ** 2).item()


def test_variance_of_dualized_singular_values_falls_to_zero_on_a_gradient_spectrum():
    G = with_spectrum(ZIPF, M, N, seed=0)
    variances = [_variance(_dualized_singular_values(G, p)) for p in SWEEP]
    assert all(b <= a for a, b in pairwise(variances)), variances
    assert variances[0] > 0.03  # a real spread to start from (0.045 measured)
    assert variances[-1] < 1e-25  # p = inf: every t_i = 1


def test_variance_falls_from_p_4_on_a_wide_spectrum_but_not_before():
    G = with_spectrum(WIDE, M, N, seed=1)
    variances = [_variance(_dualized_singular_values(G, p)) for p in SWEEP]
    tail = variances[SWEEP.index(4.0) :]
    assert all(b <= a for a, b in pairwise(tail)), tail
    assert variances[SWEEP.index(3.0)] > variances[0]  # the non-monotone start, documented above
    assert variances[-1] < 1e-25


def test_variance_decays_like_one_over_p_squared():
    """(p - 1)^2 Var(t) converges to Var_i(ln sigma_i), the constant of Prop. 5's expansion."""
    for spectrum in (ZIPF, WIDE):
        G = with_spectrum(spectrum, M, N, seed=2)
        limit = _variance(torch.log(spectrum))
        ratios = [
            (p - 1) ** 2 * _variance(_dualized_singular_values(G, p)) / limit
            for p in (64.0, 256.0, 1e3, 1e4)
        ]
        errors = [abs(r - 1.0) for r in ratios]
        assert all(b < a for a, b in pairwise(errors)), ratios
        assert errors[-1] < 2e-3, ratios


def test_stable_rank_rises_to_the_spectral_dualizers():
    for spectrum, rank in ((ZIPF, N), (WIDE, N), (torch.cat([ZIPF[:5], torch.zeros(N - 5)]), 5)):
        G = with_spectrum(spectrum.to(torch.float64), M, N, seed=3)
        ranks = [_stable_rank(SchattenP(p).dualize(G)) for p in SWEEP]
        assert all(b > a for a, b in pairwise(ranks)), ranks
        assert _stable_rank(G) < 2.0  # the raw gradient has a low stable rank
        spectral = _stable_rank(Spectral(backend="svd").dualize(G))
        assert abs(spectral - rank) < 1e-9
        assert abs(ranks[-1] - spectral) < 1e-9
        assert ranks[SWEEP.index(64.0)] > 0.8 * rank  # already close at p = 64
