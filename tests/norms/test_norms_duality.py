"""The dualizer identities of every norm, as hypothesis property tests in float64.

For G != 0 and T* = dualize(G):  norm(T*) = 1,  <G, T*> = dual_norm(G),  and no unit-norm T
does better: <G, T> <= dual_norm(G) for random T (Gaussian and small perturbations of T*),
each normalized by its own norm(T). The oracle for the last check is the definition
dual_norm(G) = max_{||T|| = 1} <G, T> (Cesista, "Muon and a Selective Survey on Steepest
Descent in Riemannian and Non-Riemannian Manifolds" (2025), §2.3), tested on points independent
of the implementation. Tolerance: 1e-10 relative (float64 round-off of an SVD of at
most 7 x 7 matrices is ~1e-14).
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from norms_helpers import ALL_NORMS, MATRIX_NORMS, gaussian, low_rank

from steepest.norms import SchattenP

RTOL = 1e-10
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)


@st.composite
def inputs(draw):
    """(norm, G): a norm under test and a random batched float64 input for it."""
    norm = draw(st.sampled_from(ALL_NORMS))
    seed = draw(st.integers(0, 2**31 - 1))
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    scale = 10.0 ** draw(st.integers(-6, 6))
    if norm.min_ndim == 1:
        n = draw(st.integers(1, 9))
        return norm, gaussian((*batch, n), seed) * scale
    m, n = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    if draw(st.booleans()):
        G = gaussian((*batch, m, n), seed)
    else:
        G = low_rank(batch, m, n, draw(st.integers(1, min(m, n))), seed)
    return norm, G * scale


@st.composite
def schatten_inputs(draw):
    """(SchattenP(p), G) for p drawn from [1, 40] and the edges 1, inf."""
    p = draw(st.one_of(st.floats(1.0, 40.0), st.sampled_from([1.0, math.inf])))
    seed = draw(st.integers(0, 2**31 - 1))
    m, n = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    return SchattenP(p), gaussian((2, m, n), seed)


def _check_identities(norm, G):
    T = norm.dualize(G)
    assert T.shape == G.shape and T.dtype == G.dtype
    dual = norm.dual_norm(G)
    torch.testing.assert_close(norm.norm(T), torch.ones_like(dual), rtol=RTOL, atol=RTOL)
    torch.testing.assert_close(norm.inner(G, T), dual, rtol=RTOL, atol=0.0)


def _check_no_better_direction(norm, G, seed):
    """Random unit-norm T never beat dual_norm(G); nor do small perturbations of dualize(G)."""
    samples = 64
    T_star = norm.dualize(G)
    noise = gaussian((samples, *G.shape), seed)
    eps = torch.logspace(-4, 0, samples, dtype=G.dtype).reshape(-1, *[1] * G.ndim)
    candidates = torch.cat([noise, T_star + eps * noise[torch.randperm(samples)]])
    reduced = (Ellipsis,) + (None,) * norm.min_ndim
    candidates = candidates / norm.norm(candidates)[reduced]
    scores = norm.inner(G, candidates)
    dual = norm.dual_norm(G)
    assert torch.all(scores <= dual * (1 + RTOL) + 1e-300), (scores.max(), dual)
    # the dualizer itself reaches the bound, so the bound is tight, not loose
    assert torch.all(norm.inner(G, T_star) >= scores.amax(dim=0) * (1 - RTOL))


@SETTINGS
@given(inputs())
def test_dualize_has_unit_norm_and_attains_the_dual_norm(case):
    norm, G = case
    _check_identities(norm, G)


@SETTINGS
@given(inputs(), st.integers(0, 2**31 - 1))
def test_no_random_unit_direction_scores_higher(case, seed):
    norm, G = case
    _check_no_better_direction(norm, G, seed)


@SETTINGS
@given(schatten_inputs(), st.integers(0, 2**31 - 1))
def test_schatten_identities_for_any_p(case, seed):
    norm, G = case
    _check_identities(norm, G)
    _check_no_better_direction(norm, G, seed)


@pytest.mark.parametrize("norm", ALL_NORMS, ids=repr)
def test_zero_input_dualizes_to_zeros(norm):
    shape = (3, 4, 5)
    G = gaussian(shape, 0)
    G[1] = 0.0  # one zero member inside a batch
    T = norm.dualize(G)
    if norm.min_ndim == 2:
        assert torch.equal(T[1], torch.zeros(4, 5, dtype=torch.float64))
        assert norm.norm(G)[1] == 0 and norm.dual_norm(G)[1] == 0
        _check_identities(norm, G[[0, 2]])
    else:
        assert torch.equal(T[1], torch.zeros(4, 5, dtype=torch.float64))
    assert torch.isfinite(T).all()


@pytest.mark.parametrize("norm", MATRIX_NORMS, ids=repr)
@pytest.mark.parametrize("scale", [1e-150, 1e150])
def test_extreme_scales_stay_finite_and_exact(norm, scale):
    """Normalizing by the top singular value first keeps sigma^(q-1) from over/underflowing."""
    G = gaussian((2, 5, 4), 3) * scale
    T = norm.dualize(G)
    assert torch.isfinite(T).all()
    torch.testing.assert_close(T, norm.dualize(G / scale), rtol=1e-12, atol=1e-14)
    _check_identities(norm, G)
