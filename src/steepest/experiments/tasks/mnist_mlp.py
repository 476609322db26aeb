"""``mnist-mlp``: Shen et al.'s 784-128-64-10 MLP on the MNIST test split; held-out loss, accuracy.

The 10,000 images of the MNIST test split (shipped in :mod:`steepest.data`) are shuffled once
with a fixed generator and split into ``train_size`` training and the rest held-out examples.
Pixels are scaled to [0, 1] and standardized with the training mean and std. The model has the
three matrix parameters W1 (128 x 784), W2 (64 x 128), W3 (10 x 64) and no biases, with ReLU.

References:
    Shen et al., "On the Convergence Analysis of Muon", arXiv 2505.23737, Fig. 3 (the MLP
    with W1, W2, W3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from steepest.data import load_mnist
from steepest.experiments.tasks.base import Task

__all__ = ["MnistMLP"]


@dataclasses.dataclass
class MnistMLP(Task):
    """784-128-64-10 ReLU MLP without biases on MNIST (test split, train / held-out)."""

    train_size: int = 8000
    batch_size: int = 128

    name = "mnist-mlp"
    steps = 300
    eval_every = 10
    warmup = 0.0
    schedule = "cosine"
    # Tuned with `steepest compare --task mnist-mlp --optimizers adamw,muon,sgd --tune --seeds 3`
    # (2 CPU cores): matrix lrs 6e-3, 0.025, 0.8; the AdamW head lr is shared at 3e-3.
    default_lrs = {"adamw": (6e-3, 3e-3), "muon": (0.025, 3e-3), "sgd": (0.8, 3e-3)}
    metrics = ("val_accuracy",)

    def __post_init__(self) -> None:
        self._check_positive("train_size", "batch_size")
        if self.train_size >= 10_000:
            raise ValueError(
                f"mnist-mlp: option train_size={self.train_size} must be < 10000 "
                "(the rest is held out)"
            )

    def setup(self, device: torch.device) -> None:
        images, labels = load_mnist()
        x = torch.from_numpy(images.reshape(len(images), -1).astype("float32") / 255.0)
        y = torch.from_numpy(labels.astype("int64"))
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        x, y = x[order], y[order]
        cut = self.train_size
        mean, std = x[:cut].mean(), x[:cut].std()
        x = (x - mean) / std
        self.train_x, self.train_y = x[:cut].to(device), y[:cut].to(device)
        self.val_x, self.val_y = x[cut:].to(device), y[cut:].to(device)
        self.device = device

    def build_model(self) -> nn.Module:
        return nn.Sequential(
            nn.Linear(784, 128, bias=False),
            nn.ReLU(),
            nn.Linear(128, 64, bias=False),
            nn.ReLU(),
            nn.Linear(64, 10, bias=False),
        ).to(self.device)

    def batches(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        n = len(self.train_x)
        while True:  # epochs of a fresh permutation, cut into batches (last partial one dropped)
            order = torch.randperm(n, generator=gen).to(self.device)
            for i in range(0, n - self.batch_size + 1, self.batch_size):
                idx = order[i : i + self.batch_size]
                yield self.train_x[idx], self.train_y[idx]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        logits = model(self.val_x)
        loss = F.cross_entropy(logits, self.val_y).item()
        accuracy = (logits.argmax(-1) == self.val_y).float().mean().item()
        return {"val_loss": loss, "val_accuracy": accuracy}
