"""Ranks, norms and relative sizes against numpy's SVD and norms on random inputs."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steepest import diagnostics as dg

shapes = st.tuples(
    st.sampled_from([(), (3,), (2, 2)]), st.integers(1, 7), st.integers(1, 7), st.integers(0, 999)
)


def _random(batch, m, n, seed):
    g = torch.Generator().manual_seed(seed)
    # Scale columns so spectra are spread, not just Marchenko-Pastur.
    scale = torch.logspace(0, -3, n, dtype=torch.float64)
    return torch.randn(*batch, m, n, dtype=torch.float64, generator=g) * scale


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_ranks_match_numpy(case):
    batch, m, n, seed = case
    A = _random(batch, m, n, seed)
    a = A.numpy()
    fro = np.linalg.norm(a, "fro", axis=(-2, -1))
    spec = np.linalg.norm(a, 2, axis=(-2, -1))
    nuc = np.linalg.norm(a, "nuc", axis=(-2, -1))
    s = np.linalg.svd(a, compute_uv=False)
    p = s / s.sum(-1, keepdims=True)
    erank = np.exp(-(p * np.log(p)).sum(-1))
    np.testing.assert_allclose(dg.singular_values(A).numpy(), s, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(dg.stable_rank(A).numpy(), fro**2 / spec**2, rtol=1e-10)
    np.testing.assert_allclose(dg.nuclear_rank(A).numpy(), nuc**2 / fro**2, rtol=1e-10)
    np.testing.assert_allclose(dg.nuclear_frobenius_ratio(A).numpy(), nuc**2 / fro**2, rtol=1e-10)
    np.testing.assert_allclose(dg.effective_rank(A).numpy(), erank, rtol=1e-10)
    assert dg.stable_rank(A).shape == A.shape[:-2]
    summary = dg.rank_summary(A)
    np.testing.assert_allclose(summary["stable_rank"].numpy(), fro**2 / spec**2, rtol=1e-10)
    np.testing.assert_allclose(summary["nuclear_rank"].numpy(), nuc**2 / fro**2, rtol=1e-10)
    np.testing.assert_allclose(summary["effective_rank"].numpy(), erank, rtol=1e-10)
    np.testing.assert_allclose(summary["spectral_norm"].numpy(), spec, rtol=1e-10)


def test_rank_bounds_and_known_cases():
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(6, 4, dtype=torch.float64, generator=g))
    # Orthonormal columns: all three ranks equal 4; orthogonality gap 0.
    for fn in (dg.stable_rank, dg.nuclear_rank, dg.effective_rank):
        assert fn(Q).item() == pytest.approx(4.0, rel=1e-12)
    assert dg.orthogonality_gap(Q).item() < 1e-12
    assert dg.orthogonality_gap(3.0 * Q).item() == pytest.approx(2.0, rel=1e-12)
    assert dg.orthogonality_gap(3.0 * Q, normalize=True).item() < 1e-12
    # Rank one: every rank is 1. Zero matrix: every rank is 0.
    r1 = torch.outer(torch.arange(1.0, 4.0), torch.arange(1.0, 3.0)).double()
    Z = torch.zeros(2, 3, 3)
    for fn in (dg.stable_rank, dg.nuclear_rank, dg.effective_rank):
        assert fn(r1).item() == pytest.approx(1.0, rel=1e-12)
        assert torch.equal(fn(Z), torch.zeros(2))
    # Spectrum (2, 1): gap = max(|2-1|, |1-1|) = 1; normalized: 1 - 1/2.
    D = torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64))
    assert dg.orthogonality_gap(D).item() == pytest.approx(1.0)
    assert dg.orthogonality_gap(D, normalize=True).item() == pytest.approx(0.5)
    # Half precision is measured in float32.
    assert dg.stable_rank(torch.eye(3, dtype=torch.bfloat16)).dtype == torch.float32


@settings(max_examples=25, deadline=None)
@given(shapes)
def test_relative_size_matches_numpy(case):
    batch, m, n, seed = case
    W = _random(batch, m, n, seed)
    dW = _random(batch, m, n, seed + 1)
    for name, ord_ in (("frobenius", "fro"), ("spectral", 2), ("nuclear", "nuc")):
        want = np.linalg.norm(dW.numpy(), ord_, axis=(-2, -1)) / np.linalg.norm(
            W.numpy(), ord_, axis=(-2, -1)
        )
        np.testing.assert_allclose(dg.relative_size(dW, W, norm=name).numpy(), want, rtol=1e-10)
        np.testing.assert_allclose(
            dg.matrix_norm(dW, name).numpy(),
            np.linalg.norm(dW.numpy(), ord_, axis=(-2, -1)),
            rtol=1e-10,
        )


def test_relative_size_with_norm_object():
    class MaxAbs:  # any object with norm(X) works, e.g. a steepest.norms Norm
        def norm(self, X):
            return X.abs().amax(dim=(-2, -1))

    W = torch.tensor([[1.0, -4.0], [2.0, 0.5]])
    dW = torch.tensor([[0.0, 0.1], [-0.3, 0.2]])
    assert dg.relative_size(dW, W, norm=MaxAbs()).item() == pytest.approx(0.3 / 4.0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="norm='l7'"):
        dg.relative_size(torch.ones(2, 2), torch.ones(2, 2), norm="l7")
    with pytest.raises(TypeError, match="norm must be"):
        dg.relative_size(torch.ones(2, 2), torch.ones(2, 2), norm=3)
    with pytest.raises(ValueError, match="must match"):
        dg.relative_size(torch.ones(2, 2), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\(\.\.\., m, n\)"):
        dg.stable_rank(torch.ones(3))
    with pytest.raises(TypeError, match="floating"):
        dg.nuclear_rank(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="normalize"):
        dg.orthogonality_gap(torch.ones(2, 2), normalize=1)
