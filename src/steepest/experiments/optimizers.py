"""The one place where the experiments build optimizers.

Every optimizer in a comparison is "a rule for the hidden matrices + the same AdamW on the rest"
(embeddings, head, vectors), so that only the matrix rule differs between runs. The rest is
always one ``torch.optim.AdamW`` with betas :data:`ADAMW_BETAS` and learning rate ``adamw_lr``;
the matrices get the member's rule:

* ``adamw``: AdamW on the matrices too, with its own learning rate ``lr`` (one optimizer);
* ``sgd``: plain gradient descent (the GD baseline of Shen et al., arXiv 2505.23737,
  ``torch.optim.SGD``);
* every other member: a :func:`steepest.optimizer` preset on the matrices, with the fixed
  options of its :class:`Member` entry in :data:`OPTIMIZERS` (see docs/algorithms.md).

The matrices are those :func:`steepest.param_groups` routes to "muon"; a task passes its
routing options (e.g. the row blocks of a fused QKV weight). Members whose rule does not take
row blocks (normuon, shampoo, soap) see a fused weight as one matrix.

Scion: the member is constrained Scion (SCG, weight decay 1, ball of radius 10 in the
RMS-to-RMS spectral norm) on the hidden matrices only. The radius was picked from {1, 3, 10} on
mnist-mlp (lr 0.025, 300 steps, a seed the comparisons do not use): best held-out loss 0.285,
0.118, 0.106; ``--tune`` tunes only the learning rates. ``steepest.scion_groups`` is not used:
it also gives the embedding (ColNorm), the head (Sign) and the vectors (RMS) Scion's rule, which
would change the rule on the parameters that every member trains with the same AdamW.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Final

import torch
from torch import nn

import steepest

__all__ = [
    "ADAMW_BETAS",
    "DEFAULT_ADAMW_LR",
    "Member",
    "OPTIMIZERS",
    "build_optimizer",
    "default_lrs",
    "split_parameters",
]

ADAMW_BETAS: Final = (0.9, 0.95)
#: the AdamW groups' learning rate on a task that names none
DEFAULT_ADAMW_LR: Final = 3e-3


@dataclasses.dataclass(frozen=True)
class Member:
    """One optimizer of a comparison: the rule on the hidden matrices.

    Attributes:
        summary: one line for the help text and the docs.
        default_lr: the matrix learning rate on a task that gives none (nor for ``like``).
        preset: the :func:`steepest.optimizer` name, or ``None`` for ``adamw`` and ``sgd``.
        options: fixed hyperparameters of the preset (besides ``lr`` and ``weight_decay``).
        like: on a task with no learning rate for this member, start from the task's
            learning rate for ``like`` times ``ratio`` (the members' update sizes differ by a
            roughly task-independent factor, so this is a better grid centre than a constant).
        ratio: see ``like``.
        blocks: whether the rule takes the routing's row blocks (a fused QKV weight split
            into Q, K, V); if not, a fused weight is one matrix.
    """

    summary: str
    default_lr: float
    preset: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    like: str | None = None
    ratio: float = 1.0
    blocks: bool = True


#: name -> member, in the order of the docs' tables
OPTIMIZERS: Final[dict[str, Member]] = {
    "adamw": Member("AdamW on the matrices too (the reference)", 3e-3),
    "muon": Member(
        "Muon: Nesterov 0.95, Polar Express msign, spectral scale",
        0.02,
        "muon",
        {"momentum": 0.95, "nesterov": True, "backend": "polar_express", "scale": "spectral"},
    ),
    "sgd": Member("plain gradient descent (Shen et al.'s GD)", 0.3),
    "normuon": Member(
        "NorMuon: msign + per-neuron second moment, RMS 0.2",
        3e-3,
        "normuon",
        {},
        "adamw",
        1.0,
        blocks=False,
    ),
    "scion": Member(
        "constrained Scion (SCG), spectral norm in RMS units, radius 10",
        0.02,
        "scion",
        {"norm": "spectral", "radius": 10.0, "weight_decay": 1.0},
        "muon",
        1.0,
    ),
    "uscion": Member(
        "unconstrained Scion (uSCG), spectral norm in RMS units, radius 1",
        0.02,
        "uscion",
        {"norm": "spectral", "radius": 1.0},
        "muon",
        1.0,
    ),
    "specgd": Member(
        "spectral GD: exact-SVD U V^T, no momentum", 0.02, "specgd", {"backend": "svd"}, "muon", 1.0
    ),
    "schatten-p4": Member(
        "Schatten-4 dualizer, Nesterov 0.95", 0.06, "schatten", {"p": 4.0}, "muon", 3.0
    ),
    "signum": Member("sign of the momentum (0.9)", 1e-3, "signum", {}, "adamw", 0.3),
    "lion": Member("Lion (0.9, 0.99)", 1e-3, "lion", {}, "adamw", 0.3),
    "shampoo": Member(
        "Shampoo L^-1/4 G R^-1/4, roots every 10 steps, spectral scale",
        0.02,
        "shampoo",
        {"precondition_every": 10},
        "muon",
        1.0,
        blocks=False,
    ),
    "soap": Member(
        "SOAP: Adam in Shampoo's eigenbasis (every 10 steps)",
        3e-3,
        "soap",
        {},
        "adamw",
        1.0,
        blocks=False,
    ),
    "polargrad": Member(
        "PolarGrad: nuclear norm times msign of the momentum (0.9)",
        3e-3,
        "polargrad",
        {},
        "sgd",
        0.02,
    ),
    "mars_muon": Member(
        "MARS-M: variance-corrected, clipped gradient into Muon (gamma 0.025), RMS 0.2",
        3e-3,
        "mars_muon",
        {},
        "adamw",
        1.0,
    ),
    "adamuon": Member(
        "AdaMuon: msign(sign(M)), element-wise second moment, update RMS 0.2",
        3e-3,
        "adamuon",
        {},
        "adamw",
        1.0,
    ),
    "dion": Member(
        "Dion: full-rank power iteration with error feedback (0.95), spectral scale",
        0.02,
        "dion",
        {},
        "muon",
        1.0,
    ),
    "psgd_kron": Member(
        "PSGD-Kron: Kronecker factors fitted to whiten the momentum (0.9), update RMS <= 1.1",
        3e-3,
        "psgd_kron",
        {},
        "adamw",
        1.0,
    ),
}


def default_lrs(name: str, task_lrs: Mapping[str, tuple[float, float]]) -> tuple[float, float]:
    """``(lr, adamw_lr)`` of member ``name`` on a task whose own defaults are ``task_lrs``.

    The task's pair for ``name`` if it has one; else the matrix lr is the task's lr for the
    member's ``like`` times its ``ratio`` (or its ``default_lr``), and the AdamW groups' lr is the
    task's AdamW-groups lr of ``adamw`` (or :data:`DEFAULT_ADAMW_LR`).

    Raises:
        ValueError: unknown ``name``.
    """
    member = _member(name)
    if name in task_lrs:
        return task_lrs[name]
    adamw_lr = task_lrs["adamw"][1] if "adamw" in task_lrs else DEFAULT_ADAMW_LR
    if member.like is not None and member.like in task_lrs:
        return task_lrs[member.like][0] * member.ratio, adamw_lr
    return member.default_lr, adamw_lr


def split_parameters(
    model: nn.Module, routing: dict[str, Any] | None = None
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(matrices, rest)``: the parameters ``steepest.param_groups(model, **routing)`` sends to
    "muon" (hidden matrices) and to "adamw" (embeddings, head, vectors)."""
    matrix_groups, rest = _route(model, routing)
    return [p for g in matrix_groups for p in g["params"]], rest


def _route(
    model: nn.Module, routing: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[nn.Parameter]]:
    """The matrix param groups (with their routing keys) and the rest's parameters."""
    groups, _report = steepest.param_groups(model, **(routing or {}))
    matrix_groups = [g for g in groups if g["algorithm"] == "muon"]
    rest = [p for g in groups if g["algorithm"] != "muon" for p in g["params"]]
    return matrix_groups, rest


def _member(name: str) -> Member:
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"optimizer={name!r} is unknown; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def build_optimizer(
    name: str,
    model: nn.Module,
    lr: float,
    adamw_lr: float,
    *,
    weight_decay: float = 0.0,
    adamw_betas: tuple[float, float] = ADAMW_BETAS,
    routing: dict[str, Any] | None = None,
) -> list[torch.optim.Optimizer]:
    """Build the optimizer(s) of one run; step every one of them each iteration.

    Args:
        name: one of :data:`OPTIMIZERS`.
        model: the model to train.
        lr: learning rate of the matrix rule.
        adamw_lr: learning rate of the AdamW groups (embeddings, head, vectors), the same
            setting for every ``name``; AdamW betas :data:`ADAMW_BETAS`.
        weight_decay: decoupled weight decay, on the matrices and on the AdamW groups (except
            scion's matrices, whose constrained form fixes it at 1).
        adamw_betas: the AdamW's ``(beta1, beta2)``, each in [0, 1).
        routing: keyword arguments of :func:`steepest.param_groups`.

    On CUDA the torch AdamWs are fused and steepest's presets run their fast path
    (``compile=True, cuda_graph=True``) without the finiteness check, as the torch optimizers.

    Returns:
        A list of optimizers whose param groups each hold ``"lr"``; a schedule scales them.
        The AdamW on the rest, if the model has a rest, is the last one.

    Raises:
        ValueError: unknown ``name``, or a learning rate or weight decay that is not a
            positive (weight decay: non-negative) finite float.
    """
    member = _member(name)
    for arg, value in (("lr", lr), ("adamw_lr", adamw_lr), ("weight_decay", weight_decay)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"build_optimizer: {arg}={value!r} must be a float")
        if not math.isfinite(value) or value < 0 or (value == 0 and arg != "weight_decay"):
            allowed = "non-negative" if arg == "weight_decay" else "positive"
            raise ValueError(f"build_optimizer: {arg}={value!r} must be a {allowed} finite float")
    if len(adamw_betas) != 2 or not all(0 <= b < 1 for b in adamw_betas):
        raise ValueError(
            f"build_optimizer: adamw_betas={adamw_betas!r} must be two floats in [0, 1)"
        )
    matrix_groups, rest = _route(model, routing)
    matrices = [p for g in matrix_groups for p in g["params"]]
    on_gpu = any(p.is_cuda for p in model.parameters())
    adamw_kw: dict[str, Any] = {"betas": tuple(adamw_betas), "weight_decay": weight_decay}
    adamw_kw.update({"fused": True} if on_gpu else {"foreach": True})
    rest_group = [{"params": rest, "lr": adamw_lr}] if rest else []
    if name == "adamw":
        matrix_group = [{"params": matrices, "lr": lr}] if matrices else []
        return [torch.optim.AdamW(matrix_group + rest_group, lr=lr, **adamw_kw)]
    optimizers: list[torch.optim.Optimizer] = []
    if matrices and name == "sgd":
        optimizers.append(torch.optim.SGD(matrices, lr=lr, weight_decay=weight_decay))
    elif matrices:
        assert member.preset is not None
        if not member.blocks:
            matrix_groups = [{**g, "blocks": None} for g in matrix_groups]
        hyper = {"weight_decay": weight_decay, **member.options, "lr": lr}
        if on_gpu:  # the GPU fast path; no finiteness check, as the torch optimizers here
            hyper.update(compile=True, cuda_graph=True, nonfinite="ignore")
        optimizers.append(steepest.optimizer(member.preset, matrix_groups, **hyper))
    if rest:
        optimizers.append(torch.optim.AdamW(rest_group, lr=adamw_lr, **adamw_kw))
    return optimizers
