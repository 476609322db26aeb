"""Optimizers: the five-stage engine ``Steepest``, its algorithms and the presets built on it.

Public API:
    Steepest(params, hyperparameters=None, *, matrix_algorithm="muon",
             vector_algorithm="adamw", nonfinite="raise", compile=None, cuda_graph=None,
             master_weights=False, fast=None)
    FastPath (the fast path's options), GroupPath (a row of fast_path_report()),
    FastPathNotice
    optimizer(name, params, **hyperparameters), available()
    presets: Muon, SpecGD, Schatten, Scion, UScion, SignSGD, Signum, Lion, NSGD, ClippedSGD,
             AdamW, Shampoo, CASPR, SOAP, NorMuon, PolarGrad, MarsMuon, AdaMuon, Dion,
             PSGDKron; MuLoCo (K simulated workers around a preset),
             DistributedMuLoCo (one worker per rank of a process group);
             scion_groups(model, kind)
    ALGORITHMS (name -> Algorithm), Algorithm, register, SCALES, map_stacked
    peak_lrs(optimizer, factor): per-group max_lr lists for OneCycleLR / CyclicLR

The members live in steepest.optim.family, one module each; the table of members and their
stages: docs/algorithms.md.
"""

from steepest.matrices.stacking import map_stacked

from .compat import peak_lrs
from .engine import FastPathNotice, GroupPath, Steepest
from .family import (
    CASPR,
    NSGD,
    SOAP,
    AdaMuon,
    AdamW,
    ClippedSGD,
    Dion,
    DistributedMuLoCo,
    Lion,
    MarsMuon,
    MuLoCo,
    Muon,
    MuonAlgorithm,
    NorMuon,
    PolarGrad,
    PSGDKron,
    Schatten,
    Scion,
    Shampoo,
    SignSGD,
    Signum,
    SpecGD,
    UScion,
    scion_groups,
)
from .fast import FastPath
from .presets import PRESETS, available, optimizer
from .registry import ALGORITHMS, Algorithm, register
from .scaling import SCALES

__all__ = [
    "ALGORITHMS",
    "CASPR",
    "NSGD",
    "PRESETS",
    "PSGDKron",
    "SCALES",
    "SOAP",
    "Shampoo",
    "AdaMuon",
    "AdamW",
    "Algorithm",
    "ClippedSGD",
    "Dion",
    "DistributedMuLoCo",
    "FastPath",
    "FastPathNotice",
    "GroupPath",
    "Lion",
    "MarsMuon",
    "MuLoCo",
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
    "peak_lrs",
    "register",
    "scion_groups",
]
