"""Scion and its LMOs against pytorch-optimizer's SCION (float32; its Newton-Schulz with
dtype=float32). pytorch-optimizer's ``momentum`` is the weight of the new gradient, steepest's
the fraction kept: momentum_steepest = 1 - momentum_po. ``scale`` is steepest's ``radius``;
``constraint=True`` is steepest's default weight_decay=1.0 (W <- (1 - lr) W - lr rho lmo)."""

import functools
import importlib

import pytest
import torch
from conformance_helpers import FLOAT32, gap, peer, run, start, stream

import steepest

NS = dict(backend="newton_schulz", coefficients="jordan", polar_dtype=torch.float32)


def _lmo(name, shapes):
    """(pytorch-optimizer LMONorm name, its norm_kwargs, steepest norm, the factor its LMO has
    beyond steepest's: steepest radius = pytorch-optimizer scale * factor)."""
    d_in = shapes[0][-1] if len(shapes[0]) > 1 else 1
    return {
        "spectral": ("SPECTRAL", {}, "spectral", 1.0),
        "sign": ("SIGN", {"normalize": True}, "sign", 1.0 / d_in),
        "colnorm": ("COL", {"normalized": False}, "colnorm", 1.0),
        "rownorm": ("ROW", {"normalized": True}, "rownorm", 1.0),
        "rms": ("BIAS", {}, "rms", 1.0),
    }[name]


@pytest.mark.parametrize("norm", ["spectral", "sign", "colnorm", "rownorm", "rms"])
@pytest.mark.parametrize("constrained", [True, False])
def test_pytorch_optimizer_scion_lmo(norm, constrained, monkeypatch):
    po = peer("pytorch_optimizer", "pytorch-optimizer")
    scion = importlib.import_module("pytorch_optimizer.optimizer.scion")
    ns = functools.partial(scion.zero_power_via_newton_schulz_5, dtype=torch.float32)
    monkeypatch.setattr(scion, "zero_power_via_newton_schulz_5", ns)
    shapes = [(24,)] if norm == "rms" else [(24, 16)]
    po_name, kwargs, ours_name, factor = _lmo(norm, shapes)
    radius, lr = 3.0, 0.05
    w0, grads = start(shapes), stream(shapes, 5)
    theirs = run(
        lambda ps: po.SCION(
            ps,
            lr=lr,
            momentum=0.1,
            constraint=constrained,
            scale=radius,
            norm_type=getattr(scion.LMONorm, po_name),
            norm_kwargs=kwargs,
            foreach=False,
        ),
        w0,
        grads,
        torch.float32,
    )
    ours = run(
        lambda ps: steepest.optimizer(
            "scion" if constrained else "uscion",
            ps,
            lr=lr,
            momentum=0.9,
            norm=ours_name,
            radius=radius * factor,
            **NS,
        ),
        w0,
        grads,
        torch.float32,
    )
    assert gap(w0, ours, theirs) < FLOAT32
