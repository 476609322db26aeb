"""The "signsgd" and "signum" members: sign descent, without and with momentum."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from steepest.norms import Norm, Sign

from ..momentum import MOMENTUM_DEFAULTS, MomentumAlgorithm
from ..presets import Preset, preset
from ..registry import Group, register
from ..scaling import check_scale, scale_factor

__all__ = ["SignSGD", "Signum", "SignumAlgorithm"]


class SignumAlgorithm(MomentumAlgorithm):
    """M-SignSGD (Signum): W <- W - lr * scale * sign(M), M the momentum direction.

    Steepest descent under the max-entry norm ||.||_max (the 1 -> inf operator norm), whose
    dualizer is sign(G). Elementwise, so it also updates vectors. scale defaults to 1.

    References: Beznosikov, "Matrix Optimization and Muon: A Natural Perspective on Neural
    Network Training" (lecture, MIPT, 2025): the sign method, M-SignSGD and the LMO table
    column "1 -> inf (Sign)"; Bernstein et al. 2018 (arXiv 1802.04434, signSGD / Signum).
    """

    name = "signum"
    vectors = True
    defaults: Mapping[str, Any] = {
        **MOMENTUM_DEFAULTS,
        "lr": 1e-3,
        "momentum": 0.9,
        "nesterov": False,
        "scale": 1.0,
    }

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        super().validate(who, hp, prefix)
        check_scale(who, hp["scale"])

    def norm(self, group: Group) -> Norm:
        return Sign()

    def scale(self, m: int, n: int, group: Group) -> float:
        return scale_factor(group["scale"], m, n)


class SignSGDAlgorithm(SignumAlgorithm):
    """signSGD: W <- W - lr * scale * sign(G) (Signum with momentum 0)."""

    name = "signsgd"
    defaults: Mapping[str, Any] = {**SignumAlgorithm.defaults, "momentum": 0.0}


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
