"""Muon against torch.optim.Muon, pytorch-optimizer, timm and heavyball on one gradient stream.

Peers that orthogonalize in bfloat16 by construction are run with their own iteration in float32
(their function with dtype=float32, or torch's math written out without the bfloat16 cast), so
the float32 comparison checks the algorithm; the bfloat16 rows check steepest's bfloat16 run
against the float32 oracle. Tolerances in conformance_helpers.
"""

import functools
import importlib

import pytest
import torch
from conformance_helpers import (
    BFLOAT16,
    FLOAT32,
    FLOAT64,
    SHAPES,
    gap,
    peer,
    run,
    start,
    stream,
    timm_optim,
)

import steepest

HP = dict(lr=0.02, momentum=0.9, weight_decay=0.1)
JORDAN_NS = dict(backend="newton_schulz", coefficients="jordan", polar_dtype=torch.float32)
CONV = [(8, 4, 3, 3)]


def _torch_newton_schulz_float32(grad, coefficients, steps, eps):
    """torch.optim.Muon's orthogonalization (divide by max(||G||_F, eps), transpose tall
    matrices, quintic steps) without its bfloat16 cast."""
    a, b, c = coefficients
    X = grad.float()
    tall = X.shape[0] > X.shape[1]
    X = X.T if tall else X
    X = X / X.norm().clamp(min=eps)
    for _ in range(steps):
        A = X @ X.T
        X = torch.addmm(X, torch.addmm(A, A, A, beta=b, alpha=c), X, beta=a)
    return X.T if tall else X


@pytest.mark.parametrize("nesterov", [True, False])
def test_torch_muon_float32(nesterov, monkeypatch):
    monkeypatch.setattr(
        torch.optim._muon, "_zeropower_via_newtonschulz", _torch_newton_schulz_float32
    )
    w0, grads = start(SHAPES), stream(SHAPES, 6)
    hp = dict(HP, nesterov=nesterov)
    theirs = run(lambda ps: torch.optim.Muon(ps, **hp), w0, grads, torch.float32)
    ours = run(
        lambda ps: steepest.Muon(ps, **hp, **JORDAN_NS, scale="jordan"), w0, grads, torch.float32
    )
    assert gap(w0, ours, theirs) < FLOAT32


def test_torch_muon_rms_shape_rule(monkeypatch):
    """torch's adjust_lr_fn="match_rms_adamw" is steepest's scale="rms" (0.2 sqrt(max(m, n)))."""
    monkeypatch.setattr(
        torch.optim._muon, "_zeropower_via_newtonschulz", _torch_newton_schulz_float32
    )
    w0, grads = start(SHAPES), stream(SHAPES, 4)
    theirs = run(
        lambda ps: torch.optim.Muon(ps, **HP, adjust_lr_fn="match_rms_adamw"),
        w0,
        grads,
        torch.float32,
    )
    ours = run(
        lambda ps: steepest.Muon(ps, **HP, **JORDAN_NS, scale="rms"), w0, grads, torch.float32
    )
    assert gap(w0, ours, theirs) < FLOAT32


def test_muon_bfloat16_against_float32_oracle(monkeypatch):
    """steepest's bfloat16 iteration against its float32 run, which test_torch_muon_float32
    ties to torch.optim.Muon; torch's own bfloat16 run for comparison."""
    w0, grads = start(SHAPES), stream(SHAPES, 6)
    bf16 = {**JORDAN_NS, "polar_dtype": torch.bfloat16}
    oracle = run(
        lambda ps: steepest.Muon(ps, **HP, **JORDAN_NS, scale="jordan"), w0, grads, torch.float32
    )
    ours = run(lambda ps: steepest.Muon(ps, **HP, **bf16, scale="jordan"), w0, grads, torch.float32)
    theirs = run(lambda ps: torch.optim.Muon(ps, **HP), w0, grads, torch.float32)
    assert gap(w0, ours, oracle) < BFLOAT16
    assert gap(w0, ours, oracle) < 1.25 * gap(w0, theirs, oracle)


@pytest.mark.parametrize("nesterov, adjusted", [(True, False), (False, True)])
def test_pytorch_optimizer_muon_float32(nesterov, adjusted, monkeypatch):
    """pytorch_optimizer.Muon(use_muon=True group; use_adjusted_lr: 0.2 sqrt(max(m, n)), else
    sqrt(max(1, m/n))); its Newton-Schulz with dtype=float32. Includes a conv weight, which
    both flatten to (out, in * kh * kw)."""
    po = peer("pytorch_optimizer", "pytorch-optimizer")
    base = importlib.import_module("pytorch_optimizer.optimizer.muon.base")
    ns = functools.partial(base.zero_power_via_newton_schulz_5, dtype=torch.float32)
    monkeypatch.setattr(base, "zero_power_via_newton_schulz_5", ns)
    shapes = SHAPES + CONV
    w0, grads = start(shapes), stream(shapes, 6)
    theirs = run(
        lambda ps: po.Muon(
            [dict(params=ps, use_muon=True)], **HP, nesterov=nesterov, use_adjusted_lr=adjusted
        ),
        w0,
        grads,
        torch.float32,
    )
    scale = "rms" if adjusted else "jordan"
    ours = run(
        lambda ps: steepest.Muon(ps, **HP, nesterov=nesterov, **JORDAN_NS, scale=scale),
        w0,
        grads,
        torch.float32,
    )
    assert gap(w0, ours, theirs) < FLOAT32


@pytest.mark.parametrize("adjust, scale", [("original", "jordan"), ("rms_to_rms", "spectral")])
def test_timm_muon_float32(adjust, scale, monkeypatch):
    """timm.optim.Muon (conv_mode="flatten"), its Newton-Schulz with dtype=float32."""
    muon = timm_optim("muon")
    ns = functools.partial(muon.zeropower_via_newtonschulz, dtype=torch.float32)
    monkeypatch.setattr(muon, "zeropower_via_newtonschulz", ns)
    shapes = SHAPES + CONV
    w0, grads = start(shapes), stream(shapes, 6)
    theirs = run(
        lambda ps: muon.Muon(
            ps, **HP, nesterov=True, ns_coefficients="original", adjust_lr_fn=adjust
        ),
        w0,
        grads,
        torch.float32,
    )
    ours = run(
        lambda ps: steepest.Muon(ps, **HP, nesterov=True, **JORDAN_NS, scale=scale),
        w0,
        grads,
        torch.float32,
    )
    assert gap(w0, ours, theirs) < FLOAT32


#: heavyball's fixed 5-step Newton-Schulz schedule (heavyball.utils.zeropower_via_newtonschulz5).
HEAVYBALL_SCHEDULE = [
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
]


@pytest.mark.parametrize("momentum, tolerance", [(0.0, FLOAT64), (0.875, 1e-6)])
def test_heavyball_muon_float64_without_nesterov(momentum, tolerance):
    """heavyball.Muon(nesterov=False) keeps a bias-corrected EMA; msign is scale invariant, so
    it equals steepest's plain EMA. Its update scale is sqrt(max(1, m/n)) ("jordan").
    heavyball keeps lr, beta and the debiasing weight (1 - beta) / (1 - beta^t) as float32
    scalars: lr and beta here are exact in float32, and with momentum the debiasing weight's
    rounding leaves 1.4e-7 after 5 steps (hence 1e-6); without momentum the runs agree to
    float64 rounding (6.5e-15)."""
    heavyball = peer("heavyball", "heavyball")
    w0, grads = start(SHAPES), stream(SHAPES, 5)
    theirs = run(
        lambda ps: heavyball.Muon(
            ps,
            lr=2**-6,
            betas=(momentum, 0.99),
            weight_decay=0.0,
            nesterov=False,
            compile_step=False,
            storage_dtype="float64",
        ),
        w0,
        grads,
        torch.float64,
    )
    ours = run(
        lambda ps: steepest.Muon(
            ps,
            lr=2**-6,
            momentum=momentum,
            nesterov=False,
            backend="newton_schulz",
            coefficients=HEAVYBALL_SCHEDULE,
            polar_dtype=torch.float64,
            scale="jordan",
        ),
        w0,
        grads,
        torch.float64,
    )
    assert gap(w0, ours, theirs) < tolerance


def test_three_dimensional_weights_flatten_like_the_peers(monkeypatch):
    """pytorch-optimizer and timm read any weight with ndim >= 3 as (shape[0], rest): steepest's
    matrix_view="flatten". steepest's default for ndim 3 is a batch of matrices (experts, m, n),
    a different update (checked to differ by more than 10% of the distance moved)."""
    po = peer("pytorch_optimizer", "pytorch-optimizer")
    base = importlib.import_module("pytorch_optimizer.optimizer.muon.base")
    ns = functools.partial(base.zero_power_via_newton_schulz_5, dtype=torch.float32)
    monkeypatch.setattr(base, "zero_power_via_newton_schulz_5", ns)
    shapes = [(4, 8, 6)]
    w0, grads = start(shapes), stream(shapes, 4)
    theirs = run(
        lambda ps: po.Muon([dict(params=ps, use_muon=True)], **HP, nesterov=True),
        w0,
        grads,
        torch.float32,
    )

    def ours(view):
        group = dict(params=None, algorithm="muon", matrix_view=view)
        return run(
            lambda ps: steepest.Muon(
                [{**group, "params": ps}], **HP, nesterov=True, **JORDAN_NS, scale="jordan"
            ),
            w0,
            grads,
            torch.float32,
        )

    assert gap(w0, ours("flatten"), theirs) < FLOAT32
    assert gap(w0, ours("auto"), theirs) > 0.1
