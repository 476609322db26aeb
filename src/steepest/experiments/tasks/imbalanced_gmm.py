"""``imbalanced-gmm``: Gaussian-mixture classification with a controllable class imbalance.

``classes`` Gaussian clusters in ``dim`` dimensions with unit covariance and means of norm
``separation``, means and samples drawn from a generator seeded with ``data_seed``. Training
class k has ``round(train_size * w_k / sum(w))`` examples, ``w_k = imbalance^(-k/(classes-1))``:
class 0 is the majority, the last class has ``imbalance`` times fewer examples. The held-out
set is balanced (``val_per_class`` per class), so its accuracy is the balanced accuracy. The
model is a ReLU MLP ``dim -> hidden -> classes``. Metrics: balanced accuracy and each class's
accuracy (``class_k_accuracy``).

References:
    Vasudeva et al., arXiv 2510.22980 (Muon and Adam on imbalanced Gaussian mixtures: balanced
    and per-class accuracy); "Why Muon Outperforms Adam: A Curvature Perspective", arXiv 2606.04662
    (data imbalance and Muon's NDS).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from steepest.experiments.tasks.base import Task

__all__ = ["ImbalancedGMM", "class_sizes"]


def class_sizes(total: int, classes: int, imbalance: float) -> list[int]:
    """Sizes ``round(total * w_k / sum(w))``, ``w_k = imbalance^(-k/(classes-1))``, each >= 1."""
    weights = [imbalance ** (-k / max(1, classes - 1)) for k in range(classes)]
    return [max(1, round(total * w / sum(weights))) for w in weights]


@dataclasses.dataclass
class ImbalancedGMM(Task):
    """MLP on a ``classes``-Gaussian mixture whose class sizes fall by ``imbalance``."""

    classes: int = 4
    dim: int = 32
    separation: float = 3.0
    imbalance: float = 10.0
    train_size: int = 2000
    val_per_class: int = 500
    hidden: int = 64
    batch_size: int = 64
    data_seed: int = 0

    name = "imbalanced-gmm"
    steps = 300
    eval_every = 10
    warmup = 0.0
    schedule = "cosine"
    default_lrs = {"adamw": (3e-3, 3e-3), "muon": (0.02, 3e-3), "sgd": (0.1, 3e-3)}

    @property
    def metrics(self) -> tuple[str, ...]:
        """Balanced accuracy and the accuracy of each class."""
        return ("balanced_accuracy", *(f"class_{k}_accuracy" for k in range(self.classes)))

    def __post_init__(self) -> None:
        self._check_positive(
            "classes", "dim", "separation", "train_size", "val_per_class", "hidden", "batch_size"
        )
        if self.classes < 2:
            raise ValueError(f"imbalanced-gmm: option classes={self.classes} must be >= 2")
        if not isinstance(self.imbalance, (int, float)) or self.imbalance < 1:
            raise ValueError(f"imbalanced-gmm: option imbalance={self.imbalance!r} must be >= 1")
        if isinstance(self.data_seed, bool) or not isinstance(self.data_seed, int):
            raise ValueError(f"imbalanced-gmm: option data_seed={self.data_seed!r} must be an int")

    def setup(self, device: torch.device) -> None:
        gen = torch.Generator().manual_seed(self.data_seed)
        means = torch.randn(self.classes, self.dim, generator=gen)
        self.means = self.separation * means / means.norm(dim=1, keepdim=True)
        sizes = class_sizes(self.train_size, self.classes, float(self.imbalance))
        self.sizes = sizes

        def draw(counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
            x = self.means[y] + torch.randn(len(y), self.dim, generator=gen)
            return x.to(device), y.to(device)

        self.train_x, self.train_y = draw(sizes)
        self.val_x, self.val_y = draw([self.val_per_class] * self.classes)
        self.device = device

    def build_model(self) -> nn.Module:
        return nn.Sequential(
            nn.Linear(self.dim, self.hidden, bias=False),
            nn.ReLU(),
            nn.Linear(self.hidden, self.hidden, bias=False),
            nn.ReLU(),
            nn.Linear(self.hidden, self.classes, bias=False),
        ).to(self.device)

    def batches(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        n = len(self.train_x)
        size = min(self.batch_size, n)
        while True:
            order = torch.randperm(n, generator=gen).to(self.device)
            for i in range(0, n - size + 1, size):
                idx = order[i : i + size]
                yield self.train_x[idx], self.train_y[idx]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        logits = model(self.val_x)
        correct = (logits.argmax(-1) == self.val_y).float()
        per_class = [correct[self.val_y == k].mean().item() for k in range(self.classes)]
        return {
            "val_loss": F.cross_entropy(logits, self.val_y).item(),
            "balanced_accuracy": sum(per_class) / self.classes,
            **{f"class_{k}_accuracy": a for k, a in enumerate(per_class)},
        }
