"""steepest.Muon configured like torch.optim.Muon follows torch's trajectory up to bf16 rounding."""

import pytest
import torch

import steepest

SHAPES = [(32, 16), (16, 48), (24, 24), (40, 8)]


def _run(make_optimizer, steps=6, seed=0):
    """Minimize sum_i ||X_i W_i^T - Y_i||^2 / n on a fresh batch (X, Y) per step (the same
    batches for every optimizer); returns initial and final weights."""
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(m, n, generator=gen) / n**0.5 for m, n in SHAPES]
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    optimizer = make_optimizer(params)
    for _ in range(steps):
        data = [
            (torch.randn(8, n, generator=gen), torch.randn(8, m, generator=gen)) for m, n in SHAPES
        ]
        optimizer.zero_grad()
        loss = sum(((x @ p.T - y) ** 2).mean() for p, (x, y) in zip(params, data, strict=True))
        loss.backward()
        optimizer.step()
    return weights, [p.detach() for p in params]


def _relative_gap(start, ours, reference):
    """max over params of ||W_ours - W_ref|| / ||W_ref - W_0|| (error / distance moved)."""
    return max(
        ((a - b).norm() / (b - w0).norm()).item()
        for w0, a, b in zip(start, ours, reference, strict=True)
    )


TORCH_LIKE = dict(
    backend="newton_schulz", coefficients="jordan", polar_dtype=torch.bfloat16, scale="jordan"
)
HP = dict(lr=0.02, momentum=0.9, weight_decay=0.1)


def _torch_newton_schulz_fp32(grad, coefficients, steps, eps):
    """torch.optim.Muon's orthogonalization (divide by max(||G||_F, eps), transpose tall
    matrices, quintic steps) written out in float32: the same math without bf16 rounding."""
    a, b, c = coefficients
    X = grad.float()
    tall = X.shape[0] > X.shape[1]
    X = X.T if tall else X
    X = X / X.norm().clamp(min=eps)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tall else X


@pytest.mark.parametrize("nesterov", [True, False])
def test_follows_torch_muon_in_bf16(nesterov, monkeypatch):
    hp = dict(HP, nesterov=nesterov)
    start, reference = _run(lambda ps: torch.optim.Muon(ps, **hp))
    _, ours = _run(lambda ps: steepest.Muon(ps, **hp, **TORCH_LIKE))
    # "bf16 rounding", measured: how far torch's own trajectory moves when its bf16
    # orthogonalization is replaced by the same math in fp32 (about 4% of the distance moved).
    monkeypatch.setattr(torch.optim._muon, "_zeropower_via_newtonschulz", _torch_newton_schulz_fp32)
    _, reference_fp32 = _run(lambda ps: torch.optim.Muon(ps, **hp))
    bf16_gap = _relative_gap(start, reference_fp32, reference)
    assert 0.005 < bf16_gap < 0.1
    # two independent bf16 roundings: about sqrt(2) times one; measured 5.5% vs 4.2%
    assert _relative_gap(start, ours, reference) < 2 * bf16_gap


def test_follows_torch_muon_in_fp32(monkeypatch):
    """Without bf16 the two agree to float32 rounding: newton_schulz normalizes by ||G||_F as
    Cesista (2025) Alg. 2 and torch do (measured gap 1.7e-6 of the distance moved)."""
    monkeypatch.setattr(torch.optim._muon, "_zeropower_via_newtonschulz", _torch_newton_schulz_fp32)
    hp = dict(HP, nesterov=True)
    start, reference = _run(lambda ps: torch.optim.Muon(ps, **hp))
    fp32 = {**TORCH_LIKE, "polar_dtype": torch.float32}
    _, ours = _run(lambda ps: steepest.Muon(ps, **hp, **fp32))
    assert _relative_gap(start, ours, reference) < 1e-5
    _, wrong_form = _run(lambda ps: steepest.Muon(ps, **{**hp, "nesterov": False}, **fp32))
    _, wrong_scale = _run(lambda ps: steepest.Muon(ps, **hp, **{**fp32, "scale": "spectral"}))
    assert _relative_gap(start, wrong_form, reference) > 0.1
    assert _relative_gap(start, wrong_scale, reference) > 0.2
