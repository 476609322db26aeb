"""``implicit-bias``: a linear multiclass classifier on linearly separable data; its margins.

``n`` points x_i on the unit sphere of R^dim, labelled y_i = argmax_k (W_true x_i)_k with a
random W_true (fixed generator), so the data are separable by a linear map. The model is one
matrix W (classes x dim, zero-initialized, routed to the matrix rule) trained with cross-entropy
on all points (full batch); ``val_loss`` is that training loss. Along training the normalized
margins

    gamma_N(W) = min_i min_{j != y_i} (w_{y_i} - w_j)^T x_i / ||W||_N

for N = Frobenius (``l2_margin``), spectral (``spectral_margin``) and max-entry
(``max_norm_margin``): Fan et al. show that normalized steepest descent under a norm N drives
gamma_N to the maximum margin of that norm (Muon: spectral; sign descent / Adam: max-norm).
Since ||x_i||_2 = 1 each margin lies in [-2, 2] except the max-norm one, in
[-2 sqrt(dim), 2 sqrt(dim)]. ``train_accuracy`` is the fraction of points classified right.

References:
    Fan et al., "Implicit bias of spectral descent and Muon on multiclass separable data",
    arXiv 2502.04664.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from steepest.experiments.tasks.base import Task

__all__ = ["ImplicitBias", "margins"]


def margins(W: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Normalized margins of ``W`` (classes x dim) on points ``x`` (n x dim), labels ``y``.

    Returns ``{"l2_margin", "spectral_margin", "max_norm_margin"}`` (0 for W = 0).
    """
    scores = x @ W.T
    own = scores.gather(1, y[:, None])
    others = scores.scatter(1, y[:, None], float("-inf"))  # drop j = y_i
    raw = (own - others).min().item()
    norms = {
        "l2_margin": torch.linalg.matrix_norm(W, "fro").item(),
        "spectral_margin": torch.linalg.matrix_norm(W, 2).item(),
        "max_norm_margin": W.abs().max().item(),
    }
    return {k: raw / v if v > 0 else 0.0 for k, v in norms.items()}


class LinearMap(nn.Module):
    """``x -> x W^T`` with one zero-initialized matrix ``weight`` (classes x dim)."""

    def __init__(self, classes: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(classes, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T


@dataclasses.dataclass
class ImplicitBias(Task):
    """Linear classifier on ``n`` separable points in R^``dim`` with ``classes`` classes."""

    n: int = 200
    dim: int = 20
    classes: int = 5

    name = "implicit-bias"
    steps = 3000
    eval_every = 50
    warmup = 0.0
    schedule = "constant"
    default_lrs = {"adamw": (0.01, 0.01), "muon": (0.05, 0.05), "sgd": (1.0, 1.0)}
    metrics = ("train_accuracy", "l2_margin", "spectral_margin", "max_norm_margin")

    @property
    def metric_ranges(self) -> dict[str, tuple[float, float]]:
        """Normalized margins: l2 and spectral in [-2, 2], max-norm in +-2 sqrt(dim)."""
        bound = 2 * math.sqrt(self.dim)
        return {
            "l2_margin": (-2.0, 2.0),
            "spectral_margin": (-2.0, 2.0),
            "max_norm_margin": (-bound, bound),
        }

    def __post_init__(self) -> None:
        self._check_positive("n", "dim", "classes")
        if self.classes < 2:
            raise ValueError(f"implicit-bias: option classes={self.classes} must be >= 2")

    def setup(self, device: torch.device) -> None:
        gen = torch.Generator().manual_seed(0)
        w_true = torch.randn(self.classes, self.dim, generator=gen)
        x = torch.randn(self.n, self.dim, generator=gen)
        x = x / x.norm(dim=1, keepdim=True)
        self.x, self.y = x.to(device), (x @ w_true.T).argmax(1).to(device)
        self.device = device

    def build_model(self) -> nn.Module:
        return LinearMap(self.classes, self.dim).to(self.device)

    def batches(self, seed: int) -> Iterator[None]:
        return itertools.repeat(None)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return F.cross_entropy(model(self.x), self.y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        logits = model(self.x)
        return {
            "val_loss": F.cross_entropy(logits, self.y).item(),
            "train_accuracy": (logits.argmax(1) == self.y).float().mean().item(),
            **margins(model.get_parameter("weight"), self.x, self.y),
        }
