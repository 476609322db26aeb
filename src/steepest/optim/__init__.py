"""Optimizers: the five-stage engine ``Steepest``, its algorithms and the presets built on it.

Public API:
    Steepest(params, hyperparameters=None, *, matrix_algorithm="muon",
             vector_algorithm="adamw", nonfinite="raise")
    Muon(params, lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.0, ...)
    ALGORITHMS (name -> Algorithm), Algorithm, register, SCALES, map_stacked
"""

from . import adamw as _adamw  # noqa: F401  (registers "adamw")
from .batching import map_stacked
from .engine import Steepest
from .muon import Muon, MuonAlgorithm
from .registry import ALGORITHMS, Algorithm, register
from .scaling import SCALES

__all__ = [
    "ALGORITHMS",
    "SCALES",
    "Algorithm",
    "Muon",
    "MuonAlgorithm",
    "Steepest",
    "map_stacked",
    "register",
]
