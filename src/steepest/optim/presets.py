"""Presets by name: ``optimizer(name, params, **hyperparameters)`` and ``available()``.

A preset is a ``Steepest`` whose matrix groups run one algorithm of ``ALGORITHMS``; tensors
with ndim < 2 go to AdamW, except for the elementwise members (sign descent, Lion, NSGD,
clipped SGD), which update them with the same rule, and Scion, which uses the RMS norm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .engine import Steepest
from .fast.options import FastPath

__all__ = ["PRESETS", "Preset", "available", "optimizer", "preset"]

#: name -> preset class; filled by ``preset`` as the member modules are imported.
PRESETS: dict[str, type[Steepest]] = {}

#: A Steepest subclass, as the ``preset`` decorator receives and returns it.
_PresetClass = TypeVar("_PresetClass", bound=type[Steepest])

_ADAMW_KEYS = {"adamw_lr", "adamw_betas", "adamw_eps", "adamw_weight_decay", "adamw_fused"}


class Preset(Steepest):
    """One algorithm of the family on the matrices (and possibly vectors) of a model.

    Args:
        params: tensors, (name, tensor) pairs or param groups. A group whose ``algorithm``
            is "muon" (as from ``steepest.param_groups``) is given this preset's algorithm
            (for AdamW its matrix-view keys are dropped), so every preset takes the groups
            ``param_groups`` returns; ``add_param_group`` does the same.
        nonfinite: "raise", "skip" or "ignore" (see Steepest).
        compile, cuda_graph, master_weights, fast: the execution options of Steepest (the
            fast path, on for CUDA parameters by default; float32 master copies; FastPath).
        **hyperparameters: the algorithm's keys (see ``ALGORITHMS[name].defaults``), and,
            where vectors go to AdamW, adamw_lr, adamw_betas, adamw_eps,
            adamw_weight_decay, adamw_fused. Unknown keys raise ValueError listing the known.
    """

    #: the algorithm of the matrix groups
    algorithm: str = "muon"
    #: the algorithm of plain tensors with ndim < 2
    vector_algorithm: str = "adamw"

    def __init__(
        self,
        params: Iterable[Any],
        nonfinite: str = "raise",
        *,
        compile: bool | str | None = None,
        cuda_graph: bool | None = None,
        master_weights: bool = False,
        fast: FastPath | None = None,
        **hyperparameters: Any,
    ) -> None:
        split = self.vector_algorithm == "adamw" and self.algorithm != "adamw"
        table = {self.algorithm: hyperparameters}
        if split:
            table["adamw"] = {
                key.removeprefix("adamw_"): hyperparameters.pop(key)
                for key in list(hyperparameters)
                if key in _ADAMW_KEYS
            }
        super().__init__(
            params,
            table,
            matrix_algorithm=self.algorithm,
            vector_algorithm=self.vector_algorithm,
            nonfinite=nonfinite,
            prefixes={"adamw": "adamw_"} if self.algorithm != "adamw" else None,
            compile=compile,
            cuda_graph=cuda_graph,
            master_weights=master_weights,
            fast=fast,
        )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """A group whose algorithm is "muon" (as ``steepest.param_groups`` routes matrices)
        runs this preset's algorithm; the rest as in Steepest."""
        if param_group.get("algorithm") == "muon":
            param_group = {**param_group, "algorithm": self.algorithm}
        super().add_param_group(param_group)


def preset(name: str) -> Callable[[_PresetClass], _PresetClass]:
    """Class decorator: register a Preset subclass under ``name`` in PRESETS."""

    def add(cls: _PresetClass) -> _PresetClass:
        if name in PRESETS:
            raise ValueError(f"preset: name {name!r} is taken")
        PRESETS[name] = cls
        return cls

    return add


def available() -> tuple[str, ...]:
    """The names ``optimizer`` accepts, sorted."""
    return tuple(sorted(PRESETS))


def optimizer(name: str, params: Iterable[Any], **hyperparameters: Any) -> Steepest:
    """Build the preset called ``name`` on ``params``.

    Args:
        name: one of ``available()``.
        params: tensors, (name, tensor) pairs or param groups.
        **hyperparameters: the preset's keyword arguments (e.g. lr, momentum, scale).

    Returns:
        A ``Steepest`` optimizer.

    Raises:
        ValueError: unknown name (listing the allowed ones) or a bad hyperparameter.
    """
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"optimizer: name={name!r} is unknown; use one of {list(available())}")
    return PRESETS[name](params, **hyperparameters)
