"""The "schatten" member: steepest descent under the Schatten-p norm, with momentum."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from steepest.norms import Norm, SchattenP

from ..momentum import MOMENTUM_DEFAULTS, MomentumAlgorithm
from ..presets import Preset, preset
from ..registry import Group, register
from ..scaling import check_scale, scale_factor

__all__ = ["Schatten", "SchattenAlgorithm"]


class SchattenAlgorithm(MomentumAlgorithm):
    """W <- W - lr * scale(m, n) * dualize_{S_p}(D), D the momentum direction.

    Math: dualize_{S_p}(D) = U diag(s^(q-1)) V^T / ||D||_{S_q}^(q-1), 1/p + 1/q = 1
    (steepest.norms.SchattenP, exact SVD). p = 2 gives D / ||D||_F (normalized SGD), p = inf
    gives U V^T (spectral descent). Group keys: the momentum keys, p (default inf), scale.

    References: Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and
    Non-Riemannian Manifolds" (2025), Definition 2, Proposition 4, §4.2-4.3.
    """

    name = "schatten"
    defaults: Mapping[str, Any] = {**MOMENTUM_DEFAULTS, "p": math.inf, "scale": "spectral"}

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        super().validate(who, hp, prefix)
        p = hp["p"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 1 <= p <= math.inf:
            raise ValueError(
                f"{who}: {prefix}p={p!r} must be a number in [1, inf]; "
                "try 2 (Frobenius) or math.inf (spectral)"
            )
        check_scale(who, hp["scale"])

    def norm(self, group: Group) -> Norm:
        return SchattenP(group["p"])

    def scale(self, m: int, n: int, group: Group) -> float:
        return scale_factor(group["scale"], m, n)


register(SchattenAlgorithm())


@preset("schatten")
class Schatten(Preset):
    """Schatten-p steepest descent on the matrices, AdamW on the rest."""

    algorithm = "schatten"
