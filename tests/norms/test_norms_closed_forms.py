"""Norms and dualizers against closed forms and numpy, the LMO table, and known equalities.

Oracles: numpy.linalg.norm ('fro', 'nuc', ord=2), numpy singular values for Schatten-p, numpy
column/row norms, hand-written entries of the LMO table (Beznosikov, "Matrix Optimization and
Muon: A Natural Perspective on Neural Network Training", lecture, MIPT, 2025), and the
equalities SchattenP(2) = Frobenius, SchattenP(inf) = Spectral(svd) (Cesista, "Muon and a
Selective Survey on Steepest Descent in Riemannian and Non-Riemannian Manifolds" (2025), §4.2).
Tolerance: 1e-12 in float64 unless stated.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from norms_helpers import gaussian, low_rank, random_orthogonal

from steepest.norms import (
    RMS,
    ColNorm,
    Frobenius,
    RowNorm,
    SchattenP,
    Sign,
    Spectral,
    singular_values,
)
from steepest.polar import msign

SHAPES = [(5, 5), (6, 9), (9, 6), (1, 7), (7, 1), (1, 1), (3, 4, 6), (2, 3, 5, 4)]
TOL = {"rtol": 1e-12, "atol": 1e-12}


def _np_matrix_norms(G, fn):
    """Apply fn to every (m, n) matrix of G (numpy), shaped like the batch."""
    A = G.numpy()
    flat = A.reshape(-1, *A.shape[-2:])
    return torch.tensor([fn(a) for a in flat], dtype=torch.float64).reshape(A.shape[:-2])


@pytest.mark.parametrize("shape", SHAPES)
def test_norms_and_duals_match_numpy(shape):
    G = gaussian(shape, 11)
    m, n = shape[-2:]
    nuc = _np_matrix_norms(G, lambda a: np.linalg.norm(a, "nuc"))
    two = _np_matrix_norms(G, lambda a: np.linalg.norm(a, 2))
    fro = _np_matrix_norms(G, lambda a: np.linalg.norm(a, "fro"))
    cols = _np_matrix_norms(G, lambda a: np.linalg.norm(a, axis=0).max())
    col_sum = _np_matrix_norms(G, lambda a: np.linalg.norm(a, axis=0).sum())
    rows = _np_matrix_norms(G, lambda a: np.linalg.norm(a, axis=1).max())
    row_sum = _np_matrix_norms(G, lambda a: np.linalg.norm(a, axis=1).sum())
    abs_max = _np_matrix_norms(G, lambda a: np.abs(a).max())
    abs_sum = _np_matrix_norms(G, lambda a: np.abs(a).sum())
    expected = {
        Frobenius(): (fro, fro),
        Spectral(): (two, nuc),
        Spectral(rms=True): (math.sqrt(n / m) * two, math.sqrt(m / n) * nuc),
        SchattenP(1): (nuc, two),
        SchattenP(2): (fro, fro),
        SchattenP(math.inf): (two, nuc),
        Sign(): (abs_max, abs_sum),
        ColNorm(): (cols / math.sqrt(m), math.sqrt(m) * col_sum),
        ColNorm(rms=False): (cols, col_sum),
        RowNorm(): (math.sqrt(n) * rows, row_sum / math.sqrt(n)),
        RowNorm(rms=False): (rows, row_sum),
    }
    for norm, (primal, dual) in expected.items():
        torch.testing.assert_close(norm.norm(G), primal, **TOL, msg=repr(norm))
        torch.testing.assert_close(norm.dual_norm(G), dual, **TOL, msg=repr(norm))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.floats(1.0, 50.0), st.integers(1, 6), st.integers(1, 6), st.integers(0, 10**6))
def test_schatten_norm_matches_numpy_singular_values(p, m, n, seed):
    G = gaussian((2, m, n), seed)
    s = np.linalg.svd(G.numpy(), compute_uv=False)
    q = math.inf if p == 1.0 else p / (p - 1.0)
    primal = torch.tensor((s**p).sum(-1) ** (1 / p))
    dual = torch.tensor(s.max(-1) if q == math.inf else (s**q).sum(-1) ** (1 / q))
    torch.testing.assert_close(SchattenP(p).norm(G), primal, rtol=1e-11, atol=0.0)
    torch.testing.assert_close(SchattenP(p).dual_norm(G), dual, rtol=1e-11, atol=0.0)


@pytest.mark.parametrize("p", [1.5, 3.0, 10.0])
def test_schatten_dualizer_matches_proposition_4(p):
    """U diag(sigma^(q-1)) V^T / ||G||_{S_q}^(q-1), written out with numpy's SVD."""
    G = gaussian((3, 6, 4), 5)
    q = p / (p - 1)
    U, s, Vh = np.linalg.svd(G.numpy(), full_matrices=False)
    norm_q = ((s**q).sum(-1, keepdims=True)) ** (1 / q)
    expected = (U * (s ** (q - 1) / norm_q ** (q - 1))[..., None, :]) @ Vh
    torch.testing.assert_close(SchattenP(p).dualize(G), torch.tensor(expected), **TOL)


@pytest.mark.parametrize("shape", SHAPES)
def test_schatten_2_is_frobenius_and_schatten_inf_is_spectral(shape):
    G = gaussian(shape, 23)
    for method in ("norm", "dual_norm", "dualize"):
        torch.testing.assert_close(
            getattr(SchattenP(2), method)(G), getattr(Frobenius(), method)(G), **TOL
        )
        torch.testing.assert_close(
            getattr(SchattenP(math.inf), method)(G), getattr(Spectral("svd"), method)(G), **TOL
        )
    torch.testing.assert_close(
        Frobenius().dualize(G), G / torch.linalg.norm(G, dim=(-2, -1))[..., None, None], **TOL
    )


def test_schatten_inf_equals_spectral_on_rank_deficient_input():
    G = low_rank((2,), 7, 5, 2, 3)
    torch.testing.assert_close(SchattenP(math.inf).dualize(G), Spectral().dualize(G), **TOL)
    assert torch.linalg.matrix_rank(SchattenP(math.inf).dualize(G)).tolist() == [2, 2]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 10**6), st.booleans())
def test_spectral_dualize_is_orthogonally_equivariant(m, n, seed, rms):
    """dualize(Q G R) = Q dualize(G) R for orthogonal Q (m x m), R (n x n) from QR of Gaussians."""
    norm = Spectral(rms=rms)
    G = gaussian((2, m, n), seed)
    Q, R = random_orthogonal(m, seed + 1), random_orthogonal(n, seed + 2)
    torch.testing.assert_close(norm.dualize(Q @ G @ R), Q @ norm.dualize(G) @ R, **TOL)
    torch.testing.assert_close(norm.dual_norm(Q @ G @ R), norm.dual_norm(G), **TOL)


def test_spectral_dualize_is_uv_transpose():
    """Known polar factor: G = U diag(s) V^T built from orthonormal factors gives U V^T."""
    U = random_orthogonal(6, 1)[:, :4]
    V = random_orthogonal(4, 2)
    G = (U * torch.tensor([3.0, 1.0, 0.5, 1e-3], dtype=torch.float64)) @ V.T
    torch.testing.assert_close(Spectral().dualize(G), U @ V.T, **TOL)
    torch.testing.assert_close(Spectral(rms=True).dualize(G), math.sqrt(6 / 4) * U @ V.T, **TOL)


def test_lmo_table_entries_by_hand():
    """Beznosikov's LMO table on a hand-checked 2 x 3 weight (d_out = 2, d_in = 3)."""
    G = torch.tensor([[3.0, 0.0, -1.0], [4.0, 0.0, 1.0]], dtype=torch.float64)
    # ColNorm: col_j -> sqrt(d_out) col_j / ||col_j||; column 2 is zero and stays zero
    r2 = math.sqrt(2.0)
    col = torch.tensor([[r2 * 3 / 5, 0.0, -1.0], [r2 * 4 / 5, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(ColNorm().dualize(G), col, **TOL)
    torch.testing.assert_close(
        ColNorm().dual_norm(G), torch.tensor(r2 * (5 + r2), dtype=torch.float64), **TOL
    )
    # RowNorm: row_i -> row_i / (sqrt(d_in) ||row_i||)
    row = torch.tensor(
        [[3 / math.sqrt(10), 0.0, -1 / math.sqrt(10)], [4 / math.sqrt(17), 0.0, 1 / math.sqrt(17)]],
        dtype=torch.float64,
    ) / math.sqrt(3)
    torch.testing.assert_close(RowNorm().dualize(G), row, **TOL)
    torch.testing.assert_close(
        RowNorm().norm(G), torch.tensor(math.sqrt(3 * 17.0), dtype=torch.float64), **TOL
    )
    # Sign: sign(G), zero entries map to zero
    torch.testing.assert_close(Sign().dualize(G), torch.sign(G), **TOL)
    torch.testing.assert_close(Sign().dual_norm(G), torch.tensor(9.0, dtype=torch.float64), **TOL)


def test_schatten_1_splits_ties_evenly_and_picks_the_top_direction():
    U = random_orthogonal(5, 4)[:, :3]
    V = random_orthogonal(3, 5)
    tied = (U * torch.tensor([2.0, 2.0, 1.0], dtype=torch.float64)) @ V.T
    expected = 0.5 * (U[:, :2] @ V[:, :2].T)
    torch.testing.assert_close(SchattenP(1).dualize(tied), expected, **TOL)
    single = (U * torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)) @ V.T
    torch.testing.assert_close(SchattenP(1).dualize(single), U[:, :1] @ V[:, :1].T, **TOL)


def test_rms_vector_norm_closed_form():
    g = torch.tensor([[3.0, 4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(RMS().norm(g), torch.tensor([2.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(RMS().dual_norm(g), torch.tensor([10.0, 4.0], dtype=torch.float64))
    expected = torch.tensor([[1.2, 1.6, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(RMS().dualize(g), expected, **TOL)


def test_spectral_forwards_backend_and_steps_to_msign():
    G = gaussian((2, 6, 4), 9)
    norm = Spectral(backend="newton_schulz", steps=3, coefficients="jordan", rms=True)
    expected = msign(G, backend="newton_schulz", steps=3, coefficients="jordan")
    torch.testing.assert_close(norm.dualize(G), math.sqrt(6 / 4) * expected, **TOL)
    seen = []

    def identity_backend(X, steps):
        seen.append(steps)
        return X

    Spectral(backend=identity_backend, steps=7).dualize(G)
    assert seen[-1] == 7


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_inputs_keep_their_dtype(dtype):
    G = gaussian((2, 5, 3), 4).to(dtype)
    for norm in (Frobenius(), Spectral(), SchattenP(3), Sign(), ColNorm(), RowNorm()):
        T = norm.dualize(G)
        assert T.dtype == dtype and norm.norm(G).dtype == dtype
        torch.testing.assert_close(
            norm.norm(T).float(),
            torch.ones(2),
            rtol=2e-2 if dtype == torch.bfloat16 else 1e-5,
            atol=0.0,
        )
    assert singular_values(G).dtype == torch.float32
