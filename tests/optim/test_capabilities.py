"""Every algorithm's declared fast-path capabilities hold (parametrized over the registry).

Declarations (steepest.optim.registry.Algorithm): ``uncapturable(group)`` ("" when the stages
can be compiled and recorded), ``fused_momentum`` and ``scale_invariant``. Oracles: the eager
step (float64) and the algorithm's own ``dualize``.
"""

from __future__ import annotations

import pytest
import torch

import steepest
from steepest.optim import ALGORITHMS, Algorithm
from steepest.optim.fast import FastPath, closure_capture
from steepest.optim.momentum import MomentumAlgorithm

MATRIX = sorted(name for name, a in ALGORITHMS.items() if a.matrix)
CAPTURABLE = [n for n in MATRIX if not ALGORITHMS[n].uncapturable(ALGORITHMS[n].defaults)]
FUSED = [n for n in MATRIX if ALGORITHMS[n].fused_momentum]
SCALE_INVARIANT = [n for n in FUSED if ALGORITHMS[n].scale_invariant]


def _group(name: str, **overrides) -> dict:
    algorithm = ALGORITHMS[name]
    return {
        **algorithm.defaults,
        "matrix_view": "auto",
        "blocks": None,
        "polar_dtype": torch.float64,
        **overrides,
    }


def test_the_declarations_cover_the_muon_family():
    assert {"muon", "polargrad"} <= set(FUSED)
    assert "normuon" in CAPTURABLE and "normuon" not in FUSED
    assert "muon" in SCALE_INVARIANT and "polargrad" not in SCALE_INVARIANT
    for name in MATRIX:
        reason = ALGORITHMS[name].uncapturable(ALGORITHMS[name].defaults)
        assert isinstance(reason, str)
        assert (name in CAPTURABLE) == (reason == "")


@pytest.mark.parametrize("name", FUSED)
def test_fused_momentum_members_have_the_plain_stages_it_needs(name):
    """fused_momentum promises EMA momentum in stage 1, no state in stages 2 and 4, and a
    dualize_normed equal to dualize given the stack's Frobenius norms."""
    algorithm = ALGORITHMS[name]
    kind = type(algorithm)
    assert isinstance(algorithm, MomentumAlgorithm)
    assert kind.accumulate is MomentumAlgorithm.accumulate
    assert kind.update_momentum is MomentumAlgorithm.update_momentum
    assert kind.precondition is Algorithm.precondition
    assert kind.rescale is Algorithm.rescale
    group = _group(name, backend="polar_express")
    X = torch.randn(3, 6, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    norms = torch.linalg.matrix_norm(X)
    direct = algorithm.dualize(X, group)
    normed = algorithm.dualize_normed(X, norms, torch.float64, group)
    torch.testing.assert_close(normed, direct, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", SCALE_INVARIANT)
@pytest.mark.parametrize("s", [2.0**-20, 3.0, 2.0**30])
def test_scale_invariant_members_ignore_the_stack_scale(name, s):
    algorithm = ALGORITHMS[name]
    group = _group(name, backend="polar_express")
    X = torch.randn(2, 8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    norms = torch.linalg.matrix_norm(X)
    base = algorithm.dualize_normed(X, norms, torch.float64, group)
    scaled = algorithm.dualize_normed(s * X, s * norms, torch.float64, group)
    torch.testing.assert_close(scaled, base, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", CAPTURABLE)
def test_capturable_members_compile_and_record_to_the_eager_result(name):
    """Compiled (backend "eager") and recorded with the CPU stand-in recorder, three steps
    with fresh gradients and an lr change equal the eager optimizer's (float64)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    shapes = [(8, 4), (4, 4), (8, 4), (4, 8)]
    ps = [torch.nn.Parameter(torch.randn(*s, dtype=torch.float64)) for s in shapes]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    kwargs = {"polar_dtype": torch.float64, "weight_decay": 0.1}
    fast = steepest.optimizer(
        name, ps, compile="eager", cuda_graph=True, fast=FastPath(capture=closure_capture), **kwargs
    )
    eager = steepest.optimizer(name, qs, **kwargs)
    assert [r.path for r in fast.fast_path_report()] == ["compiled+recorded"]
    for t in range(4):
        gen = torch.Generator().manual_seed(t)
        for p, q in zip(ps, qs, strict=True):
            p.grad = torch.randn(p.shape, dtype=p.dtype, generator=gen)
            q.grad = p.grad.clone()
        if t == 3:
            for o in (fast, eager):
                o.param_groups[0]["lr"] *= 0.5
        fast.step()
        eager.step()
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0)
    assert fast.graphs[0].recordings == 1
    torch._dynamo.reset()


@pytest.mark.parametrize("name", sorted(set(MATRIX) - set(CAPTURABLE)))
def test_uncapturable_members_stay_eager_and_say_why(name):
    p = torch.nn.Parameter(torch.randn(6, 4))
    opt = steepest.optimizer(name, [p], cuda_graph=True, fast=FastPath(capture=closure_capture))
    (row,) = [r for r in opt.fast_path_report() if r.algorithm == name]
    assert row.path == "eager" and row.reason
