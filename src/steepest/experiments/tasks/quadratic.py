"""``quadratic``: Shen et al.'s matrix quadratic with a Hessian of controllable rank and spectrum.

    f(W) = tr((W - W*)^T Q (W - W*)),    W, W* in R^{m x n},  Q = U diag(lambda) U^T in R^{m x m},

with ``U`` a random orthogonal matrix, ``lambda_i = i^(-decay)`` for ``i <= rank`` and 0 beyond,
so ``lambda_max = 1`` and the gradient ``2 Q (W - W*)`` is ``L = 2``-Lipschitz: gradient descent
with step ``1/L = 0.5`` is the paper's baseline. ``W`` starts at 0; the instance (``U``, ``W*``)
is drawn from the run's seed, so every optimizer sees the same problem. The metric is f(W); the
batches are empty (full, exact gradients). ``steepest.param_groups`` routes ``W`` to the matrix
rule (a hidden matrix); there is no AdamW group.

References:
    Shen et al., "On the Convergence Analysis of Muon", arXiv 2505.23737, Fig. 1 and
    Section E (the quadratic, W0 = 0, GD with 1/L).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from steepest.experiments.tasks.base import Task

__all__ = ["Quadratic", "MatrixQuadratic"]


class MatrixQuadratic(nn.Module):
    """Holds ``W`` (the parameter, zero-initialized) and the problem ``Q``, ``W*`` (buffers)."""

    def __init__(self, m: int, n: int, rank: int, decay: float):
        super().__init__()
        u, _ = torch.linalg.qr(torch.randn(m, m, dtype=torch.float64))
        spectrum = torch.zeros(m, dtype=torch.float64)
        spectrum[:rank] = torch.arange(1, rank + 1, dtype=torch.float64) ** (-decay)
        self.Q: torch.Tensor
        self.root: torch.Tensor
        self.W_star: torch.Tensor
        self.register_buffer("Q", ((u * spectrum) @ u.T).float())
        self.register_buffer("root", (spectrum.sqrt()[:, None] * u.T).float())  # Q = root^T root
        self.register_buffer("W_star", torch.randn(m, n))
        self.weight = nn.Parameter(torch.zeros(m, n))

    def forward(self) -> torch.Tensor:
        """f(W) = tr(D^T Q D) = ||Q^(1/2) D||_F^2 with D = W - W*, >= 0 in floating point."""
        return (self.root @ (self.weight - self.W_star)).square().sum()


@dataclasses.dataclass
class Quadratic(Task):
    """f(W) = tr((W - W*)^T Q (W - W*)) with Q of rank ``rank`` and spectrum ``i^(-decay)``."""

    m: int = 64
    n: int = 32
    rank: int = 16
    decay: float = 1.5

    name = "quadratic"
    steps = 200
    eval_every = 5
    warmup = 0.0
    schedule = "cosine"
    default_lrs = {"sgd": (0.5, 0.5), "adamw": (0.1, 0.1), "muon": (0.5, 0.5)}
    metrics = ()

    def __post_init__(self) -> None:
        self._check_positive("m", "n", "rank")
        if not isinstance(self.rank, int) or self.rank > self.m:
            raise ValueError(
                f"quadratic: option rank={self.rank!r} must be an int in [1, m={self.m}]"
            )
        if not isinstance(self.decay, (int, float)) or self.decay < 0:
            raise ValueError(f"quadratic: option decay={self.decay!r} must be >= 0")

    def setup(self, device: torch.device) -> None:
        self.device = device

    def build_model(self) -> nn.Module:
        return MatrixQuadratic(self.m, self.n, self.rank, float(self.decay)).to(self.device)

    def batches(self, seed: int) -> Iterator[None]:
        return itertools.repeat(None)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        value: torch.Tensor = model()
        return value

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {"val_loss": model().item()}
