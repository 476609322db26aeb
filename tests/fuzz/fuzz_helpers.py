"""Shared pieces of the fuzz suite: the optimizers under test and the case counters.

The optimizers are every preset of ``steepest.available()`` once that registry exists, and
otherwise ``steepest.Muon`` plus the engine ``Steepest`` routed to "muon" and to "adamw".
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import torch

import steepest

#: property name -> cases tried / failed; printed by conftest.py at the end of the session.
TRIED: Counter[str] = Counter()
FAILED: Counter[str] = Counter()
#: property name -> cases drawn but not run, for a known, reported limitation (see the test).
EXCLUDED: Counter[str] = Counter()


def optimizer_names() -> list[str]:
    """The optimizers every property runs over."""
    if hasattr(steepest, "available") and hasattr(steepest, "optimizer"):
        return sorted(steepest.available())
    return ["Muon", "Steepest[muon]", "Steepest[adamw]"]


def make_optimizer(name: str, params: list[torch.Tensor], weight_decay: float):
    """Construct optimizer `name` on `params` with decoupled weight decay `weight_decay`."""
    if name == "Muon":
        return steepest.Muon(params, weight_decay=weight_decay, adamw_weight_decay=weight_decay)
    if name.startswith("Steepest["):
        matrix = name[len("Steepest[") : -1]
        decay = {algorithm: {"weight_decay": weight_decay} for algorithm in {matrix, "adamw"}}
        return steepest.Steepest(params, decay, matrix_algorithm=matrix, vector_algorithm="adamw")
    return steepest.optimizer(name, params, weight_decay=weight_decay)


@contextmanager
def counted(prop: str):
    """Count one case of property `prop`, and a failure if the block raises."""
    TRIED[prop] += 1
    try:
        yield
    except BaseException:
        FAILED[prop] += 1
        raise
