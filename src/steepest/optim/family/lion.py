"""The "lion" member: the sign of an interpolated momentum (Chen et al. 2023)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from steepest.norms import Norm, Sign

from ..checks import check_flag, check_nonnegative, check_unit_interval
from ..momentum import MomentumAlgorithm, lerp_all
from ..presets import Preset, preset
from ..quantize import dequantize
from ..registry import Group, State, register

__all__ = ["Lion", "LionAlgorithm"]


class LionAlgorithm(MomentumAlgorithm):
    """Lion: u = sign(beta1 M + (1 - beta1) G); then M <- beta2 M + (1 - beta2) G.

    W <- (1 - lr wd) W - lr u. Elementwise, so vectors are updated too. Group keys: lr,
    betas, weight_decay, cautious_weight_decay, momentum_8bit.

    References: arXiv 2302.06675 (Chen et al., Symbolic Discovery of Optimization
    Algorithms), Program 1; defaults lr 1e-4, betas (0.9, 0.99).
    """

    name = "lion"
    vectors = True
    defaults: Mapping[str, Any] = {
        "lr": 1e-4,
        "betas": (0.9, 0.99),
        "weight_decay": 0.0,
        "cautious_weight_decay": False,
        "momentum_8bit": False,
    }

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        check_nonnegative(who, f"{prefix}lr", hp["lr"], 1e-4)
        betas = hp["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"{who}: {prefix}betas={betas!r} must be a pair; try (0.9, 0.99)")
        check_unit_interval(who, f"{prefix}betas[0]", betas[0], 0.9)
        check_unit_interval(who, f"{prefix}betas[1]", betas[1], 0.99)
        check_nonnegative(who, f"{prefix}weight_decay", hp["weight_decay"], 0.0)
        for key in ("cautious_weight_decay", "momentum_8bit"):
            check_flag(who, f"{prefix}{key}", hp[key])

    def init_state(self, p: torch.Tensor, group: Group) -> State:
        return self.momentum_state(p, group)

    def accumulate(
        self, grads: list[torch.Tensor], states: list[State], group: Group
    ) -> list[torch.Tensor]:
        beta1, beta2 = group["betas"]
        if group["momentum_8bit"]:
            olds = [
                dequantize(s["momentum_codes"], s["momentum_absmax"], g)
                for g, s in zip(grads, states, strict=True)
            ]
        else:
            olds = [s["momentum_buffer"] for s in states]
        directions = lerp_all(grads, olds, beta1)
        self.update_momentum(grads, states, group, beta2)
        return directions

    def norm(self, group: Group) -> Norm:
        return Sign()


register(LionAlgorithm())


@preset("lion")
class Lion(Preset):
    """Lion on every parameter."""

    algorithm = "lion"
    vector_algorithm = "lion"
