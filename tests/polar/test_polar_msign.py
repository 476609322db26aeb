"""msign against the SVD / float64 oracle: every backend, many shapes, zeros, dtypes, errors.

Accuracy each backend reaches (what the tolerances below encode):
- "svd": exact; float64 agrees with the known U V^T to 1e-12, float32 to 1e-5.
- cubic Newton-Schulz and Polar Express with enough steps, in float64: converge to U V^T (1e-10).
- 5-step jordan / polar_express: do NOT converge. In float64 their output is exactly
  U diag(q(s)) V^T, q the composed scalar quintics (checked to 1e-10 against numpy), so the singular
  vectors are U V^T's and the singular values lie in the band of q (see test_polar_express.py).
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from polar_helpers import compose, normalized, random_orthonormal, with_spectrum

from steepest.polar import (
    BACKENDS,
    CUBIC,
    JORDAN,
    default_compute_dtype,
    msign,
    msign_normed,
    odd_quintic_iteration,
    orthogonality_error,
    polar_express_coefficients,
)

SHAPES = [(5, 5), (6, 9), (9, 6), (1, 7), (7, 1), (1, 1), (3, 4, 6), (2, 3, 5, 4)]


def _spectrum(k, generator, low=0.1):
    """k singular values log-uniform in [low, 1], float64."""
    return torch.exp(torch.rand(k, dtype=torch.float64, generator=generator) * np.log(low))


def _known(shape, generator, low=0.1):
    *batch, m, n = shape
    s = _spectrum(min(m, n), generator, low)
    G, U, V = with_spectrum(s, m, n, tuple(batch), generator)
    return G, s, U, V


# ---------------------------------------------------------------- svd: the oracle itself


@pytest.mark.parametrize("shape", SHAPES)
def test_svd_matches_known_factor(shape):
    gen = torch.Generator().manual_seed(0)
    G, _, U, V = _known(shape, gen)
    expected = U @ V.mT
    assert torch.allclose(msign(G, "svd"), expected, atol=1e-12, rtol=0)
    out32 = msign(G.float(), "svd")
    assert out32.dtype == torch.float32
    assert torch.allclose(out32.double(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(6, 9), (9, 6), (2, 7, 7)])
def test_svd_rank_deficient_drops_zero_directions(shape):
    gen = torch.Generator().manual_seed(1)
    *batch, m, n = shape
    s = torch.tensor([1.0, 0.5, 0.2], dtype=torch.float64)
    G, U, V = with_spectrum(s, m, n, tuple(batch), gen)  # rank 3 < min(m, n)
    expected = U @ V.mT
    assert torch.allclose(msign(G, "svd"), expected, atol=1e-10, rtol=0)
    assert torch.allclose(msign(G.float(), "svd").double(), expected, atol=1e-4, rtol=0)


# ------------------------------------------------------ converging backends against svd


@pytest.mark.parametrize("shape", SHAPES)
def test_cubic_newton_schulz_converges_to_svd_in_float64(shape):
    gen = torch.Generator().manual_seed(2)
    G, *_ = _known(shape, gen)  # normalized singular values >= 0.1 / (1.01 * sqrt(5)) > 0.04
    out = msign(G, "newton_schulz", steps=40, coefficients="cubic", dtype=torch.float64)
    assert torch.allclose(out, msign(G, "svd"), atol=1e-10, rtol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_polar_express_with_more_steps_converges_to_svd_in_float64(shape):
    gen = torch.Generator().manual_seed(3)
    G, *_ = _known(shape, gen, low=1e-2)
    out = msign(G, "polar_express", steps=10, dtype=torch.float64)
    assert torch.allclose(out, msign(G, "svd"), atol=1e-10, rtol=0)


# ------------------------------------------ 5-step quintics: vectors exact, values in band


def _predicted(G_s, U, V, schedule, safety=1.01):
    """U diag(q(normalized s)) V^T: what a polynomial backend computes in exact arithmetic."""
    q = torch.as_tensor(compose(schedule, normalized(G_s.numpy(), safety)))
    return (U * q.unsqueeze(-2)) @ V.mT


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "backend, kwargs, schedule",
    [
        ("newton_schulz", {}, [JORDAN] * 5),
        ("newton_schulz", {"coefficients": "cubic"}, [CUBIC] * 5),
        ("polar_express", {}, polar_express_coefficients(5)),
    ],
)
def test_five_step_backends_apply_their_scalar_polynomial(shape, backend, kwargs, schedule):
    gen = torch.Generator().manual_seed(4)
    G, s, U, V = _known(shape, gen, low=1e-2)
    out = msign(G, backend, steps=5, dtype=torch.float64, **kwargs)
    safety = 1.0 if backend == "newton_schulz" else 1.01  # Cesista 2025 Alg. 2 vs arXiv 2505.16932
    assert torch.allclose(out, _predicted(s, U, V, schedule, safety), atol=1e-10, rtol=0)


@pytest.mark.parametrize("shape", [(8, 8), (12, 20), (20, 12), (3, 10, 10)])
def test_five_step_backends_in_float32_stay_near_their_float64_result(shape):
    gen = torch.Generator().manual_seed(5)
    G, *_ = _known(shape, gen, low=1e-2)
    for backend in ("newton_schulz", "polar_express"):
        exact = msign(G, backend, dtype=torch.float64)
        fast = msign(G.float(), backend)  # float32 compute by default on CPU
        assert (fast.double() - exact).abs().max() < 1e-4


@pytest.mark.parametrize("shape", [(16, 16), (16, 32), (32, 16), (4, 16, 16)])
def test_bfloat16_compute_keeps_direction_and_band(shape):
    """bf16 on well-conditioned inputs: U^T O V nearly diagonal, singular values in band + slack.

    Measured: off-diagonal <= about 0.03, orthogonality error <= 0.13 (polar_express), <= 0.33
    (jordan); bands 0.16 and 0.40 leave room for bf16 round-off.
    """
    gen = torch.Generator().manual_seed(6)
    G, _, U, V = _known(shape, gen, low=0.05)
    G = G.float()
    for backend, band in (("polar_express", 0.16), ("newton_schulz", 0.40)):
        out = msign(G, backend, dtype=torch.bfloat16)
        assert out.dtype == torch.float32
        assert orthogonality_error(G, out, rtol=1e-3).max() < band
        M = U.mT @ out.double() @ V
        off_diagonal = M - torch.diag_embed(torch.diagonal(M, dim1=-2, dim2=-1))
        assert off_diagonal.abs().max() < 0.06


# --------------------------------------------------------------- rank-deficient and zeros


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(6, 9), (9, 6), (2, 7, 7)])
def test_rank_deficient_inputs_map_null_directions_to_zero(backend, shape):
    gen = torch.Generator().manual_seed(7)
    *batch, m, n = shape
    s = torch.tensor([1.0, 0.6, 0.3], dtype=torch.float64)
    G, U, V = with_spectrum(s, m, n, tuple(batch), gen)
    out = msign(
        G,
        backend,
        steps=12 if backend == "polar_express" else 40,
        dtype=torch.float64,
        coefficients="cubic" if backend == "newton_schulz" else None,
    )
    assert torch.allclose(out, U @ V.mT, atol=1e-9, rtol=0)
    # Null directions stay null: O v = 0 for v orthogonal to V's columns.
    null = torch.linalg.svd(V.mT, full_matrices=True).Vh[..., 3:, :].mT
    assert (out @ null).abs().max() < 1e-9


@pytest.mark.parametrize("backend", [*BACKENDS, lambda X, steps: X * 3.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_zero_matrix_and_zero_inside_batch_give_exact_zeros(backend, dtype):
    gen = torch.Generator().manual_seed(8)
    G = torch.randn(4, 5, 3, generator=gen).to(dtype)
    G[1] = 0.0
    G[3] = 0.0
    out = msign(G, backend)
    assert out.dtype == dtype
    assert torch.equal(out[1], torch.zeros(5, 3, dtype=dtype))
    assert torch.equal(out[3], torch.zeros(5, 3, dtype=dtype))
    assert out[0].abs().sum() > 0 and out[2].abs().sum() > 0
    assert torch.equal(
        msign(torch.zeros(3, 3, dtype=dtype), backend), torch.zeros(3, 3, dtype=dtype)
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 3, 4), (2, 0, 0)])
def test_zero_size_inputs_give_empty_outputs(backend, shape):
    G = torch.empty(shape)
    out = msign(G, backend)
    assert out.shape == G.shape and out.dtype == G.dtype


def test_scale_invariance_for_tiny_and_huge_inputs():
    gen = torch.Generator().manual_seed(9)
    G, *_ = _known((6, 8), gen)
    ref = msign(G, dtype=torch.float64)
    for scale in (1e-30, 1e-8, 1e20):
        assert torch.allclose(msign(G * scale, dtype=torch.float64), ref, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_output_dtype_equals_input_dtype(dtype, backend):
    gen = torch.Generator().manual_seed(10)
    G = torch.randn(2, 4, 6, generator=gen).to(dtype)
    out = msign(G, backend)
    assert out.dtype == dtype and out.shape == G.shape
    assert torch.isfinite(out).all()


def test_default_compute_dtype_per_device():
    assert default_compute_dtype(torch.device("cuda")) == torch.bfloat16
    assert default_compute_dtype(torch.device("cpu")) == torch.float32


def test_callable_backend_sees_normalized_short_side_in_compute_dtype():
    gen = torch.Generator().manual_seed(11)
    G = torch.randn(2, 3, 7, 4, dtype=torch.float64, generator=gen)  # tall: iterate on 4 x 7
    seen = {}

    def identity(X, steps):
        seen.update(shape=tuple(X.shape), dtype=X.dtype, steps=steps)
        return X

    out = msign(G, identity, steps=3)
    assert seen == {"shape": (6, 4, 7), "dtype": torch.float32, "steps": 3}
    frob = torch.linalg.matrix_norm(G, keepdim=True)
    assert torch.allclose(out, G / (1.01 * frob), atol=1e-6, rtol=0)
    msign(G, identity, dtype=torch.float64)
    assert seen["dtype"] == torch.float64


def test_default_dtype_none_is_float32_on_cpu():
    gen = torch.Generator().manual_seed(12)
    G = torch.randn(5, 8, dtype=torch.float64, generator=gen)
    assert torch.equal(msign(G), msign(G, dtype=torch.float32))
    assert not torch.equal(msign(G), msign(G, dtype=torch.float64))


def test_svd_float64_input_stays_float64_even_if_dtype_is_low():
    gen = torch.Generator().manual_seed(13)
    G, _, U, V = _known((6, 6), gen)
    assert torch.allclose(msign(G, "svd", dtype=torch.bfloat16), U @ V.mT, atol=1e-12, rtol=0)


# ----------------------------------------------------------------------- newton_schulz


def test_user_coefficient_list_uses_first_steps_and_repeats_last():
    gen = torch.Generator().manual_seed(14)
    G, s, U, V = _known((5, 7), gen)
    triples = [(2.0, -1.5, 0.5), (1.5, -0.5, 0.0)]
    got = msign(G, "newton_schulz", steps=4, coefficients=triples, dtype=torch.float64)
    expected = _predicted(s, U, V, [triples[0], triples[1], triples[1], triples[1]], 1.0)
    assert torch.allclose(got, expected, atol=1e-12, rtol=0)
    got = msign(G, "newton_schulz", steps=1, coefficients=triples, dtype=torch.float64)
    assert torch.allclose(got, _predicted(s, U, V, triples[:1], 1.0), atol=1e-12, rtol=0)
    single = msign(G, "newton_schulz", steps=3, coefficients=JORDAN, dtype=torch.float64)
    named = msign(G, "newton_schulz", steps=3, coefficients="jordan", dtype=torch.float64)
    assert torch.equal(single, named)


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"backend": "qr"}, ["backend='qr'", "svd", "newton_schulz", "polar_express"]),
        ({"steps": 0}, ["steps=0", "int >= 1"]),
        ({"steps": 2.5}, ["steps=2.5"]),
        ({"steps": True}, ["steps=True"]),
        ({"dtype": torch.int32}, ["dtype=torch.int32"]),
        ({"lower_bound": 0.0}, ["lower_bound=0.0"]),
        ({"lower_bound": 1.5}, ["lower_bound=1.5"]),
        ({"eps": -1.0}, ["eps=-1.0"]),
        ({"coefficients": "jordan"}, ["coefficients='jordan'", "newton_schulz"]),
        ({"backend": "newton_schulz", "coefficients": "you"}, ["coefficients='you'", "cubic"]),
        ({"backend": "newton_schulz", "coefficients": [(1.0, 2.0)]}, ["coefficients="]),
        ({"backend": "newton_schulz", "coefficients": []}, ["coefficients=[]"]),
        ({"backend": "newton_schulz", "coefficients": (1.0, float("nan"), 0.0)}, ["non-finite"]),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, words):
    G = torch.randn(3, 4)
    with pytest.raises(ValueError) as info:
        msign(G, **kwargs)
    for word in words:
        assert word in str(info.value)


def test_bad_tensors_raise():
    with pytest.raises(ValueError, match="ndim >= 2"):
        msign(torch.randn(5))
    with pytest.raises(TypeError, match="floating"):
        msign(torch.ones(3, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        msign(np.ones((3, 3)))
    with pytest.raises(ValueError, match="must return a tensor of the input shape"):
        msign(torch.randn(3, 4), lambda X, steps: X[..., :2])


# ----------------------------------------------------------------- property test: shapes


@settings(max_examples=40, deadline=None)
@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    m=st.integers(1, 7),
    n=st.integers(1, 7),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_every_backend_matches_oracle_on_any_shape(batch, m, n, seed):
    gen = torch.Generator().manual_seed(seed)
    G, s, U, V = _known((*batch, m, n), gen, low=1e-2)
    exact = U @ V.mT
    svd = msign(G, "svd")
    assert svd.shape == G.shape
    assert torch.allclose(svd, exact, atol=1e-10, rtol=0)
    pe = msign(G, "polar_express", dtype=torch.float64)
    assert torch.allclose(pe, _predicted(s, U, V, polar_express_coefficients(5)), atol=1e-10)
    # The 5-step output is within the schedule's band of U V^T in the spectral norm.
    assert torch.linalg.matrix_norm(pe - exact, ord=2).max() < 0.16
    ns = msign(G.float(), "newton_schulz", steps=30, coefficients="cubic")
    assert torch.allclose(ns.double(), exact, atol=1e-4, rtol=0)


def test_random_orthonormal_helper_is_orthonormal():
    Q = random_orthonormal(6, 4, (2,), torch.Generator().manual_seed(0))
    assert torch.allclose(Q.mT @ Q, torch.eye(4, dtype=torch.float64).expand(2, 4, 4), atol=1e-12)


# -------------------------------------------------------------------- torch.compile


def test_msign_and_core_iteration_compile_without_graph_breaks():
    """fullgraph=True fails on any graph break (a .item() sync, numpy, Python loop over data)."""
    gen = torch.Generator().manual_seed(15)
    G = torch.randn(2, 6, 4, generator=gen)
    compiled = torch.compile(msign, fullgraph=True, backend="eager", dynamic=False)
    for kwargs in (
        {},
        {"steps": 3, "lower_bound": 1e-2},
        {"backend": "newton_schulz", "coefficients": "cubic"},
    ):
        assert torch.equal(compiled(G, **kwargs), msign(G, **kwargs))
    core = torch.compile(odd_quintic_iteration, fullgraph=True, backend="eager")
    X = G.mT / (1.01 * torch.linalg.matrix_norm(G, keepdim=True))
    schedule = tuple(polar_express_coefficients(5))
    assert torch.equal(core(X, schedule), odd_quintic_iteration(X, schedule))


@pytest.mark.parametrize("form", ["direct", "gram"])
@pytest.mark.parametrize("backend", ["polar_express", "newton_schulz"])
def test_known_frobenius_norms_stand_in_for_the_reduction(form, backend):
    """msign_normed(G, ||G||_F) equals msign(G); a given norm is what divides G."""
    G = torch.randn(3, 6, 20, dtype=torch.float64)
    norms = torch.linalg.vector_norm(G, dim=(-2, -1))
    plain = msign(G, backend, form=form)
    torch.testing.assert_close(msign_normed(G, norms, backend, form=form), plain)
    halved = msign_normed(G, 2 * norms, backend, form=form)  # iterates on G / (2.02 ||G||)
    assert not torch.allclose(halved, plain, atol=1e-3)
    torch.testing.assert_close(halved, msign_normed(G / 2, norms, backend, form=form))


def test_out_dtype_keeps_a_low_precision_input_from_rounding_the_result():
    G = torch.randn(2, 8, 24)
    low = G.to(torch.bfloat16)
    norms = torch.linalg.vector_norm(G, dim=(-2, -1), dtype=torch.float64)
    out = msign_normed(low, norms, out_dtype=torch.float32, dtype=torch.float32)
    assert out.dtype == torch.float32
    want = msign_normed(low.float(), norms, dtype=torch.float32)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)
    assert msign_normed(low, None, out_dtype=torch.float32).dtype == torch.float32
    assert msign_normed(low, None, "svd", out_dtype=torch.float64).dtype == torch.float64
    assert msign_normed(low[:, :0], None, out_dtype=torch.float32).dtype == torch.float32


def test_bad_frobenius_and_out_dtype_are_named():
    G = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"frobenius has shape \(3,\); need G's leading shape"):
        msign_normed(G, torch.ones(3))
    with pytest.raises(ValueError, match="out_dtype=torch.int32"):
        msign_normed(G, None, out_dtype=torch.int32)


def test_polar_config_is_validated_at_construction_and_runs_msign():
    """PolarConfig checks every field when built (the same messages as msign's, and the
    coefficient schedule), is immutable, and config(G) equals msign(G, ...)."""
    from steepest.polar import PolarConfig

    with pytest.raises(ValueError, match="backend='nope' is unknown"):
        PolarConfig(backend="nope")
    with pytest.raises(ValueError, match="steps=0"):
        PolarConfig(steps=0)
    with pytest.raises(ValueError, match="form='sideways' is unknown"):
        PolarConfig(form="sideways")
    with pytest.raises(ValueError, match="coefficients"):
        PolarConfig(coefficients="jordan")  # only for newton_schulz
    with pytest.raises(ValueError, match="not a known Newton-Schulz schedule"):
        PolarConfig(backend="newton_schulz", coefficients="quartic")  # found by the schedule
    config = PolarConfig(backend="newton_schulz", coefficients="jordan", dtype=torch.float64)
    with pytest.raises(AttributeError):
        config.steps = 3  # type: ignore[misc]
    G = torch.randn(3, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    want = msign(G, "newton_schulz", dtype=torch.float64, coefficients="jordan")
    assert torch.equal(config(G), want)
