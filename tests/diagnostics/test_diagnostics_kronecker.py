"""Kronecker approximation: exact recovery of rank-r Kronecker sums, energy vs the SVD of R(H)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steepest import diagnostics as dg


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(0, 999),
)
def test_recovers_exact_rank_r_kronecker_sum(pa, qa, pb, qb, r, seed):
    r = min(r, pa * qa, pb * qb)
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(r, pa, qa, dtype=torch.float64, generator=g)
    B = torch.randn(r, pb, qb, dtype=torch.float64, generator=g)
    H = sum(torch.kron(A[k], B[k]) for k in range(r))  # oracle: torch.kron
    approx = dg.kronecker_approx(H, (pa, qa), (pb, qb), rank=r)
    assert approx.A.shape == (r, pa, qa) and approx.B.shape == (r, pb, qb)
    scale = H.norm().item()
    assert (dg.kronecker_sum(approx.A, approx.B) - H).norm().item() <= 1e-10 * scale
    assert approx.energy[-1].item() == pytest.approx(1.0, abs=1e-10)
    assert torch.all(approx.energy[1:] >= approx.energy[:-1] - 1e-15)


def test_energy_matches_numpy_rearrangement_and_batch():
    g = torch.Generator().manual_seed(1)
    pa, qa, pb, qb = 3, 2, 2, 4
    H = torch.randn(2, pa * pb, qa * qb, dtype=torch.float64, generator=g)
    approx = dg.kronecker_approx(H, (pa, qa), (pb, qb), rank=3)
    for i in range(2):
        # numpy oracle: build R(H) entry by entry from the block definition.
        h = H[i].numpy()
        R = np.zeros((pa * qa, pb * qb))
        for i1 in range(pa):
            for j1 in range(qa):
                R[i1 * qa + j1] = h[i1 * pb : (i1 + 1) * pb, j1 * qb : (j1 + 1) * qb].reshape(-1)
        s = np.linalg.svd(R, compute_uv=False)
        want = np.cumsum(s**2)[:3] / np.sum(h**2)
        np.testing.assert_allclose(approx.energy[i].numpy(), want, rtol=1e-10)
        # The rank-3 residual is the Eckart-Young tail.
        resid = dg.kronecker_sum(approx.A[i], approx.B[i]) - H[i]
        assert resid.norm().item() ** 2 == pytest.approx(np.sum(s[3:] ** 2), rel=1e-8)


def test_bad_inputs_raise():
    H = torch.randn(6, 8)
    with pytest.raises(ValueError, match="must end in"):
        dg.kronecker_approx(H, (3, 2), (3, 4), rank=1)
    with pytest.raises(ValueError, match="rank=7"):
        dg.kronecker_approx(H, (3, 2), (2, 4), rank=7)
    with pytest.raises(ValueError, match="shape_a"):
        dg.kronecker_approx(H, (3, 0), (2, 4), rank=1)
