"""The "specgd" member: exact spectral descent, the SVD polar factor of each matrix."""

from __future__ import annotations

from ..presets import Preset, preset
from ..registry import register
from .muon import MuonAlgorithm

__all__ = ["SpecGD", "SpecGDAlgorithm"]


class SpecGDAlgorithm(MuonAlgorithm):
    """Spectral descent: W <- W - lr * scale(m, n) * U V^T for D = U S V^T (exact SVD).

    Stages: 1 momentum (none by default), 2 none, 3 U V^T by torch.linalg.svd, 4 shape rule,
    5 decoupled (or cautious) decay. Muon with backend="svd" and momentum 0.

    References: Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and
    Non-Riemannian Manifolds" (2025), §3.1 (dualizer of the spectral norm is U V^T) and §4.2.2;
    Carlson et al. 2015 (stochastic spectral descent).
    """

    name = "specgd"
    defaults = {**MuonAlgorithm.defaults, "momentum": 0.0, "nesterov": False, "backend": "svd"}


register(SpecGDAlgorithm())


@preset("specgd")
class SpecGD(Preset):
    """Exact spectral descent on the matrices, AdamW on the rest (see SpecGDAlgorithm)."""

    algorithm = "specgd"
