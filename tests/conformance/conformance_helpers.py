"""Shared pieces of the conformance tests: one gradient stream, a runner, the gap measure and the
peers' imports (skipped, with the reason printed, where a peer cannot be imported).

Agreement is measured as the gap between two trajectories relative to the distance moved,
max over parameters of ||W_ours - W_peer|| / ||W_peer - W_0|| after the whole stream.
Tolerances: float32 iterations 3e-5, float64 1e-9, bfloat16 5e-2 against the float32 oracle.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Sequence

import pytest
import torch

FLOAT32 = 3e-5
FLOAT64 = 1e-9
BFLOAT16 = 5e-2

#: (d_out, d_in) matrices: tall, wide, square.
SHAPES = [(32, 16), (16, 48), (24, 24)]


def stream(
    shapes: Sequence[tuple[int, ...]], steps: int, seed: int = 0
) -> list[list[torch.Tensor]]:
    """``steps`` lists of float64 Gaussian gradients, one per shape: the same for every run."""
    g = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(*s, generator=g, dtype=torch.float64) for s in shapes] for _ in range(steps)
    ]


def start(shapes: Sequence[tuple[int, ...]], seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=torch.float64) / s[-1] ** 0.5 for s in shapes]


def run(
    make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
    weights: list[torch.Tensor],
    grads: list[list[torch.Tensor]],
    dtype: torch.dtype,
) -> list[torch.Tensor]:
    """Final weights (float64) after stepping ``make(params)`` through the gradient stream."""
    params = [torch.nn.Parameter(w.to(dtype).clone()) for w in weights]
    optimizer = make(params)
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad = g.to(dtype).clone()  # some peers modify the gradient in place
        optimizer.step()
    return [p.detach().double() for p in params]


def gap(weights: list[torch.Tensor], ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    return max(
        ((a - b).norm() / (b - w0.to(b.dtype)).norm()).item()
        for w0, a, b in zip(weights, ours, theirs, strict=True)
    )


def peer(module: str, package: str) -> types.ModuleType:
    """Import a peer library or skip, naming the pyproject extra that pins it."""
    return pytest.importorskip(
        module, reason=f"{package} is not installed (pinned in pyproject's [test] extra)"
    )


def timm_optim(name: str) -> types.ModuleType:
    """timm.optim.<name> without running timm/__init__ (which imports torchvision, absent from
    a CPU-only torch install): the optimizer modules need only torch and timm.optim's helpers.
    The stub package entries are removed again afterwards."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("timm is not installed (pinned in pyproject's [test] extra)")
    root = list(spec.submodule_search_locations)[0]
    added = [key for key in ("timm", "timm.optim") if key not in sys.modules]
    saved = {key: sys.modules.get(key) for key in ("timm", "timm.optim")}
    try:
        if "timm" in added:
            package = types.ModuleType("timm")
            package.__path__ = [root]
            sys.modules["timm"] = package
        if "timm.optim" in added:
            optim = types.ModuleType("timm.optim")
            optim.__path__ = [f"{root}/optim"]
            sys.modules["timm.optim"] = optim
        return importlib.import_module(f"timm.optim.{name}")
    except ImportError as error:
        pytest.skip(f"timm.optim.{name} cannot be imported: {error}")
    finally:
        for key in added:
            if saved[key] is None:
                sys.modules.pop(key, None)
