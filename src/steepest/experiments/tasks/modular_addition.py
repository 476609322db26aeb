"""``modular-addition``: the grokking task, (a + b) mod p from a fraction of all pairs.

All p^2 pairs (a, b) are shuffled once with a fixed generator; the first ``train_fraction`` of
them train and the rest are held out. The model embeds a and b (one shared embedding table),
concatenates them, and applies a ReLU MLP with a hidden matrix and an output head. Metrics: the
held-out accuracy along training and, per run, the first evaluated step at which it reaches 95%
(``step_to_95``, ``None`` if never) -- the grokking time.

References:
    Power et al., "Grokking: generalization beyond overfitting on small algorithmic datasets",
    arXiv 2201.02177 (the task and the 95% criterion of generalization).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from steepest.experiments.tasks.base import Task

__all__ = ["ModularAddition", "first_step_reaching"]


def first_step_reaching(curve: dict[str, list[float]], key: str, level: float) -> int | None:
    """First ``curve["step"]`` at which ``curve[key] >= level`` (``None`` if never)."""
    for step, value in zip(curve["step"], curve[key], strict=True):
        if value >= level:
            return int(step)
    return None


class AdditionMLP(nn.Module):
    """``(a, b) -> logits over Z_p``: shared embedding, concat, ReLU MLP, head."""

    def __init__(self, modulus: int, width: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(modulus, width)
        self.hidden = nn.Linear(2 * width, hidden, bias=False)
        self.head = nn.Linear(hidden, modulus, bias=False)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(F.relu(self.hidden(self.embed(pairs).flatten(-2))))
        return logits


@dataclasses.dataclass
class ModularAddition(Task):
    """(a + b) mod ``modulus`` learned from ``train_fraction`` of the pairs."""

    modulus: int = 97
    train_fraction: float = 0.4
    width: int = 128
    hidden: int = 256
    batch_size: int = 512

    name = "modular-addition"
    steps = 1000
    eval_every = 20
    warmup = 0.02
    schedule = "constant"
    default_lrs = {"adamw": (1e-3, 1e-3), "muon": (0.02, 1e-3), "sgd": (0.1, 1e-3)}
    metrics = ("val_accuracy", "train_accuracy")

    def __post_init__(self) -> None:
        self._check_positive("modulus", "width", "hidden", "batch_size")
        if not 0 < self.train_fraction < 1:
            raise ValueError(
                f"modular-addition: option train_fraction={self.train_fraction!r} must be in (0, 1)"
            )
        if self.modulus < 2:
            raise ValueError(f"modular-addition: option modulus={self.modulus} must be >= 2")

    def setup(self, device: torch.device) -> None:
        p = self.modulus
        a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        pairs = torch.stack([a.flatten(), b.flatten()], dim=1)
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0))
        pairs = pairs[order]
        labels = pairs.sum(1) % p
        cut = max(1, min(len(pairs) - 1, round(self.train_fraction * len(pairs))))
        self.train_x, self.train_y = pairs[:cut].to(device), labels[:cut].to(device)
        self.val_x, self.val_y = pairs[cut:].to(device), labels[cut:].to(device)
        self.device = device

    def build_model(self) -> nn.Module:
        return AdditionMLP(self.modulus, self.width, self.hidden).to(self.device)

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
        train_logits = model(self.train_x)
        return {
            "val_loss": F.cross_entropy(logits, self.val_y).item(),
            "val_accuracy": (logits.argmax(-1) == self.val_y).float().mean().item(),
            "train_accuracy": (train_logits.argmax(-1) == self.train_y).float().mean().item(),
        }

    def run_summary(self, curve: dict[str, list[float]]) -> dict[str, Any]:
        return {"step_to_95": first_step_reaching(curve, "val_accuracy", 0.95)}
