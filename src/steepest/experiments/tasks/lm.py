"""The shared part of the language-model tasks: a small GPT trained on windows of one token
stream, scored by the mean next-token cross-entropy over fixed validation windows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from steepest.experiments.gpt import GPT, GPTConfig
from steepest.experiments.tasks.base import Task


class GPTTask(Task):
    """Base of the GPT tasks; a subclass declares the fields ``context``, ``layers``, ``heads``,
    ``width``, ``batch_size``, ``eval_windows`` and calls ``set_streams`` in ``setup``."""

    # declared here for the type checker; the subclass's dataclass fields set them
    context: int
    layers: int
    heads: int
    width: int
    batch_size: int
    eval_windows: int

    def set_streams(
        self, train: torch.Tensor, val: torch.Tensor, vocab_size: int, device: torch.device
    ) -> None:
        """Keep the training stream and cut ``eval_windows`` evenly spaced validation windows."""
        self.vocab_size = vocab_size
        self.train_data = train.to(device)
        span = self.context + 1
        starts = torch.linspace(0, len(val) - span, self.eval_windows).long()
        self.val_windows = torch.stack([val[s : s + span] for s in starts]).to(device)
        self.device = device

    def build_model(self) -> nn.Module:
        cfg = GPTConfig(self.vocab_size, self.context, self.layers, self.heads, self.width)
        return GPT(cfg).to(self.device)

    def routing(self) -> dict[str, Any]:
        """Q, K and V of the fused ``qkv`` weight are three matrices for the matrix rule."""
        return {"blocks": {"*.qkv.weight": [self.width] * 3}}

    def batches(self, seed: int) -> Iterator[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        span = self.context + 1
        offsets = torch.arange(span)
        while True:
            starts = torch.randint(len(self.train_data) - span, (self.batch_size,), generator=gen)
            yield self.train_data[(starts[:, None] + offsets).to(self.device)]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        logits = model(batch[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        chunks = torch.split(self.val_windows, 64)
        total = sum(self.loss(model, w).item() * len(w) for w in chunks)
        return {"val_loss": total / len(self.val_windows)}
