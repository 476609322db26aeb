"""The task registry: ``make_task(name, **options)``; add a task with one line in ``TASKS``."""

from __future__ import annotations

import dataclasses
from typing import Any

from steepest.experiments.tasks.base import Task
from steepest.experiments.tasks.imbalanced_gmm import ImbalancedGMM
from steepest.experiments.tasks.implicit_bias import ImplicitBias
from steepest.experiments.tasks.mnist_mlp import MnistMLP
from steepest.experiments.tasks.modular_addition import ModularAddition
from steepest.experiments.tasks.quadratic import Quadratic
from steepest.experiments.tasks.shakespeare_char import ShakespeareChar
from steepest.experiments.tasks.tokens_bin import TokensBin
from steepest.experiments.tasks.zipf_pcfg import ZipfPCFG

__all__ = ["TASKS", "Task", "make_task", "parse_options"]

TASKS: dict[str, type[Task]] = {
    ShakespeareChar.name: ShakespeareChar,
    MnistMLP.name: MnistMLP,
    Quadratic.name: Quadratic,
    ModularAddition.name: ModularAddition,
    ImbalancedGMM.name: ImbalancedGMM,
    ImplicitBias.name: ImplicitBias,
    TokensBin.name: TokensBin,
    ZipfPCFG.name: ZipfPCFG,
}


def make_task(name: str, **options: Any) -> Task:
    """Build the task ``name`` with the given options (its dataclass fields).

    Raises:
        ValueError: unknown task name or option, naming the allowed ones.
    """
    if name not in TASKS:
        raise ValueError(f"task={name!r} is unknown; choose one of {', '.join(TASKS)}")
    cls = TASKS[name]
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key in options:
        if key not in allowed:
            raise ValueError(
                f"task {name!r}: option {key!r} is unknown; allowed: {', '.join(allowed) or 'none'}"
            )
    return cls(**options)


def parse_key_values(
    pairs: list[str], types: dict[str, type], flag: str, owner: str
) -> dict[str, Any]:
    """Parse ``["key=value", ...]``, converting each value with ``types[key]``; errors name
    the command-line ``flag`` and the ``owner`` (task or target) the keys belong to."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in types:
            raise ValueError(
                f"{flag} {pair!r}: expected KEY=VALUE with KEY one of "
                f"{', '.join(types) or 'none'} for {owner}"
            )
        try:
            options[key] = types[key](value)
        except ValueError:
            raise ValueError(
                f"{flag} {pair!r}: {value!r} is not a valid {types[key].__name__}"
            ) from None
    return options


def parse_options(name: str, pairs: list[str]) -> dict[str, Any]:
    """Parse ``["key=value", ...]`` for task ``name``, converting each value to its field's type."""
    if name not in TASKS:
        raise ValueError(f"task={name!r} is unknown; choose one of {', '.join(TASKS)}")
    types = {f.name: type(f.default) for f in dataclasses.fields(TASKS[name])}
    return parse_key_values(pairs, types, "--task-option", f"task {name!r}")
