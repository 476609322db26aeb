"""torch.compile: a compiled training step that includes optimizer.step() stops compiling after
warm-up, and trains exactly like the eager step.

Two backends: Dynamo's "eager" backend (the same tracing, guards and recompile logic without
code generation: seconds on a CPU) and "inductor" (C++ code generation on the CPU; about 30 s
on the shared 2-core machine, mostly the first compile). Counting:
``torch._dynamo.utils.counters["stats"]["unique_graphs"]`` (graphs compiled) and
``counters["frames"]["total"]`` (frames Dynamo was asked to convert, recompiles included).
Oracle: the same model and optimizer stepped eagerly.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import steepest
from compile_helpers import inductor_unavailable


def make_step(model: nn.Module, opt: torch.optim.Optimizer, x, y):
    def train_step() -> torch.Tensor:
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        return loss.detach()

    return train_step


def check_compiled_step(backend: str, atol: float) -> None:
    """Compile a whole Muon training step with `backend`; after two warm-up steps five more
    compile nothing new, and the parameters match the eager run within atol."""
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    eager_model = copy.deepcopy(model)
    x, y = torch.randn(16, 8), torch.randn(16, 4)
    # float32 iterations: Inductor keeps bfloat16 intermediates in float32, eager rounds them
    kwargs = {"weight_decay": 0.01, "polar_dtype": torch.float32}
    opt = steepest.Muon(model.parameters(), **kwargs)
    eager_opt = steepest.Muon(eager_model.parameters(), **kwargs)
    compiled = torch.compile(make_step(model, opt, x, y), backend=backend)
    eager = make_step(eager_model, eager_opt, x, y)

    for _ in range(2):  # warm-up: first step (empty momentum history) and the steady state
        compiled()
        eager()
    graphs = counters["stats"]["unique_graphs"]
    frames = counters["frames"]["total"]
    assert graphs > 0  # Dynamo really compiled something
    losses = []
    for _ in range(5):
        losses.append(compiled())
        eager()
    assert counters["stats"]["unique_graphs"] == graphs, "recompiled after warm-up"
    assert counters["frames"]["total"] == frames, "Dynamo converted new frames after warm-up"
    assert losses[-1] < losses[0]  # it trains
    for p, q in zip(model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=atol, rtol=1e-5)
    torch._dynamo.reset()


def test_compiled_step_does_not_recompile_and_matches_eager():
    check_compiled_step("eager", atol=1e-6)


def test_inductor_compiled_step_does_not_recompile_and_matches_eager():
    """Inductor fuses and reorders float32 arithmetic, so the match is to 1e-5 (measured
    ~1e-7 after 7 steps)."""
    reason = inductor_unavailable()
    if reason is not None:
        pytest.skip(f"inductor cannot build kernels on this machine: {reason}")
    check_compiled_step("inductor", atol=1e-5)
