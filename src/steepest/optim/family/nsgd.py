"""The "nsgd" and "clipped_sgd" members: normalized and clipped SGD with momentum, per matrix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from steepest.norms import Frobenius, Norm

from ..checks import check_nonnegative
from ..momentum import MOMENTUM_DEFAULTS, MomentumAlgorithm
from ..presets import Preset, preset
from ..registry import Group, register
from ..scaling import check_scale, scale_factor

__all__ = ["ClippedSGD", "NSGD", "NSGDAlgorithm"]


def _frobenius(X: torch.Tensor) -> torch.Tensor:
    """||X||_F of every matrix of a (K, m, n) stack, shape (K, 1, 1), accumulated in float64."""
    norm = torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True, dtype=torch.float64)
    return norm.to(X.dtype)  # type: ignore[no-any-return]


class NSGDAlgorithm(MomentumAlgorithm):
    """M-NSGD: W <- W - lr * scale * M / ||M||_F, per matrix view (a vector: its l2 norm).

    Steepest descent under the Frobenius norm (its dualizer is G / ||G||_F); a zero M gives
    a zero step. Elementwise-shaped, so vectors are updated too.

    References: Beznosikov, "Matrix Optimization and Muon: A Natural Perspective on Neural
    Network Training" (lecture, MIPT, 2025): the M-NSGD baseline; Cesista, "Muon and a Selective
    Survey on Steepest Descent in Riemannian and Non-Riemannian Manifolds" (2025), §4.2.1 (Schatten
    p = 2 recovers normalized SGD).
    """

    name = "nsgd"
    vectors = True
    defaults: Mapping[str, Any] = {
        **MOMENTUM_DEFAULTS,
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": False,
        "scale": 1.0,
    }

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        super().validate(who, hp, prefix)
        check_scale(who, hp["scale"])

    def norm(self, group: Group) -> Norm | None:
        return Frobenius()

    def scale(self, m: int, n: int, group: Group) -> float:
        return scale_factor(group["scale"], m, n)


class ClippedSGDAlgorithm(NSGDAlgorithm):
    """M-ClippedSGD: W <- W - lr * scale * min(1, clip / ||M||_F) M, per matrix view.

    The momentum projected onto the Frobenius ball of radius ``clip`` (not a unit-norm
    direction: small M passes unchanged). Group keys: the momentum keys, clip, scale.

    References: Beznosikov, "Matrix Optimization and Muon: A Natural Perspective on Neural
    Network Training" (lecture, MIPT, 2025): clip(g, lambda) and the M-ClippedSGD baseline.
    """

    name = "clipped_sgd"
    defaults: Mapping[str, Any] = {**NSGDAlgorithm.defaults, "lr": 0.05, "clip": 1.0}

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        super().validate(who, hp, prefix)
        check_nonnegative(who, f"{prefix}clip", hp["clip"], 1.0)

    def norm(self, group: Group) -> Norm | None:
        return None  # a projection onto the ball, not a norm's dualizer

    def dualize(self, X: torch.Tensor, group: Group) -> torch.Tensor:
        norm = _frobenius(X)
        factor = torch.clamp(group["clip"] / torch.where(norm > 0, norm, 1.0), max=1.0)
        return X * factor


register(NSGDAlgorithm())
register(ClippedSGDAlgorithm())


@preset("nsgd")
class NSGD(Preset):
    """Normalized SGD with momentum on every parameter (one norm per matrix / vector)."""

    algorithm = "nsgd"
    vector_algorithm = "nsgd"


@preset("clipped_sgd")
class ClippedSGD(Preset):
    """Clipped SGD with momentum on every parameter (one clip per matrix / vector)."""

    algorithm = "clipped_sgd"
    vector_algorithm = "clipped_sgd"
