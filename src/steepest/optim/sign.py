"""The "signsgd" and "signum" members: sign descent, without and with momentum."""

from __future__ import annotations

import torch

from .momentum import MOMENTUM_DEFAULTS, MomentumAlgorithm
from .presets import Preset, preset
from .registry import register
from .scaling import check_scale, scale_factor

__all__ = ["SignSGD", "Signum", "SignumAlgorithm"]


class SignumAlgorithm(MomentumAlgorithm):
    """M-SignSGD (Signum): W <- W - lr * scale * sign(M), M the momentum direction.

    Steepest descent under the max-entry norm ||.||_max (the 1 -> inf operator norm), whose
    dualizer is sign(G). Elementwise, so it also updates vectors. scale defaults to 1.

    References: seeds/001_69fb9a2ea907674e.txt (sign method, M-SignSGD, LMO table column
    "1 -> inf (Sign)"); Bernstein et al. 2018 (arXiv 1802.04434, signSGD / Signum).
    """

    name = "signum"
    vectors = True
    defaults = {**MOMENTUM_DEFAULTS, "lr": 1e-3, "momentum": 0.9, "nesterov": False, "scale": 1.0}

    def validate(self, who, hp, prefix=""):
        super().validate(who, hp, prefix)
        check_scale(who, hp["scale"])

    def dualize(self, X, group):
        return torch.sign(X)

    def scale(self, m, n, group):
        return scale_factor(group["scale"], m, n)


class SignSGDAlgorithm(SignumAlgorithm):
    """signSGD: W <- W - lr * scale * sign(G) (Signum with momentum 0)."""

    name = "signsgd"
    defaults = {**SignumAlgorithm.defaults, "momentum": 0.0}


register(SignumAlgorithm())
register(SignSGDAlgorithm())


@preset("signum")
class Signum(Preset):
    """Sign descent of the momentum on every parameter."""

    algorithm = "signum"
    vector_algorithm = "signum"


@preset("signsgd")
class SignSGD(Preset):
    """Sign descent of the gradient on every parameter."""

    algorithm = "signsgd"
    vector_algorithm = "signsgd"
