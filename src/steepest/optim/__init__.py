"""Optimizers: the five-stage engine ``Steepest``, its algorithms and the presets built on it.

Public API:
    Steepest(params, hyperparameters=None, *, matrix_algorithm="muon",
             vector_algorithm="adamw", nonfinite="raise", compile=None, cuda_graph=None,
             master_weights=False, fast=None)
    FastPath (the fast path's options), GroupPath (a row of fast_path_report()),
    FastPathNotice
    optimizer(name, params, **hyperparameters), available()
    presets: Muon, SpecGD, Schatten, Scion, UScion, SignSGD, Signum, Lion, NSGD, ClippedSGD,
             AdamW, Shampoo, CASPR, SOAP, NorMuon, PolarGrad; scion_groups(model, kind)
    ALGORITHMS (name -> Algorithm), Algorithm, register, SCALES, map_stacked

The table of members and their stages: docs/algorithms.md.
"""

from steepest.matrices.stacking import map_stacked

from . import adamw as _adamw  # noqa: F401  (registers "adamw")
from .adamw_preset import AdamW
from .engine import FastPathNotice, GroupPath, Steepest
from .fast import FastPath
from .lion import Lion
from .muon import Muon, MuonAlgorithm
from .normuon import NorMuon
from .nsgd import NSGD, ClippedSGD
from .polargrad import PolarGrad
from .presets import PRESETS, available, optimizer
from .registry import ALGORITHMS, Algorithm, register
from .scaling import SCALES
from .schatten import Schatten
from .scion import Scion, UScion, scion_groups
from .shampoo import CASPR, Shampoo
from .sign import SignSGD, Signum
from .soap import SOAP
from .specgd import SpecGD

__all__ = [
    "ALGORITHMS",
    "CASPR",
    "NSGD",
    "PRESETS",
    "SCALES",
    "SOAP",
    "Shampoo",
    "AdamW",
    "Algorithm",
    "ClippedSGD",
    "FastPath",
    "FastPathNotice",
    "GroupPath",
    "Lion",
    "Muon",
    "MuonAlgorithm",
    "NorMuon",
    "PolarGrad",
    "Schatten",
    "Scion",
    "SignSGD",
    "Signum",
    "SpecGD",
    "Steepest",
    "UScion",
    "available",
    "map_stacked",
    "optimizer",
    "register",
    "scion_groups",
]
