"""Hyperparameter checks raising ValueError that name the parameter, value and allowed values."""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Real
from typing import Any

import torch

__all__ = [
    "check_choice",
    "check_flag",
    "check_nonnegative",
    "check_unit_interval",
]


def _is_real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def check_nonnegative(who: str, name: str, value: Any, hint: object) -> None:
    """Raise unless value is a finite real number >= 0 (a tensor is named as such: the
    engine reads hyperparameters as Python numbers, and its compiled path keeps its own
    device copy of lr and weight decay, so schedules need no tensor lr)."""
    if isinstance(value, torch.Tensor):
        example = f"{name}={value.item():.6g}" if value.numel() == 1 else "a float"
        raise ValueError(
            f"{who}: {name}={value!r} is a tensor; pass a Python float ({example}): "
            "hyperparameters are read as numbers, and torch's schedulers work with floats"
        )
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{who}: {name}={value!r} must be a finite number >= 0; try {hint}")


def check_unit_interval(who: str, name: str, value: Any, hint: object) -> None:
    """Raise unless value is a real number in [0, 1)."""
    if not _is_real(value) or not (0.0 <= value < 1.0):
        raise ValueError(f"{who}: {name}={value!r} not in [0, 1); try {hint}")


def check_flag(who: str, name: str, value: object) -> None:
    """Raise unless value is a bool."""
    if not isinstance(value, bool):
        raise ValueError(f"{who}: {name}={value!r} must be True or False")


def check_choice(who: str, name: str, value: object, allowed: Collection[str]) -> None:
    """Raise unless value is one of the allowed names."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{who}: {name}={value!r} is unknown; use one of {list(allowed)}")
