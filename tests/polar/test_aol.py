"""AOL preconditioning (Turbo-Muon) against the float64 SVD oracle.

Measured (float32 iteration, relative Frobenius error ||O - U V^T||_F / ||U V^T||_F, worst of
4 matrices, seed 0): Polar Express 5 steps against AOL + 4 steps of the Polar Express
schedule for lower bound 1e-2:
  Gaussian 64 x 64     0.138 -> 0.123      Gaussian 64 x 256     0.093 -> 0.012
  rows scaled over 1e2, 64 x 256: 0.094 -> 0.077
but on spectra decaying over 1e3 (0.167 -> 0.363), low rank plus noise (0.67 -> 0.85) and
row-scaled square matrices (0.180 -> 0.219) one step fewer is worse: AOL moves the result
toward the polar factor of the row-scaled matrix, and a faster start does not make up for
the small singular values' missing step. With 5 steps AOL lowers the error on all but the
row-scaled inputs (e.g. decaying spectra 0.167 -> 0.143). The test asserts the first group.
"""

import pytest
import torch

import steepest
from steepest.polar import msign, polar_svd
from steepest.polar.aol import aol_rescale

DT = torch.float64


def relative_error(O, reference):
    return (torch.linalg.matrix_norm(O - reference) / torch.linalg.matrix_norm(reference)).max()


def gaussian(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def row_scaled(shape, seed):
    return gaussian(shape, seed) * torch.logspace(-2, 0, shape[-2], dtype=DT)[:, None]


@pytest.mark.parametrize(
    ("make", "shape"),
    [(gaussian, (4, 64, 64)), (gaussian, (4, 64, 256)), (row_scaled, (4, 64, 256))],
)
def test_aol_with_one_step_fewer_is_at_least_as_accurate_on_these_inputs(make, shape):
    """Stated inputs (see the module docstring for where it does not hold): AOL + 4 Polar
    Express steps (lower bound 1e-2) in float32 is within the error of the standard 5 steps,
    both measured against the float64 SVD polar factor; plain 4 steps are worse."""
    G = make(shape, 0)
    reference = polar_svd(G)
    standard = msign(G.float(), steps=5).double()
    turbo = msign(G.float(), steps=4, precondition="aol", lower_bound=1e-2).double()
    plain = msign(G.float(), steps=4).double()
    assert relative_error(turbo, reference) <= relative_error(standard, reference)
    assert relative_error(plain, reference) > relative_error(standard, reference)


@pytest.mark.parametrize("shape", [(3, 5, 5), (2, 4, 9), (2, 9, 4), (1, 1, 7)])
def test_aol_rescale_bounds_the_spectral_norm_and_ignores_scale(shape):
    """||diag(d) X||_2 <= 1 (float64 SVD) for any X, including columns of very different
    sizes; aol_rescale(c X) = aol_rescale(X); a zero row stays zero."""
    X = gaussian(shape, 1) * torch.logspace(-3, 3, shape[-1], dtype=DT)
    X = X.mT if shape[-2] > shape[-1] else X
    Y = aol_rescale(X)
    assert torch.linalg.matrix_norm(Y, ord=2).max() <= 1 + 1e-12
    torch.testing.assert_close(aol_rescale(X * 1e20), Y, rtol=1e-12, atol=0)
    X[..., 0, :] = 0
    assert torch.equal(aol_rescale(X)[..., 0, :], torch.zeros_like(X[..., 0, :]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_aol_rescale_of_a_16_bit_stack_matches_float64_to_its_rounding(dtype):
    """A 16-bit X takes the Gram product in its own dtype: diag(d) X agrees with the float64
    rescaling of the same (rounded) X to a few units of the 16-bit rounding, and its spectral
    norm exceeds 1 by at most that much (float64 SVD)."""
    X = (gaussian((3, 48, 160), 3) / 30).to(dtype)
    exact = aol_rescale(X.double())
    Y = aol_rescale(X)
    unit = torch.finfo(dtype).eps
    torch.testing.assert_close(Y.double(), exact, rtol=4 * unit, atol=4 * unit * exact.abs().max())
    assert torch.linalg.matrix_norm(Y.double(), ord=2).max() <= 1 + 4 * unit


@pytest.mark.parametrize("form", ["direct", "gram"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_the_iteration_reuses_aol_gram_matrix_to_the_same_result(form, dtype):
    """msign(precondition="aol") starts the iteration from AOL's Gram matrix D (X X^T) D: the
    result equals the same iteration run on aol_rescale(X) with the Gram product formed again
    (float64: 1e-12; bfloat16: within a few units of its rounding), in both forms."""
    from steepest.polar.gram import gram_quintic_iteration
    from steepest.polar.iteration import odd_quintic_iteration
    from steepest.polar.polar_express import polar_express_coefficients

    G = gaussian((3, 24, 96), 4).to(dtype)
    X = G / (1.01 * torch.linalg.matrix_norm(G.double(), keepdim=True)).to(dtype)
    schedule = polar_express_coefficients(4, 1e-2)
    iterate = gram_quintic_iteration if form == "gram" else odd_quintic_iteration
    reference = iterate(aol_rescale(X), schedule, kernel="torch").double()
    got = msign(
        G, steps=4, precondition="aol", lower_bound=1e-2, form=form, kernel="torch", dtype=dtype
    )
    tol = 1e-12 if dtype == torch.float64 else 8 * torch.finfo(dtype).eps
    torch.testing.assert_close(got.double(), reference, rtol=tol, atol=tol)


def test_a_known_gram_matrix_and_a_scale_are_refused_together():
    from steepest.polar.iteration import odd_quintic_iteration

    X = gaussian((1, 4, 8), 5)
    with pytest.raises(ValueError, match="scale= or gram="):
        odd_quintic_iteration(X, [(1.0, 0.0, 0.0)], scale=torch.ones(1, dtype=DT), gram=X @ X.mT)


def test_aol_is_exact_where_the_rows_are_orthogonal_and_equal():
    """If X X^T = c I, AOL multiplies X by c^(-1/2): the polar factor is unchanged and X is
    already orthogonal after the rescaling (fp64, 1e-12)."""
    Q = torch.linalg.qr(gaussian((12, 5), 2)).Q.mT * 7.0  # (5, 12), rows orthogonal, norm 7
    torch.testing.assert_close(aol_rescale(Q[None])[0], Q / 7.0, rtol=0, atol=1e-12)


def test_muon_group_option_and_errors():
    """The group key polar_precondition="aol" reaches msign through the optimizer (the step
    equals msign with AOL and lower bound 1e-2 times the spectral scale); a bad name raises
    before any write."""
    G = gaussian((16, 48), 3).float()
    p = torch.nn.Parameter(torch.zeros(16, 48))
    p.grad = G.clone()
    group = {"params": [p], "algorithm": "muon", "polar_precondition": "aol"}
    steepest.Muon([group], lr=1.0, momentum=0.0, steps=4, polar_dtype=torch.float32).step()
    expected = -msign(G, steps=4, precondition="aol", lower_bound=1e-2) * (16 / 48) ** 0.5
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"precondition='turbo' is unknown; use None or one"):
        steepest.Muon([{"params": [p], "algorithm": "muon", "polar_precondition": "turbo"}])
    with pytest.raises(ValueError, match=r"precondition='turbo' is unknown"):
        msign(G, precondition="turbo")
