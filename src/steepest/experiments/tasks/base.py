"""What a task is: data, a model and a metric, plus the defaults of a comparison on it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = ["Task"]


@dataclasses.dataclass
class Task:
    """Base class of the tasks; a task is a dataclass whose fields are its options.

    A subclass sets the class attributes below and implements the five methods. The runner seeds
    torch before :meth:`build_model` (so the initialization depends on the seed only) and draws
    batches from :meth:`batches`, whose order depends on the seed only; neither depends on the
    optimizer.

    Class attributes:
        name: the registry name.
        steps: default number of training steps.
        eval_every: default evaluation interval (steps).
        warmup: default fraction of the steps with a linear warmup.
        schedule: default decay after warmup, ``"cosine"``, ``"linear"`` or ``"constant"``.
        default_lrs: per optimizer, ``(lr, adamw_lr)``: the matrix rule's and the AdamW groups'.
        tuned_settings: per optimizer, settings that ``steepest compare`` uses instead of the
            defaults above: any of ``lr``, ``adamw_lr``, ``warmup``, ``beta2`` (the AdamW's).
        tuned_by: the command whose tuning gave ``tuned_settings``.

    Properties (a subclass sets a class attribute of the same name, or overrides the property
    where the value depends on the options):
        metrics: names of the values :meth:`evaluate` returns besides ``"val_loss"``.
        metric_ranges: per metric, the closed interval its values lie in (default ``(0, 1)``).
    """

    name: ClassVar[str] = "task"
    steps: ClassVar[int] = 100
    eval_every: ClassVar[int] = 10
    warmup: ClassVar[float] = 0.0
    schedule: ClassVar[str] = "cosine"
    default_lrs: ClassVar[dict[str, tuple[float, float]]] = {}
    tuned_settings: ClassVar[dict[str, dict[str, float]]] = {}
    tuned_by: ClassVar[str] = ""

    @property
    def metrics(self) -> tuple[str, ...]:
        """Names of the values :meth:`evaluate` returns besides ``"val_loss"``."""
        return ()

    @property
    def metric_ranges(self) -> dict[str, tuple[float, float]]:
        """Per metric, the closed interval its values lie in (absent: ``(0, 1)``)."""
        return {}

    def _check_positive(self, *names: str) -> None:
        """Raise ``ValueError`` unless each named option is a positive number."""
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{self.name}: option {name}={value!r} must be positive")

    def setup(self, device: torch.device) -> None:
        """Load or generate the data onto ``device``; called once before any run."""
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        """A freshly initialized model (the caller seeds torch first)."""
        raise NotImplementedError

    def batches(self, seed: int) -> Iterator[Any]:
        """An endless iterator of training batches whose order depends on ``seed`` only."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The training loss of ``model`` on ``batch`` (a scalar tensor)."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out metrics: ``{"val_loss": ..., **{m: ... for m in metrics}}``."""
        raise NotImplementedError

    def routing(self) -> dict[str, Any]:
        """Keyword arguments of ``steepest.param_groups`` for this task's model (default none)."""
        return {}

    def run_summary(self, curve: dict[str, list[float]]) -> dict[str, Any]:
        """Task-specific numbers of one run computed from its curve (default none)."""
        return {}

    def options(self) -> dict[str, Any]:
        """The task's options (its dataclass fields) as a JSON-ready dict."""
        return dataclasses.asdict(self)
