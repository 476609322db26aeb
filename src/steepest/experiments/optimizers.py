"""The one place where the experiments build optimizers.

Every optimizer in a comparison is "a rule for the hidden matrices + the same AdamW on the rest"
(embeddings, head, vectors), so that only the matrix rule differs between runs:

* ``adamw``: AdamW on the matrices too, with its own learning rate ``lr``;
* ``muon``: :class:`steepest.Muon` on the matrices (seeds/000_0ff94013880c6450.txt, Alg. 1),
  ``scale="spectral"`` (Condition 1), Polar Express msign, Nesterov momentum 0.95;
* ``sgd``: plain gradient descent on the matrices (seed 004's GD baseline).

The matrices are those :func:`steepest.param_groups` routes to "muon"; a task passes its
routing options (e.g. the row blocks of a fused QKV weight).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import steepest

__all__ = ["OPTIMIZERS", "ADAMW_BETAS", "build_optimizer", "split_parameters"]

OPTIMIZERS = ("adamw", "muon", "sgd")
ADAMW_BETAS = (0.9, 0.95)


def split_parameters(
    model: nn.Module, routing: dict[str, Any] | None = None
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(matrices, rest)``: the parameters ``steepest.param_groups(model, **routing)`` sends to
    "muon" (hidden matrices) and to "adamw" (embeddings, head, vectors)."""
    groups, _report = steepest.param_groups(model, **(routing or {}))
    matrices = [p for g in groups if g["algorithm"] == "muon" for p in g["params"]]
    rest = [p for g in groups if g["algorithm"] != "muon" for p in g["params"]]
    return matrices, rest


def build_optimizer(
    name: str,
    model: nn.Module,
    lr: float,
    adamw_lr: float,
    *,
    weight_decay: float = 0.0,
    routing: dict[str, Any] | None = None,
) -> list[torch.optim.Optimizer]:
    """Build the optimizer(s) of one run; step every one of them each iteration.

    Args:
        name: one of :data:`OPTIMIZERS`.
        model: the model to train.
        lr: learning rate of the matrix rule.
        adamw_lr: learning rate of the AdamW groups (embeddings, head, vectors), the same
            setting for every ``name``; AdamW betas :data:`ADAMW_BETAS`.
        weight_decay: decoupled weight decay, on the matrices and on the AdamW groups.
        routing: keyword arguments of :func:`steepest.param_groups`.

    Returns:
        A list of optimizers whose param groups each hold ``"lr"``; a schedule scales them.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer={name!r} is unknown; choose one of {', '.join(OPTIMIZERS)}")
    for arg, value in (("lr", lr), ("adamw_lr", adamw_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"build_optimizer: {arg}={value!r} must be a positive float")
    if name == "muon":
        groups, _report = steepest.param_groups(model, **(routing or {}))
        return [
            steepest.Muon(
                groups,
                lr=lr,
                momentum=0.95,
                nesterov=True,
                weight_decay=weight_decay,
                backend="polar_express",
                scale="spectral",
                adamw_lr=adamw_lr,
                adamw_betas=ADAMW_BETAS,
                adamw_weight_decay=weight_decay,
            )
        ]
    matrices, rest = split_parameters(model, routing)
    adamw_kw = dict(betas=ADAMW_BETAS, weight_decay=weight_decay, foreach=True)
    rest_group = [{"params": rest, "lr": adamw_lr}] if rest else []
    if name == "adamw":
        matrix_group = [{"params": matrices, "lr": lr}] if matrices else []
        return [torch.optim.AdamW(matrix_group + rest_group, lr=lr, **adamw_kw)]
    optimizers: list[torch.optim.Optimizer] = []
    if matrices:
        optimizers.append(torch.optim.SGD(matrices, lr=lr, weight_decay=weight_decay))
    if rest:
        optimizers.append(torch.optim.AdamW(rest_group, lr=adamw_lr, **adamw_kw))
    return optimizers
