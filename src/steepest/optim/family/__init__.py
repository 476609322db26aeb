"""The members of the family: one module per algorithm, each registering its Algorithm in
``ALGORITHMS`` and its preset in ``PRESETS`` when imported.

This list is the one place a new member is added: write ``family/<name>.py`` (an Algorithm
subclass with ``register(...)`` and, for a preset, a ``@preset(name)`` class) and import it
below. What each member does, stage by stage, with its sources: docs/algorithms.md.
"""

from . import adamw as _adamw  # noqa: F401  (registers the "adamw" algorithm)
from .adamuon import AdaMuon
from .adamw_preset import AdamW
from .dion import Dion
from .lion import Lion
from .mars_muon import MarsMuon
from .muloco import DistributedMuLoCo, MuLoCo
from .muon import Muon, MuonAlgorithm
from .normuon import NorMuon
from .nsgd import NSGD, ClippedSGD
from .polargrad import PolarGrad
from .psgd_kron import PSGDKron
from .schatten import Schatten
from .scion import Scion, UScion, scion_groups
from .shampoo import CASPR, Shampoo
from .sign import SignSGD, Signum
from .soap import SOAP
from .specgd import SpecGD

__all__ = [
    "CASPR",
    "NSGD",
    "PSGDKron",
    "SOAP",
    "AdaMuon",
    "AdamW",
    "ClippedSGD",
    "Dion",
    "Lion",
    "MarsMuon",
    "DistributedMuLoCo",
    "MuLoCo",
    "Muon",
    "MuonAlgorithm",
    "NorMuon",
    "PolarGrad",
    "Schatten",
    "Scion",
    "Shampoo",
    "SignSGD",
    "Signum",
    "SpecGD",
    "UScion",
    "scion_groups",
]
