"""Stage 1 shared by the family: EMA momentum (plain or Nesterov), optionally stored in 8 bits.

``MomentumAlgorithm`` is the base of every member with a momentum buffer. It owns the options
every such preset shares: lr, momentum, nesterov, weight_decay, cautious_weight_decay and
momentum_8bit (block-wise int8 state, see quantize.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .batching import uses_distributed
from .checks import check_flag, check_nonnegative, check_unit_interval
from .quantize import dequantize, quantize, quantized_zeros
from .registry import Algorithm, Group, State

__all__ = ["MOMENTUM_DEFAULTS", "MomentumAlgorithm", "lerp_all"]

#: The keys every momentum member reads (its own defaults override the values).
MOMENTUM_DEFAULTS: dict[str, Any] = {
    "lr": 0.02,
    "momentum": 0.95,
    "nesterov": True,
    "weight_decay": 0.0,
    "cautious_weight_decay": False,
    "momentum_8bit": False,
}


class MomentumAlgorithm(Algorithm):
    """EMA momentum M <- beta M + (1 - beta) G; the direction is M, or with Nesterov
    (1 - beta) G + beta M.

    With ``momentum_8bit=True`` M is kept as int8 codes plus one float32 scale per block of
    256 entries: each step dequantizes M, updates it in float32, uses that M and stores it
    quantized again (arXiv 2509.23106). With momentum = 0 at construction no buffer is kept
    (the direction is G) until momentum becomes positive (e.g. under a scheduler).

    References: Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and
    Non-Riemannian Manifolds" (2025), Alg. 1 (M update); arXiv 2509.23106.
    """

    defaults: Mapping[str, Any] = MOMENTUM_DEFAULTS

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        check_nonnegative(who, f"{prefix}lr", hp["lr"], self.defaults["lr"])
        check_unit_interval(who, f"{prefix}momentum", hp["momentum"], self.defaults["momentum"])
        for key in ("nesterov", "cautious_weight_decay", "momentum_8bit"):
            check_flag(who, f"{prefix}{key}", hp[key])
        check_nonnegative(who, f"{prefix}weight_decay", hp["weight_decay"], 0.0)

    def init_state(self, p: torch.Tensor, group: Group) -> State:
        if group["momentum"] == 0:
            return {}
        return self.momentum_state(p, group)

    def momentum_state(self, p: torch.Tensor, group: Group) -> dict[str, torch.Tensor]:
        """The zero momentum buffer of p: float (p's dtype) or 8-bit codes and scales."""
        if group["momentum_8bit"]:
            q = quantized_zeros(p)
            return {"momentum_codes": q["codes"], "momentum_absmax": q["absmax"]}
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def update_momentum(
        self, grads: list[torch.Tensor], states: list[State], group: Group, beta: float
    ) -> list[torch.Tensor]:
        """M <- beta M + (1 - beta) G for every parameter; returns the new M (float).

        Float buffers are updated in place (and returned); 8-bit ones are dequantized,
        updated and stored again, and the float value before storing is returned."""
        if group["momentum_8bit"]:
            out: list[torch.Tensor] = []
            for g, state in zip(grads, states, strict=True):
                if "momentum_codes" not in state:
                    state.update(self.momentum_state(g, group))
                codes, absmax = state["momentum_codes"], state["momentum_absmax"]
                m = dequantize(codes, absmax, g).lerp_(g, 1.0 - beta)
                quantize(m, codes, absmax)
                out.append(m)
            return out
        for g, state in zip(grads, states, strict=True):
            if "momentum_buffer" not in state:
                state.update(self.momentum_state(g, group))
        buffers = [s["momentum_buffer"] for s in states]
        torch._foreach_lerp_(buffers, grads, 1.0 - beta)
        return buffers

    def accumulate(
        self, grads: list[torch.Tensor], states: list[State], group: Group
    ) -> list[torch.Tensor]:
        beta = group["momentum"]
        if beta == 0:
            return list(grads)
        buffers = self.update_momentum(grads, states, group, beta)
        if not group["nesterov"]:
            return buffers
        return lerp_all(grads, buffers, beta)


def lerp_all(
    starts: list[torch.Tensor], ends: list[torch.Tensor], weight: float
) -> list[torch.Tensor]:
    """New tensors (1 - weight) start + weight end: one foreach lerp, or for DTensors (which
    have no rule for the out-of-place foreach lerp, torch 2.11) a foreach mul and add."""
    if not uses_distributed(starts):
        return list(torch._foreach_lerp(starts, ends, weight))  # foreach returns a tuple
    out = list(torch._foreach_mul(starts, 1.0 - weight))
    torch._foreach_add_(out, ends, alpha=weight)
    return out
