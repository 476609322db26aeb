"""steepest: steepest descent under a chosen norm for PyTorch.

Public API: :mod:`steepest.polar` (``msign``), :mod:`steepest.norms` (norm objects with
``dualize``), the optimizer presets (``steepest.Muon``, ...), ``steepest.param_groups`` and
:mod:`steepest.diagnostics`.
"""

from steepest import diagnostics, norms, polar
from steepest.groups import param_groups
from steepest.optim import (  # the family: one engine, one preset per member
    CASPR,
    NSGD,
    SOAP,
    AdaMuon,
    AdamW,
    ClippedSGD,
    Dion,
    DistributedMuLoCo,
    FastPath,
    Lion,
    MarsMuon,
    MuLoCo,
    Muon,
    NorMuon,
    PolarGrad,
    PSGDKron,
    Schatten,
    Scion,
    Shampoo,
    SignSGD,
    Signum,
    SpecGD,
    Steepest,
    UScion,
    available,
    optimizer,
    scion_groups,
)

__version__ = "0.1.0"

__all__ = ["norms", "polar", "__version__"]
__all__ += ["FastPath", "Muon", "Steepest", "param_groups"]
__all__ += ["diagnostics"]
__all__ += ["AdamW", "CASPR", "ClippedSGD", "Lion", "NSGD", "NorMuon", "PolarGrad", "SOAP"]
__all__ += ["Shampoo"]
__all__ += ["Schatten", "Scion", "SignSGD", "Signum", "SpecGD", "UScion"]
__all__ += ["available", "optimizer", "scion_groups"]
__all__ += ["AdaMuon", "Dion", "DistributedMuLoCo", "MarsMuon", "MuLoCo", "PSGDKron"]
