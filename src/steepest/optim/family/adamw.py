"""The "adamw" algorithm: torch's own AdamW math for the non-matrix parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.adamw import adamw

from steepest.matrices.views import local_part, local_state

from ..checks import check_flag, check_nonnegative, check_unit_interval
from ..precision import work_dtype
from ..registry import Algorithm, register

__all__ = ["AdamWAlgorithm"]


class AdamWAlgorithm(Algorithm):
    """Delegates to ``torch.optim.adamw.adamw`` (foreach or fused as torch chooses).

    Math: decoupled AdamW, identical to ``torch.optim.AdamW`` with the same hyperparameters
    for float32 and float64 parameters. For float16 and bfloat16 parameters the moments are
    kept in float32 and the step runs on a float32 copy of the parameter and gradient, cast
    back once at the end: in float16, (1 - beta2) g**2 underflows to 0 and eps=1e-8 rounds to
    0, so torch's float16 AdamW divides by zero (inf, or nan for a zero gradient).
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

    def validate(self, who: str, hp: Mapping[str, Any], prefix: str = "") -> None:
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

    def init_state(self, p: torch.Tensor, group: Mapping[str, Any]) -> dict[str, Any]:
        """step, exp_avg, exp_avg_sq (and max_exp_avg_sq), moments in ``work_dtype(p.dtype)``."""
        if group["fused"]:
            step = torch.zeros((), dtype=torch.float32, device=p.device)
        else:
            default = torch.get_default_dtype()
            step = torch.tensor(  # on the CPU whatever the default device (torch's convention)
                0.0,
                dtype=torch.float64 if default == torch.float64 else torch.float32,
                device="cpu",
            )
        dtype = work_dtype(p.dtype)
        state = {
            "step": step,
            "exp_avg": torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format),
        }
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(
                p, dtype=dtype, memory_format=torch.preserve_format
            )
        return state

    def update(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[dict[str, Any]],
        group: Mapping[str, Any],
    ) -> None:
        """One AdamW step; 16-bit parameters step on float32 copies, cast back once. DTensors
        step as their local parts where that is the same step (``_local_parts``)."""
        params, grads, states = _local_parts(params, grads, states)
        same = [i for i, s in enumerate(states) if s["exp_avg"].dtype == params[i].dtype]
        widened = [i for i, s in enumerate(states) if s["exp_avg"].dtype != params[i].dtype]
        if same:
            _adamw(
                [params[i] for i in same],
                [grads[i] for i in same],
                [states[i] for i in same],
                group,
            )
        if widened:
            targets = [params[i] for i in widened]
            copies = [params[i].to(states[i]["exp_avg"].dtype) for i in widened]
            wide_grads = [grads[i].to(states[i]["exp_avg"].dtype) for i in widened]
            _adamw(copies, wide_grads, [states[i] for i in widened], group)
            torch._foreach_copy_(targets, copies)


def _local_parts(
    params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict[str, Any]]
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[dict[str, Any]]]:
    """The local parts of the parameters, gradients and moments when every one is a DTensor
    laid out as its parameter is and none is a pending sum (Partial): AdamW is elementwise,
    so each rank stepping its part in place is the step DTensor's dispatch would run, without
    that dispatch's host time per tensor (FSDP2's Shard(0) parameters and gradients);
    otherwise the tensors themselves."""
    for p, g, s in zip(params, grads, states, strict=True):
        layout = _layout(p)
        if layout is None or any(q.is_partial() for q in layout[1]):
            return params, grads, states
        moments = [v for v in s.values() if isinstance(v, torch.Tensor) and v.ndim]
        if any(_layout(t) != layout or t.shape != p.shape for t in (g, *moments)):
            return params, grads, states
    local_states = [local_state(s) for s in states]
    return [local_part(p) for p in params], [local_part(g) for g in grads], local_states


def _layout(t: torch.Tensor) -> tuple[Any, Any] | None:
    """A DTensor's (device mesh, placements); None for a plain tensor."""
    placements = getattr(t, "placements", None)
    return None if placements is None else (getattr(t, "device_mesh", None), placements)


def _adamw(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    states: list[dict[str, Any]],
    group: Mapping[str, Any],
) -> None:
    """torch's functional AdamW on tensors whose state has their dtype."""
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
