"""Mixed precision: CPU bfloat16 autocast and torch.amp.GradScaler around steepest.Muon.

Oracles: the Muon step of a fresh optimizer is p - lr * sqrt(m/n) * U V^T with U V^T from an
fp64 SVD of the gradient (one step from zero momentum: the Nesterov direction is a positive
multiple of G); GradScaler's scale is a power of two, so a non-skipped scaled step must equal,
bit for bit, the step on the unscaled gradient; a skipped step leaves parameters and state as
they were.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import steepest


def polar_fp64(G: torch.Tensor) -> torch.Tensor:
    U, _, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    return U @ Vh


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Linear(16, 4))


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(32, 12, generator=gen), torch.randn(32, 4, generator=gen)


def test_autocast_bf16_step_matches_svd_oracle():
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = steepest.Muon(model.parameters(), lr=0.05, backend="svd")
    x, y = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        assert out.dtype == torch.bfloat16  # autocast is really on
        loss = (out.float() - y).pow(2).mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert all(g.dtype == torch.float32 for g in grads.values())  # fp32 master params
    opt.step()
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and p.isfinite().all()
        if p.ndim == 2:
            m, n = p.shape
            expected = before[name].double() - 0.05 * math.sqrt(m / n) * polar_fp64(grads[name])
            torch.testing.assert_close(p.detach().double(), expected, atol=2e-6, rtol=0)
        else:
            assert not torch.equal(p.detach(), before[name])  # AdamW moved the biases


def scaled_step(model, opt, scaler, x, y, poison: bool = False) -> None:
    loss = (model(x) - y).pow(2).mean()
    scaler.scale(loss).backward()
    if poison:  # an overflow as fp16 training produces it
        next(model.parameters()).grad[0, 0] = math.inf
    scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()


@pytest.mark.parametrize("backend", ["polar_express", "svd"])
def test_grad_scaler_step_equals_unscaled_step(backend):
    x, y = batch()
    model = tiny_model()
    reference = copy.deepcopy(model)
    opt = steepest.Muon(model.parameters(), backend=backend, weight_decay=0.1)
    ref_opt = steepest.Muon(reference.parameters(), backend=backend, weight_decay=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    for _ in range(3):
        scaled_step(model, opt, scaler, x, y)
        opt.zero_grad()
        (reference(x) - y).pow(2).mean().backward()
        ref_opt.step()
        ref_opt.zero_grad()
    assert scaler.get_scale() == 2.0**12  # no step was skipped
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)


def test_grad_scaler_skips_an_overflowing_step():
    x, y = batch()
    model = tiny_model()
    opt = steepest.Muon(model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    scaled_step(model, opt, scaler, x, y)  # one real step, so the momentum is non-zero
    opt.zero_grad()
    params = [p.detach().clone() for p in model.parameters()]
    state = copy.deepcopy(opt.state_dict()["state"])
    scaled_step(model, opt, scaler, x, y, poison=True)
    assert scaler.get_scale() == 2.0**11  # the scaler saw the inf and backed off
    for p, saved in zip(model.parameters(), params, strict=True):
        assert torch.equal(p.detach(), saved)
    after = opt.state_dict()["state"]
    for key, values in state.items():
        for name, value in values.items():
            assert torch.equal(after[key][name], value), f"state {key}.{name} changed"
