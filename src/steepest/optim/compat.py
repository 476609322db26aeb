"""torch.optim behaviours of the engine that are not update math: pickling and copying,
the checks a step makes before it writes anything, and the keys that torch's schedulers write.

``TorchOptimBehaviour`` is a mixin of ``Steepest``; each method is one behaviour.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from types import FrameType
from typing import Any, Final

import torch

from .registry import ALGORITHMS

__all__ = [
    "CACHES",
    "HEAD_LIKE_ASPECT",
    "TorchOptimBehaviour",
    "check_param_items",
    "peak_lrs",
    "warn_head_like",
]

#: Attributes of Steepest that only cache work (compiled-step scalars, CUDA streams and graph
#: recordings, prescales, finiteness flags): a pickled or copied optimizer starts them empty.
CACHES = ("graphs", "_scalars", "_streams", "_finite", "_finite_host", "_prescales")


def check_param_items(who: str, items: Sequence[Any]) -> None:
    """Raise TypeError unless every item is a tensor, a (name, tensor) pair or a dict.

    The usual slip, passing ``steepest.param_groups(model)`` (a (groups, report) pair) as
    params, is named with the fix."""
    for i, item in enumerate(items):
        if isinstance(item, (torch.Tensor, dict)):
            continue
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], torch.Tensor):
            continue
        if isinstance(item, list) and all(isinstance(g, dict) for g in item):
            raise TypeError(
                f"{who}: params[{i}] is a list of param groups; steepest.param_groups returns "
                "a (groups, report) pair: unpack it, groups, report = "
                "steepest.param_groups(model), and pass groups"
            )
        raise TypeError(
            f"{who}: params[{i}] is a {type(item).__name__}; pass tensors, (name, tensor) "
            "pairs or param group dicts"
        )


#: A plain 2-D tensor whose long side exceeds this many times its short side looks like an
#: embedding table (vocab, d) or an output head (classes, d); hidden matrices of transformers
#: and MLPs stay within 8 (4 d MLPs, 8/3 d SwiGLU, grouped-query K/V projections).
HEAD_LIKE_ASPECT: Final = 8


def warn_head_like(who: str, members: Sequence[Any], algorithm: str) -> None:
    """Warn once if plain tensors routed to a matrix algorithm look like embeddings or heads.

    ``Muon(model.parameters())`` cannot see modules; ``steepest.param_groups(model)`` can,
    and sends embeddings and heads to AdamW (J. Liu et al., "Muon is Scalable for LLM
    Training", arXiv 2502.16982)."""
    shapes = []
    for m in members:
        t = m[1] if isinstance(m, tuple) else m
        if t.ndim == 2 and max(t.shape) > HEAD_LIKE_ASPECT * max(1, min(t.shape)):
            shapes.append(
                f"{m[0]} {tuple(t.shape)}" if isinstance(m, tuple) else str(tuple(t.shape))
            )
    if shapes:
        listed = ", ".join(shapes[:4]) + (f" and {len(shapes) - 4} more" if len(shapes) > 4 else "")
        warnings.warn(
            f"{who}: tensors {listed} look like embeddings or output heads (one side over "
            f"{HEAD_LIKE_ASPECT}x the other) and go to {algorithm!r} as plain tensors; "
            "steepest.param_groups(model) routes embeddings and heads to AdamW",
            stacklevel=_caller_level(),
        )


def _caller_level() -> int:
    """warnings.warn's stacklevel of the first frame outside this package and torch (the
    user's call)."""
    inside = (
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        os.path.dirname(os.path.abspath(torch.__file__)),
    )
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


class TorchOptimBehaviour:
    """Mixin: pickle / deepcopy, the pre-write dtype check, scheduler momentum keys."""

    param_groups: list[dict[str, Any]]
    #: per param group, the dtypes of its parameters when their state was made
    _group_dtypes: list[list[torch.dtype]]

    def __getstate__(self) -> dict[str, Any]:
        """Every attribute (torch keeps only defaults, state and param_groups, which loses
        the engine's options); caches restart empty and hooks are dropped, as torch does."""
        state = {k: v for k, v in vars(self).items() if not k.startswith("_optimizer_")}
        for key in CACHES:
            if key in state:
                state[key] = type(state[key])()
        return state

    def _before_step(self, who: str) -> None:
        """What a step settles before it reads anything: scheduler keys, then checks."""
        self._take_scheduler_momentum()
        self._warn_shared_max_lr(who)
        self._check_dtypes(who)

    def _names_like_groups(
        self, group: dict[str, Any], tensors: list[torch.Tensor], names: list[str]
    ) -> None:
        """Name a new group's params as the groups already there are (torch refuses to mix
        named and unnamed groups): generated names for an unnamed group added to named
        groups, plain tensors for a named group added to unnamed ones."""
        if not self.param_groups:
            return
        if "param_names" in self.param_groups[0]:
            group["params"] = list(zip(group.pop("param_names", names), tensors, strict=True))
        else:
            group.pop("param_names", None)
            group["params"] = tensors

    def _record_dtypes(self) -> None:
        """Remember the dtypes each group's state was made for."""
        self._group_dtypes = [[p.dtype for p in g["params"]] for g in self.param_groups]

    def _check_dtypes(self, who: str) -> None:
        """Raise TypeError, before any write, if a parameter with a gradient changed dtype
        since its state was made (e.g. ``model.to(torch.bfloat16)`` mid-training)."""
        for index, (group, made) in enumerate(
            zip(self.param_groups, self._group_dtypes, strict=True)
        ):
            if [p.dtype for p in group["params"]] == made:
                continue
            for i, p in enumerate(group["params"]):
                if p.grad is None or p.dtype == made[i]:
                    continue
                names = group.get("param_names")
                name = repr(names[i]) if names else f"param_groups[{index}]['params'][{i}]"
                raise TypeError(
                    f"{who}: {name} (shape {tuple(p.shape)}) is now {p.dtype} but its "
                    f"optimizer state was made for {made[i]} (did the model change dtype, e.g. "
                    "model.to(torch.bfloat16), after the optimizer was built?); nothing was "
                    "updated. Cast the state with optimizer.load_state_dict("
                    "optimizer.state_dict()), or build the optimizer after converting the model"
                )

    def _take_scheduler_momentum(self) -> None:
        """Move the momentum a torch scheduler wrote under the other name to the group's own key.

        OneCycleLR and CyclicLR (cycle_momentum=True) write one key into every group, chosen
        from ``optimizer.defaults``: "momentum", or "betas" when the defaults have betas. A
        group whose algorithm reads betas (AdamW) gets that value as beta1, one that reads
        momentum (Muon) as its momentum, and the written key is removed."""
        for group in self.param_groups:
            defaults = ALGORITHMS[group["algorithm"]].defaults
            if "momentum" in group and "momentum" not in defaults and "betas" in defaults:
                group["betas"] = (group.pop("momentum"), *group["betas"][1:])
            elif "betas" in group and "betas" not in defaults and "momentum" in defaults:
                group["momentum"] = group.pop("betas")[0]

    def _warn_shared_max_lr(self, who: str) -> None:
        """Warn once if OneCycleLR gave groups of different algorithms one max_lr (a scalar
        max_lr erases the ratio between, e.g., Muon's and AdamW's learning rates)."""
        if getattr(self, "_warned_max_lr", False):
            return
        peaks = {(g["algorithm"], g["max_lr"]) for g in self.param_groups if "max_lr" in g}
        algorithms = {a for a, _ in peaks}
        if len(algorithms) > 1 and len({lr for _, lr in peaks}) == 1:
            self._warned_max_lr = True
            lr = next(iter(peaks))[1]
            warnings.warn(
                f"{who}: every param group ({', '.join(sorted(algorithms))}) has max_lr={lr}; "
                "a scalar max_lr erases the ratio of their learning rates. Pass one per "
                "group, e.g. max_lr=steepest.optim.peak_lrs(optimizer, factor) (each "
                "group's lr times factor)",
                stacklevel=_caller_level(),
            )


def peak_lrs(optimizer: torch.optim.Optimizer, factor: float) -> list[float]:
    """Each param group's current lr times ``factor``: a per-group ``max_lr`` list for
    OneCycleLR or CyclicLR that keeps the groups' lr ratio (e.g. Muon 0.02 : AdamW 3e-4).

    Example:
        >>> import torch, steepest
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
        >>> groups, _ = steepest.param_groups(model)
        >>> opt = steepest.Muon(groups, lr=0.02, adamw_lr=3e-4)
        >>> [round(lr, 6) for lr in steepest.optim.peak_lrs(opt, 10.0)]
        [0.2, 0.003, 0.003]
        >>> sched = torch.optim.lr_scheduler.OneCycleLR(opt, steepest.optim.peak_lrs(opt, 10.0),
        ...                                             total_steps=100)
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
        raise ValueError(f"peak_lrs: factor={factor!r} must be a number > 0")
    return [float(g["lr"]) * factor for g in optimizer.param_groups]
