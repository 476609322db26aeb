"""The "adamw" algorithm: torch's own AdamW math for the non-matrix parameters."""

from __future__ import annotations

import torch
from torch.optim.adamw import adamw

from .checks import check_flag, check_nonnegative, check_unit_interval
from .registry import Algorithm, register

__all__ = ["AdamWAlgorithm"]


class AdamWAlgorithm(Algorithm):
    """Delegates to ``torch.optim.adamw.adamw`` (foreach or fused as torch chooses).

    Math: decoupled AdamW, identical to ``torch.optim.AdamW`` with the same hyperparameters.
    Group keys: lr, betas, eps, weight_decay, amsgrad, foreach, fused.

    References: arXiv 1711.05101 (Loshchilov & Hutter, Decoupled Weight Decay Regularization).
    """

    name = "adamw"
    matrix = False
    defaults = {
        "lr": 3e-4,
        "betas": (0.9, 0.95),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "amsgrad": False,
        "foreach": None,
        "fused": None,
    }

    def validate(self, who, hp, prefix=""):
        check_nonnegative(who, f"{prefix}lr", hp["lr"], 3e-4)
        betas = hp["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(
                f"{who}: {prefix}betas={betas!r} must be a pair (beta1, beta2); try (0.9, 0.95)"
            )
        check_unit_interval(who, f"{prefix}betas[0]", betas[0], 0.9)
        check_unit_interval(who, f"{prefix}betas[1]", betas[1], 0.95)
        check_nonnegative(who, f"{prefix}eps", hp["eps"], 1e-8)
        check_nonnegative(who, f"{prefix}weight_decay", hp["weight_decay"], 0.0)
        check_flag(who, f"{prefix}amsgrad", hp["amsgrad"])
        for key in ("foreach", "fused"):
            if hp[key] is not None:
                check_flag(who, f"{prefix}{key}", hp[key])

    def init_state(self, p, group):
        if group["fused"]:
            step = torch.zeros((), dtype=torch.float32, device=p.device)
        else:
            default = torch.get_default_dtype()
            step = torch.tensor(
                0.0, dtype=torch.float64 if default == torch.float64 else torch.float32
            )
        state = {
            "step": step,
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
        }
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def update(self, params, grads, states, group):
        beta1, beta2 = group["betas"]
        adamw(
            params,
            grads,
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [],
            [s["step"] for s in states],
            foreach=group["foreach"],
            fused=group["fused"],
            amsgrad=group["amsgrad"],
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )


register(AdamWAlgorithm())
