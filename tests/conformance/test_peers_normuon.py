"""NorMuon against pytorch-optimizer's NorMuon(update_scale="preserve_norm"), float32 (its
Newton-Schulz with dtype=float32). Both normalize rows (one second moment per output neuron)
and restore the orthogonalized update's Frobenius norm; use_adjusted_lr=False is steepest's
scale="jordan" (sqrt(max(1, m/n)))."""

import functools
import importlib

import pytest
import torch
from conformance_helpers import FLOAT32, SHAPES, gap, peer, run, start, stream

import steepest


@pytest.mark.parametrize("nesterov", [True, False])
def test_pytorch_optimizer_normuon_preserve_norm(nesterov, monkeypatch):
    po = peer("pytorch_optimizer", "pytorch-optimizer")
    for name in ("base", "normuon"):
        module = importlib.import_module(f"pytorch_optimizer.optimizer.muon.{name}")
        ns = functools.partial(module.zero_power_via_newton_schulz_5, dtype=torch.float32)
        monkeypatch.setattr(module, "zero_power_via_newton_schulz_5", ns)
    hp = dict(lr=0.02, momentum=0.9, beta2=0.95, weight_decay=0.1, nesterov=nesterov, eps=1e-10)
    w0, grads = start(SHAPES), stream(SHAPES, 6)
    theirs = run(
        lambda ps: po.NorMuon(
            [dict(params=ps, use_muon=True)],
            **hp,
            update_scale="preserve_norm",
            use_adjusted_lr=False,
        ),
        w0,
        grads,
        torch.float32,
    )
    ours = run(
        lambda ps: steepest.NorMuon(
            ps,
            **hp,
            backend="newton_schulz",
            coefficients="jordan",
            polar_dtype=torch.float32,
            scale="jordan",
        ),
        w0,
        grads,
        torch.float32,
    )
    assert gap(w0, ours, theirs) < FLOAT32
