"""Block-wise 8-bit linear quantization of optimizer state (momentum buffers).

A tensor is flattened and cut into blocks of ``BLOCK`` entries (the last one may be shorter);
each block keeps one float32 scale (its largest magnitude) and int8 codes
round(127 x / absmax). Storage is 1 byte per entry plus 4 bytes per block: 1 + 4 / 256 bytes,
about 25.4% of float32 (at most 25% + 4 bytes).

References: arXiv 2509.23106 (Gupta et al., Effective Quantization of Muon Optimizer States:
8-bit Muon with block-wise linear quantization).
"""

from __future__ import annotations

import math
from typing import Final

import torch

__all__ = ["BLOCK", "dequantize", "quantize", "quantized_zeros"]

#: Entries per quantization block.
BLOCK: Final = 256
_LEVELS: Final = 127.0


def _blocks(numel: int) -> int:
    return max(1, math.ceil(numel / BLOCK))


def quantized_zeros(p: torch.Tensor) -> dict[str, torch.Tensor]:
    """The state entries of an all-zero quantized buffer shaped like p."""
    blocks = _blocks(p.numel())
    return {
        "codes": torch.zeros(p.numel(), dtype=torch.int8, device=p.device),
        "absmax": torch.zeros(blocks, dtype=torch.float32, device=p.device),
    }


def quantize(x: torch.Tensor, codes: torch.Tensor, absmax: torch.Tensor) -> None:
    """Write x into (codes, absmax) in place: absmax_b = max |x| of block b,
    codes = round(127 x / absmax_b) (zero blocks stay zero)."""
    flat = torch.zeros(absmax.numel() * BLOCK, dtype=torch.float32, device=x.device)
    flat[: x.numel()] = x.reshape(-1).float()
    blocks = flat.view(-1, BLOCK)
    absmax.copy_(blocks.abs().amax(dim=1))
    safe = torch.where(absmax > 0, absmax, 1.0).unsqueeze(1)
    scaled = torch.round(blocks / safe * _LEVELS).view(-1)[: codes.numel()]
    codes.copy_(scaled.to(torch.int8))


def dequantize(codes: torch.Tensor, absmax: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The tensor of like's shape and dtype stored in (codes, absmax)."""
    flat = torch.zeros(absmax.numel() * BLOCK, dtype=torch.float32, device=codes.device)
    flat[: codes.numel()] = codes.float()
    blocks = flat.view(-1, BLOCK) * (absmax.unsqueeze(1) / _LEVELS)
    return blocks.view(-1)[: like.numel()].view(like.shape).to(like.dtype)
