"""A small GPT (decoder-only transformer) for the language-model tasks.

Pre-norm blocks of causal self-attention and a 4x GELU MLP, learned position embeddings and an
untied ``lm_head``, so that routing sees hidden matrices (``qkv``, ``proj``, ``fc``, ``out``) apart
from the embeddings and the head. No dropout: a training step draws no random numbers, so the data
order and the initialization alone fix a run.

References:
    Radford et al., "Language models are unsupervised multitask learners" (GPT-2), 2019.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["GPTConfig", "GPT"]


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of a :class:`GPT`: vocabulary, context length, layers, heads and width."""

    vocab_size: int = 65
    context: int = 64
    layers: int = 4
    heads: int = 4
    width: int = 128

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context", "layers", "heads", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig: {name}={value!r} must be a positive int")
        if self.width % self.heads:
            raise ValueError(
                f"GPTConfig: width={self.width} must be divisible by heads={self.heads}"
            )


class _Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(cfg.width)
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width, bias=False)
        self.proj = nn.Linear(cfg.width, cfg.width, bias=False)
        self.ln2 = nn.LayerNorm(cfg.width)
        self.fc = nn.Linear(cfg.width, 4 * cfg.width, bias=False)
        self.out = nn.Linear(4 * cfg.width, cfg.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=-1)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        mlp: torch.Tensor = self.out(F.gelu(self.fc(self.ln2(x))))
        return x + mlp


class GPT(nn.Module):
    """Decoder-only transformer: ``tokens (B, T) -> logits (B, T, vocab)``.

    Init: N(0, 0.02) for embeddings and matrices, N(0, 0.02 / sqrt(2 * layers)) for the residual
    projections (``proj``, ``out``), as in GPT-2.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos_emb = nn.Embedding(cfg.context, cfg.width)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.width)
        self.lm_head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                residual = name.endswith(("proj.weight", "out.weight"))
                std = 0.02 / math.sqrt(2 * cfg.layers) if residual else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.cfg.context:
            raise ValueError(f"GPT: sequence length {t} exceeds context={self.cfg.context}")
        pos = torch.arange(t, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.lm_head(self.ln_f(x))
        return logits
