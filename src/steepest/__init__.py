"""steepest: steepest descent under a chosen norm for PyTorch.

Public API: :mod:`steepest.polar` (``msign``), :mod:`steepest.norms` (norm objects with
``dualize``), the optimizer presets (``steepest.Muon``, ...), ``steepest.param_groups`` and
:mod:`steepest.diagnostics`.
"""

from steepest import diagnostics, norms, polar
from steepest.groups import param_groups
from steepest.optim import Muon, Steepest

__version__ = "0.1.0"

__all__ = ["norms", "polar", "__version__"]
__all__ += ["Muon", "Steepest", "param_groups"]
__all__ += ["diagnostics"]
