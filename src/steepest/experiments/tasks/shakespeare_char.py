"""``shakespeare-char``: a small character-level GPT on tiny-shakespeare; metric validation loss.

The corpus (1,115,394 characters, shipped in :mod:`steepest.data`) is split 90/10 into a train
and a validation part, in order. Training batches are random windows of the train part drawn
by a generator seeded with the run's seed; the validation loss is the mean next-character
cross-entropy (nats) over ``eval_windows`` fixed, evenly spaced windows of the validation part.

Defaults (a 4 x 128 GPT, 64-character context, 32 sequences: 2,048 tokens per step, 300 steps,
5% warmup then cosine) see 0.61 of an epoch of the 1.0M training characters, so the run does
not overfit, and ``steepest compare`` (AdamW and Muon, 2 seeds) takes under two minutes on two
CPU cores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch
from torch.nn import functional as F

from steepest.data import load_shakespeare
from steepest.experiments.gpt import GPT, GPTConfig
from steepest.experiments.tasks.base import Task

__all__ = ["ShakespeareChar"]


@dataclasses.dataclass
class ShakespeareChar(Task):
    """Char GPT on tiny-shakespeare (``layers`` x ``width``, ``context`` characters)."""

    layers: int = 4
    width: int = 128
    heads: int = 4
    context: int = 64
    batch_size: int = 32
    eval_windows: int = 128

    name = "shakespeare-char"
    steps = 300
    eval_every = 15
    warmup = 0.05
    schedule = "cosine"
    # Measured on 2 CPU cores, 300 steps: AdamW lr 1.5e-3 / 3e-3 / 6e-3 / 1.2e-2 -> best val loss
    # 2.302 / 2.262 / 2.483 / 2.614; Muon (spectral scale) 0.015 / 0.03 / 0.06 / 0.12 -> 1.908 /
    # 1.878 / 1.952 / 2.291, with AdamW 3e-3 on embeddings, head and vectors.
    default_lrs = {"adamw": (3e-3, 3e-3), "muon": (0.03, 3e-3), "sgd": (0.3, 3e-3)}
    metrics = ()

    def __post_init__(self):
        self._check_positive("layers", "width", "heads", "context", "batch_size", "eval_windows")

    def setup(self, device):
        text = load_shakespeare()
        chars = sorted(set(text))
        lookup = {c: i for i, c in enumerate(chars)}
        data = torch.tensor([lookup[c] for c in text], dtype=torch.long)
        cut = int(0.9 * len(data))
        self.vocab_size = len(chars)
        self.train_data = data[:cut].to(device)
        val = data[cut:]
        span = self.context + 1
        starts = torch.linspace(0, len(val) - span, self.eval_windows).long()
        self.val_windows = torch.stack([val[s : s + span] for s in starts]).to(device)
        self.device = device

    def build_model(self):
        cfg = GPTConfig(self.vocab_size, self.context, self.layers, self.heads, self.width)
        return GPT(cfg).to(self.device)

    def routing(self):
        """Q, K and V of the fused ``qkv`` weight are three matrices for the matrix rule."""
        return {"blocks": {"*.qkv.weight": [self.width] * 3}}

    def batches(self, seed) -> Iterator[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        span = self.context + 1
        offsets = torch.arange(span)
        while True:
            starts = torch.randint(len(self.train_data) - span, (self.batch_size,), generator=gen)
            yield self.train_data[(starts[:, None] + offsets).to(self.device)]

    def loss(self, model, batch):
        logits = model(batch[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())

    @torch.no_grad()
    def evaluate(self, model):
        losses = [self.loss(model, w) for w in self.val_windows.split(64)]
        sizes = [len(w) for w in self.val_windows.split(64)]
        val = sum(loss.item() * n for loss, n in zip(losses, sizes, strict=True)) / sum(sizes)
        return {"val_loss": val}
