"""Property tests generated from the norm registry: every example configuration of every norm
registered with @register_norm, on batched float64 inputs.

Oracles: the definition dual_norm(G) = max_{||T|| = 1} <G, T> (Cesista 2025, §2.3), checked
on random unit-norm directions independent of the implementation; the batch rule (a batch
computes what each member computes alone); positive homogeneity (norm(cX) = c norm(X),
dualize(cG) = dualize(G)); and, for the norms of the singular values, the float64 SVD.
"""

import math

import pytest
import torch
from norms_helpers import REGISTERED, gaussian

from steepest import norms
from steepest.norms import SchattenP, Spectral

RTOL = 1e-10


def batched_input(norm, seed):
    """A (2, 3, ...) batch: 5 x 4 matrices or length-6 vectors, float64."""
    shape = (2, 3, 5, 4) if norm.min_ndim == 2 else (2, 3, 6)
    return gaussian(shape, seed)


def reduced(norm):
    return (Ellipsis,) + (None,) * norm.min_ndim


def test_every_registered_name_has_examples_of_its_class():
    for name in norms.available():
        cls = norms.norm_class(name)
        examples = cls.examples()
        assert examples, f"{name}: examples() is empty"
        assert all(type(example) is cls for example in examples), name
        assert type(norms.get(name, **({"p": 3} if name == "schatten" else {}))) is cls


@pytest.mark.parametrize("norm", REGISTERED, ids=repr)
def test_dualizer_identities_on_a_batch(norm):
    G = batched_input(norm, 11)
    T = norm.dualize(G)
    assert T.shape == G.shape and T.dtype == G.dtype
    dual = norm.dual_norm(G)
    assert dual.shape == G.shape[: G.ndim - norm.min_ndim]
    torch.testing.assert_close(norm.norm(T), torch.ones_like(dual), rtol=RTOL, atol=RTOL)
    torch.testing.assert_close(norm.inner(G, T), dual, rtol=RTOL, atol=0.0)


@pytest.mark.parametrize("norm", REGISTERED, ids=repr)
def test_dual_norm_is_the_maximum_over_random_unit_directions(norm):
    G = batched_input(norm, 12)
    candidates = gaussian((256, *G.shape), 13)
    candidates = candidates / norm.norm(candidates)[reduced(norm)]
    scores = norm.inner(G, candidates)
    dual = norm.dual_norm(G)
    assert torch.all(scores <= dual * (1 + RTOL))
    # the bound is not loose: random directions come within a factor of it
    assert torch.all(scores.amax(dim=0) > 0)


@pytest.mark.parametrize("norm", REGISTERED, ids=repr)
def test_a_batch_computes_what_each_member_computes_alone(norm):
    G = batched_input(norm, 14)
    T, values, duals = norm.dualize(G), norm.norm(G), norm.dual_norm(G)
    for i in range(G.shape[0]):
        for j in range(G.shape[1]):
            torch.testing.assert_close(norm.dualize(G[i, j]), T[i, j], rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(norm.norm(G[i, j]), values[i, j], rtol=1e-12, atol=0.0)
            torch.testing.assert_close(norm.dual_norm(G[i, j]), duals[i, j], rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("norm", REGISTERED, ids=repr)
@pytest.mark.parametrize("c", [1e-3, 7.0])
def test_positive_homogeneity(norm, c):
    G = batched_input(norm, 15)
    torch.testing.assert_close(norm.norm(c * G), c * norm.norm(G), rtol=1e-12, atol=0.0)
    torch.testing.assert_close(norm.dual_norm(c * G), c * norm.dual_norm(G), rtol=1e-12, atol=0.0)
    torch.testing.assert_close(norm.dualize(c * G), norm.dualize(G), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "norm", [n for n in REGISTERED if isinstance(n, (Spectral, SchattenP))], ids=repr
)
def test_spectral_family_against_the_float64_svd(norm):
    G = batched_input(norm, 16)
    U, s, Vh = torch.linalg.svd(G, full_matrices=False)
    m, n = G.shape[-2:]
    if isinstance(norm, Spectral):
        c = math.sqrt(n / m) if norm.rms else 1.0
        p, expected_T = math.inf, (U @ Vh) / c
    else:
        p = norm.p
        q = math.inf if p == 1 else (1.0 if p == math.inf else p / (p - 1))
        c = 1.0
        if q == math.inf:  # Gaussian matrices have a simple top singular value
            weights = torch.zeros_like(s)
            weights[..., 0] = 1.0
        else:
            weights = s ** (q - 1) / (s**q).sum(-1, keepdim=True) ** ((q - 1) / q)
        expected_T = (U * weights.unsqueeze(-2)) @ Vh
    expected_norm = s[..., 0] if p == math.inf else (s**p).sum(-1) ** (1 / p)
    torch.testing.assert_close(norm.norm(G), c * expected_norm, rtol=1e-10, atol=0.0)
    torch.testing.assert_close(norm.dualize(G), expected_T, rtol=1e-9, atol=1e-12)
