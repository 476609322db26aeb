"""The Gram form of the quintic iteration: the direct iteration's map, fewer flops, restarts."""

import importlib
import os

import pytest
import torch
from polar_helpers import compose, normalized, with_spectrum

from steepest import Muon
from steepest.polar import (
    JORDAN,
    gram_flop_ratio,
    gram_quintic_iteration,
    msign,
    msign_normed,
    newton_schulz_coefficients,
    odd_quintic_iteration,
    polar_express_coefficients,
)

gram_module = importlib.import_module("steepest.polar.gram")
SHAPES = [(40, 10), (10, 40), (16, 16), (1, 7), (7, 1), (3, 30, 5), (2, 6, 24)]
RESTARTS = [(), (2,), (1, 3), (1, 2, 3, 4)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", ["newton_schulz", "polar_express"])
@pytest.mark.parametrize("restarts", RESTARTS)
def test_gram_form_equals_direct_iteration_in_float64(shape, backend, restarts):
    gen = torch.Generator().manual_seed(0)
    G = torch.randn(*shape, dtype=torch.float64, generator=gen)
    X = G / (1.01 * torch.linalg.matrix_norm(G, keepdim=True))
    X = X.reshape(-1, *shape[-2:])
    if X.shape[-2] > X.shape[-1]:
        X = X.mT
    schedule = [JORDAN] * 5 if backend == "newton_schulz" else polar_express_coefficients(5)
    direct = odd_quintic_iteration(X, schedule)
    gram = gram_quintic_iteration(X, schedule, restarts=restarts)
    assert (gram - direct).abs().max() < 1e-12


@pytest.mark.parametrize("shape", [(12, 48), (48, 12), (3, 20, 60)])
def test_msign_gram_applies_the_scalar_polynomial(shape):
    """Against the fp64 scalar oracle: singular values p_5(...p_1(s)), singular vectors kept."""
    gen = torch.Generator().manual_seed(1)
    *batch, m, n = shape
    k = min(m, n)
    s = torch.logspace(0, -2, k, dtype=torch.float64)
    G, U, V = with_spectrum(s, m, n, tuple(batch), gen)
    out = msign(G, "polar_express", dtype=torch.float64, form="gram")
    mapped = compose(polar_express_coefficients(5), normalized(s.numpy()))
    expected = (U * torch.as_tensor(mapped).unsqueeze(-2)) @ V.mT
    assert torch.allclose(out, expected, atol=1e-10, rtol=0)


def test_zero_matrix_inside_a_batch_stays_zero():
    G = torch.randn(3, 8, 24, dtype=torch.float64)
    G[1] = 0
    out = msign(G, form="gram", dtype=torch.float64)
    assert torch.equal(out[1], torch.zeros(8, 24, dtype=torch.float64))
    assert torch.allclose(out[0], msign(G[0], dtype=torch.float64), atol=1e-12)


def _ill_conditioned(dtype):
    """A batch of 64 x 256 matrices with singular values 1 .. 1e-4, normalized as msign does."""
    gen = torch.Generator().manual_seed(2)
    G, *_ = with_spectrum(torch.logspace(0, -4, 64, dtype=torch.float64), 64, 256, (4,), gen)
    return (G / (1.01 * torch.linalg.matrix_norm(G, keepdim=True))).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_restart_keeps_half_precision_gram_form_stable(dtype):
    """Without a restart, round-off in the s x s products makes spurious negative eigenvalues
    grow until the result blows up; restarting after step 2 keeps it near the direct form."""
    X = _ill_conditioned(dtype)
    schedule = polar_express_coefficients(5)
    top = slice(0, 32)  # the larger half of the spectrum, which 5 steps bring near 1

    def worst(out):
        return (torch.linalg.svdvals(out.double())[:, top] - 1).abs().max().item()

    direct = worst(odd_quintic_iteration(X, schedule))
    restarted = worst(gram_quintic_iteration(X, schedule))
    never = worst(gram_quintic_iteration(X, schedule, restarts=()))
    assert direct < 0.15
    assert restarted < (0.16 if dtype == torch.float16 else 0.45)
    assert never > 1.0


def test_float16_is_the_gram_forms_better_half_precision():
    X16, X_bf = _ill_conditioned(torch.float16), _ill_conditioned(torch.bfloat16)
    schedule = polar_express_coefficients(5)
    exact = odd_quintic_iteration(X16.double(), schedule)

    def err(X):
        return (gram_quintic_iteration(X, schedule).double() - exact).norm() / exact.norm()

    assert err(X16) < err(X_bf) / 4


def test_flop_ratio_by_hand():
    # direct: 5 * (4 * 4 + 2) = 90 s^3; gram with a restart after step 2:
    # (4 * 4 + 2 * (2 + 1 + 2)) + (4 * 4 + 2 * (3 + 2 + 4)) = 26 + 34 = 60 s^3.
    assert gram_flop_ratio(100, 400) == pytest.approx(60 / 90)
    assert gram_flop_ratio(400, 100) == pytest.approx(60 / 90)
    # square: direct 30, gram 14 + 22 = 36
    assert gram_flop_ratio(64, 64) == pytest.approx(36 / 30)
    # never restarting: 16 + 2 * (5 + 4 + 8) = 50
    assert gram_flop_ratio(100, 400, restarts=()) == pytest.approx(50 / 90)


@pytest.mark.parametrize(
    "shape, expect_gram", [((10, 20), True), ((20, 10), True), ((10, 19), False), ((8, 8), False)]
)
def test_auto_form_uses_gram_from_aspect_two(monkeypatch, shape, expect_gram):
    calls = []

    def spy(X, coefficients, **kwargs):
        calls.append(X.shape)
        return gram_quintic_iteration(X, coefficients, **kwargs)

    msign_module = importlib.import_module("steepest.polar.msign")  # the package exports msign()
    monkeypatch.setattr(msign_module, "gram_quintic_iteration", spy)
    G = torch.randn(*shape, dtype=torch.float64)
    out = msign(G, form="auto", dtype=torch.float64)
    assert bool(calls) == expect_gram
    assert torch.allclose(out, msign(G, dtype=torch.float64), atol=1e-12)


def test_auto_form_keeps_the_direct_form_for_an_explicit_bfloat16(monkeypatch):
    calls = []
    msign_module = importlib.import_module("steepest.polar.msign")
    monkeypatch.setattr(msign_module, "gram_quintic_iteration", lambda *a, **k: calls.append(1))
    msign(torch.randn(8, 32), form="auto", dtype=torch.bfloat16)
    assert calls == []


def test_bad_form_raises_naming_it():
    with pytest.raises(ValueError, match=r"form='fast'.*direct.*gram.*auto"):
        msign(torch.randn(4, 8), form="fast")


def test_muon_with_gram_form_follows_the_direct_trajectory_in_float64():
    gen = torch.Generator().manual_seed(3)
    init = [torch.randn(16, 48, dtype=torch.float64, generator=gen) for _ in range(2)]
    grads = [[torch.randn_like(p) for p in init] for _ in range(4)]
    finals = []
    for form in ("direct", "gram"):
        params = [p.clone().requires_grad_() for p in init]
        opt = Muon(params, lr=0.05, polar_form=form, polar_dtype=torch.float64)
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone()
            opt.step()
        finals.append([p.detach() for p in params])
    for a, b in zip(*finals, strict=True):
        assert (a - b).abs().max() < 1e-12


def test_muon_rejects_bad_polar_form_and_keeps_weights():
    p = torch.nn.Parameter(torch.randn(4, 8))
    with pytest.raises(ValueError, match=r"polar_form|form='sideways'"):
        Muon([p], polar_form="sideways")


def test_gram_iteration_compiles_without_graph_breaks():
    X = torch.randn(2, 6, 18) / 20
    schedule = tuple(polar_express_coefficients(5))
    core = torch.compile(gram_quintic_iteration, fullgraph=True, backend="eager")
    assert torch.equal(core(X, schedule), gram_quintic_iteration(X, schedule))


@pytest.mark.cuda
@pytest.mark.parametrize(
    "shape", [(4, 768, 2304), (2, 3072, 768), (3, 1000, 333), (2, 130, 777), (1, 2048, 8192)]
)
@pytest.mark.parametrize("kernel", ["auto", "torch"])
def test_cuda_gram_form_is_as_accurate_as_the_bf16_direct_form(shape, kernel):
    """On fresh random inputs (sides not multiples of the tile sizes too), against fp64."""
    gen = torch.Generator(device="cuda").manual_seed(sum(shape))
    G = torch.randn(*shape, device="cuda", generator=gen)
    exact = msign(G.double(), dtype=torch.float64)  # the same polynomial in fp64
    gram = msign(G, form="gram", kernel=kernel)  # float16 compute
    direct = msign(G, kernel=kernel)  # bfloat16 compute
    assert gram.dtype == torch.float32

    def err(out):
        return ((out.double() - exact).norm() / exact.norm()).item()

    assert err(gram) < max(1.5 * err(direct), 2e-2)


@pytest.mark.parametrize("shape", [(3, 10, 40), (2, 16, 16), (1, 7, 9)])
@pytest.mark.parametrize("backend", ["newton_schulz", "cubic", "polar_express"])
@pytest.mark.parametrize("form", ["direct", "gram"])
def test_a_scale_argument_iterates_on_the_scaled_stack_in_float64(shape, backend, form):
    """iterate(X, scale=c) is iterate(c X), c folded into the first products; c = 0 (a zero
    matrix's normalization) gives exact zeros. "cubic" has c = 0 coefficients: P = a I + b A."""
    gen = torch.Generator().manual_seed(sum(shape))
    X = torch.randn(*shape, dtype=torch.float64, generator=gen) * 7
    c = 1 / (1.01 * torch.linalg.matrix_norm(X))
    c[0] = 0.0
    if backend == "polar_express":
        schedule = polar_express_coefficients(5)
    else:
        schedule = newton_schulz_coefficients(
            "jordan" if backend == "newton_schulz" else "cubic", 5
        )
    iterate = gram_quintic_iteration if form == "gram" else odd_quintic_iteration
    folded = iterate(X, schedule, scale=c)
    expected = iterate(X * c[:, None, None], schedule)
    assert (folded - expected).abs().max() < 1e-12
    assert torch.count_nonzero(folded[0]) == 0


@pytest.mark.parametrize("shape", [(2, 40, 100), (100, 40), (3, 48, 48)])
@pytest.mark.parametrize("form", ["gram", "direct"])
@pytest.mark.parametrize("unit_scaled", [True, False])
def test_msign_folds_a_unit_scaled_float16_stacks_normalization_into_the_kernels(
    monkeypatch, shape, form, unit_scaled
):
    """A unit-scaled float16 G computed in float16 by the Triton kernels (their CUDA
    requirement lifted: the interpreter on CPU) is not copied: its scale reaches the
    iteration, the products see G itself, and the result matches the float64 iteration, with
    a zero matrix exactly zero. Without unit_scaled msign makes the normalized copy."""
    from steepest.polar.kernels import symmetric

    if not (symmetric.triton_available() and os.environ.get("TRITON_INTERPRET") == "1"):
        pytest.skip("needs triton and TRITON_INTERPRET=1 (tests/conftest.py, no GPU)")
    gen = torch.Generator().manual_seed(sum(shape))
    G = torch.randn(*shape, generator=gen)
    G = (G * 3 / G.norm()).to(torch.float16)  # norm 3: "unit scaled", 1.01 ||G|| != 1
    if G.ndim == 3:
        G[1] = 0
    ref = msign(G.double(), dtype=torch.float64, form=form)
    monkeypatch.setattr(symmetric, "_triton_unsupported", lambda X: None)
    scales = []
    msign_module = importlib.import_module("steepest.polar.msign")
    iterate_name = "gram_quintic_iteration" if form == "gram" else "odd_quintic_iteration"
    iterate = getattr(msign_module, iterate_name)

    def spy(X, coefficients, **kwargs):
        scales.append(kwargs.get("scale"))
        same = X.untyped_storage().data_ptr() == G.untyped_storage().data_ptr()
        assert same == unit_scaled  # no copy exactly when folded
        return iterate(X, coefficients, **kwargs)

    monkeypatch.setattr(msign_module, iterate_name, spy)
    out = msign_normed(
        G, None, dtype=torch.float16, form=form, out_dtype=torch.float32,
        unit_scaled=unit_scaled, kernel="triton",
    )  # fmt: skip
    assert len(scales) == 1
    if unit_scaled:
        assert scales[0] is not None and scales[0].dtype == torch.float32
    else:
        assert scales[0] is None
    assert ((out.double() - ref).norm() / ref.norm()).item() < 2e-2
    if G.ndim == 3:
        assert torch.count_nonzero(out[1]) == 0


def test_msign_copies_a_float16_stack_for_the_torch_products():
    """The torch path rounds an unscaled float16 product: no fold, the scaled copy as before."""
    msign_module = importlib.import_module("steepest.polar.msign")
    G = torch.randn(2, 6, 20).to(torch.float16)
    plan = msign_module._Plan(G, "polar_express", torch.float16, "gram", torch.float16)
    assert not plan.folds("polar_express", "auto")
    assert not plan.folds("polar_express", "torch")


@pytest.mark.cuda
@pytest.mark.parametrize("shape", [(4, 768, 2304), (3, 3072, 768), (2, 1000, 333), (2, 768, 768)])
@pytest.mark.parametrize("form", ["gram", "direct"])
@pytest.mark.parametrize("norm", [0.25, 1.0, 8.0])
def test_cuda_folded_normalization_is_as_accurate_as_the_scaled_copy(shape, form, norm):
    """A float16 G with norms at the ends of the prescale window (one zero matrix) through
    the Triton kernels with the normalization folded in, against the float64 iteration: as
    accurate as the same kernels on msign's normalized copy."""
    gen = torch.Generator(device="cuda").manual_seed(sum(shape))
    G = torch.randn(*shape, device="cuda", generator=gen)
    G = (G * norm / torch.linalg.matrix_norm(G, keepdim=True)).to(torch.float16)
    G[1] = 0
    exact = msign(G.double(), dtype=torch.float64, form=form)
    folded = msign_normed(
        G, None, dtype=torch.float16, form=form, kernel="triton", unit_scaled=True
    )
    copied = msign(G, dtype=torch.float16, form=form, kernel="triton")
    assert torch.count_nonzero(folded[1]) == 0

    def err(out):
        return ((out.double() - exact).norm() / exact.norm()).item()

    assert err(folded) < 1.2 * err(copied) + 1e-3, (err(folded), err(copied))
