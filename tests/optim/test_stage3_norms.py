"""Stage 3 as a norm: every member that declares ``norm(group)`` dualizes under it.

For each registered matrix algorithm with a declared norm, on float64 stacks with the exact
polar backend ("svd"): the member's dualize is the norm's dualizer times a per-matrix factor
>= 0 (1 for a plain dualizer; Muon's eps damping, PolarGrad's nuclear norm), and the declared
norm satisfies norm(dualize(G)) = 1 and <G, dualize(G)> = dual_norm(G), with its dual norm
checked against the float64 SVD or the entrywise closed form.
"""

import math

import pytest
import torch

from steepest.norms import Frobenius, Norm, SchattenP, Sign, Spectral
from steepest.optim import ALGORITHMS
from steepest.optim.registry import Algorithm

MATRIX = sorted(name for name, algorithm in ALGORITHMS.items() if algorithm.matrix)


def exact_group(algorithm, **overrides):
    group = dict(algorithm.defaults)
    if "backend" in group:
        group["backend"] = "svd"
    group.update(overrides)
    return group


def stack(seed, shape=(3, 6, 4)):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.float64, generator=generator)


def dual_norm_oracle(norm, G):
    """Independent closed forms of the dual norms the members use."""
    s = torch.linalg.svdvals(G)
    m, n = G.shape[-2:]
    if isinstance(norm, Spectral):
        return s.sum(-1) * (math.sqrt(m / n) if norm.rms else 1.0)
    if isinstance(norm, SchattenP) and norm.p == math.inf:
        return s.sum(-1)
    if isinstance(norm, Frobenius):
        return G.square().sum((-2, -1)).sqrt()
    if isinstance(norm, Sign):
        return G.abs().sum((-2, -1))
    return None


def declared(name, **overrides):
    algorithm = ALGORITHMS[name]
    group = exact_group(algorithm, **overrides)
    return algorithm, group, algorithm.norm(group)


WITH_NORM = [name for name in MATRIX if declared(name)[2] is not None]
WITHOUT_NORM = [name for name in MATRIX if declared(name)[2] is None]


def test_the_spectral_sign_frobenius_and_schatten_members_declare_a_norm():
    for name in ("muon", "specgd", "polargrad", "scion", "signum", "lion", "nsgd", "schatten"):
        assert name in WITH_NORM


@pytest.mark.parametrize("name", WITHOUT_NORM)
def test_members_without_a_norm_define_their_own_dualize(name):
    # a preconditioner's output passed through (Shampoo, SOAP, Dion, ...) or a clip
    assert type(ALGORITHMS[name]).dualize is not Algorithm.dualize


@pytest.mark.parametrize("name", WITH_NORM)
def test_members_dualize_under_their_declared_norm(name):
    algorithm, group, norm = declared(name)
    assert isinstance(norm, Norm)
    X = stack(1)
    T = norm.dualize(X)
    D = algorithm.dualize(X, group)
    factor = (D * T).sum((-2, -1)) / (T * T).sum((-2, -1))
    assert torch.all(factor >= 0)
    torch.testing.assert_close(D, factor[:, None, None] * T, rtol=1e-10, atol=1e-12)
    dual = norm.dual_norm(X)
    torch.testing.assert_close(norm.norm(T), torch.ones(3, dtype=X.dtype), rtol=1e-10, atol=0.0)
    torch.testing.assert_close(norm.inner(X, T), dual, rtol=1e-10, atol=0.0)
    oracle = dual_norm_oracle(norm, X)
    assert oracle is not None, f"{name}: add the closed form of {norm!r} to this test"
    torch.testing.assert_close(dual, oracle, rtol=1e-10, atol=0.0)


def test_plain_dualizers_have_factor_one():
    """Members without damping or a nuclear factor return exactly their norm's dualizer."""
    X = stack(2)
    for name in ("signum", "signsgd", "lion", "nsgd", "schatten", "specgd", "muon", "scion"):
        algorithm, group, norm = declared(name)
        torch.testing.assert_close(algorithm.dualize(X, group), norm.dualize(X), rtol=0, atol=0)


@pytest.mark.parametrize("norm_name", ["spectral", "colnorm", "rownorm", "sign", "frobenius"])
@pytest.mark.parametrize("transpose", [False, True])
def test_scion_norms_and_transpose(norm_name, transpose):
    algorithm, group, norm = declared("scion", norm=norm_name, transpose=transpose)
    X = stack(3)
    expected = norm.dualize(X.mT).mT if transpose else norm.dualize(X)
    torch.testing.assert_close(algorithm.dualize(X, group), expected, rtol=0, atol=0)
    if norm_name == "spectral":  # the RMS -> RMS norm: sqrt(m/n) U V^T of the SVD
        U, _, Vh = torch.linalg.svd(X.mT if transpose else X, full_matrices=False)
        m, n = U.shape[-2], Vh.shape[-1]
        oracle = math.sqrt(m / n) * (U @ Vh)
        torch.testing.assert_close(expected, oracle.mT if transpose else oracle)


def test_schatten_member_reads_p_from_its_group():
    algorithm, group, norm = declared("schatten", p=3.0)
    assert isinstance(norm, SchattenP) and norm.p == 3.0
