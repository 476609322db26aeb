"""The "scion" and "uscion" members: a norm per param group, its LMO and a radius.

Also ``scion_groups(model, kind)``: the layer norms recommended for image and one-hot inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from steepest.norms import Norm, get

from ..checks import check_flag, check_nonnegative
from ..momentum import MOMENTUM_DEFAULTS, MomentumAlgorithm
from ..polar_step import POLAR_DEFAULTS, GroupSpectral, check_polar
from ..presets import Preset, preset
from ..registry import Group, register

__all__ = ["SCION_NORMS", "Scion", "ScionAlgorithm", "UScion", "scion_groups"]

#: The norm names a Scion group may give (or a steepest.norms.Norm instance).
SCION_NORMS = ("spectral", "colnorm", "rownorm", "sign", "rms", "frobenius")


class ScionAlgorithm(MomentumAlgorithm):
    """(Unconstrained) Scion: stochastic conditional gradient with an operator norm per group.

    Math, with D the momentum direction (EMA, beta = fraction kept), rho the group's radius
    and lmo(D) = argmin_{||T|| <= 1} <D, T> = -dualize(D):
        scion  (constrained):   W <- (1 - lr) W + lr * rho * lmo(D)
        uscion (unconstrained): W <- W + lr * rho * lmo(D)
    i.e. stage 3 is the norm's dualizer, stage 4 the radius, and the constrained form is
    decoupled weight decay with coefficient 1: "scion" defaults to weight_decay=1.0 (then the
    iterates stay in the ball ||W|| <= rho; with weight_decay=w, in ||W|| <= rho / w),
    "uscion" to 0.0. cautious_weight_decay applies to either. Norms (the LMO table of
    Beznosikov's lecture below, in RMS units):
    "spectral" sqrt(d_out/d_in) U V^T (the group's polar backend), "colnorm", "rownorm",
    "sign", "rms" (vectors), "frobenius", or a Norm instance (its own dualize).
    ``transpose=True`` dualizes X^T (an embedding table (vocab, d) is the map W = E^T).

    References: Beznosikov, "Matrix Optimization and Muon: A Natural Perspective on Neural
    Network Training" (lecture, MIPT, 2025): the LMO table and Recommendation 3.1;
    arXiv 2502.07529 (Pethick et al., Training Deep Learning Models with Norm-Constrained
    LMOs), Algorithms 1-2 (uSCG, SCG).
    """

    name = "scion"
    vectors = True
    constrained = True
    defaults: Mapping[str, Any] = {
        **MOMENTUM_DEFAULTS,
        "lr": 0.02,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 1.0,
        "norm": "spectral",
        "radius": 1.0,
        "transpose": False,
        **POLAR_DEFAULTS,
    }

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        super().validate(who, hp, prefix)
        if hp["lr"] * hp["weight_decay"] > 1:
            raise ValueError(
                f"{who}: {prefix}lr * weight_decay = {hp['lr'] * hp['weight_decay']!r} must be "
                "<= 1 (the constrained step is a convex combination); lower lr"
            )
        norm = hp["norm"]
        if not isinstance(norm, Norm) and norm not in SCION_NORMS:
            raise ValueError(
                f"{who}: {prefix}norm={norm!r} is unknown; use one of {list(SCION_NORMS)} "
                "or a steepest.norms.Norm"
            )
        check_nonnegative(who, f"{prefix}radius", hp["radius"], 1.0)
        check_flag(who, f"{prefix}transpose", hp["transpose"])
        check_polar(who, hp, prefix)

    def norm(self, group: Group) -> Norm:
        """The group's norm: "spectral" is the RMS -> RMS norm dualized by the group's polar
        backend; the other names are steepest.norms.get(name); a Norm instance is itself.
        With ``transpose=True`` it applies to X^T."""
        norm = group["norm"]
        if norm == "spectral":
            return GroupSpectral(group, rms=True)
        return norm if isinstance(norm, Norm) else get(norm)

    def dualize(self, X: torch.Tensor, group: Group) -> torch.Tensor:
        if group["transpose"]:
            return self.norm(group).dualize(X.mT).mT
        return self.norm(group).dualize(X)

    def scale(self, m: int, n: int, group: Group) -> float:
        return float(group["radius"])


class UScionAlgorithm(ScionAlgorithm):
    """Unconstrained Scion (uSCG): W <- W - lr * rho * dualize(D)."""

    name = "uscion"
    constrained = False
    defaults: Mapping[str, Any] = {**ScionAlgorithm.defaults, "weight_decay": 0.0}


register(ScionAlgorithm())
register(UScionAlgorithm())


class _ScionPreset(Preset):
    def _route(self, params: Iterable[Any]) -> list[dict[str, Any]]:
        """A group of vectors only that names no norm gets the RMS norm."""
        routed = super()._route(params)
        for group in routed:
            tensors = [m[1] if isinstance(m, tuple) else m for m in group["params"]]
            if "norm" not in group and tensors and all(t.ndim < 2 for t in tensors):
                group["norm"] = "rms"
        return routed


@preset("scion")
class Scion(_ScionPreset):
    """Scion (constrained) on every parameter: matrices under ``norm`` (default spectral),
    vectors under RMS; use ``scion_groups(model, kind)`` for the per-layer recommendation."""

    algorithm = "scion"
    vector_algorithm = "scion"


@preset("uscion")
class UScion(_ScionPreset):
    """Unconstrained Scion on every parameter (see Scion)."""

    algorithm = "uscion"
    vector_algorithm = "uscion"


def scion_groups(
    model: nn.Module,
    kind: str = "image",
    radius: float = 1.0,
    head_radius: float | None = None,
    algorithm: str = "scion",
) -> list[dict[str, Any]]:
    """Param groups with Scion's recommended layer norms (first -> hidden -> last layer).

    kind "image": Spectral -> Spectral -> Sign; kind "onehot": ColNorm -> Spectral -> Sign
    (an nn.Embedding first layer gets ColNorm of its transpose). Layers are the modules with a
    weight of ndim >= 2 in registration order (the last one is the head); every tensor with
    ndim < 2 gets the RMS norm. The Sign head's radius defaults to radius / d_in, so that its
    output entries stay O(radius) (an RMS-like unit for the 1 -> inf norm).

    Args:
        model: the model.
        kind: "image" or "onehot".
        radius: rho of the first and hidden layers and of the vectors.
        head_radius: rho of the last layer (default radius / d_in of the head).
        algorithm: "scion" (constrained) or "uscion".

    Returns:
        A list of param groups (dicts with params, algorithm, norm, radius, transpose).

    References: Beznosikov, "Matrix Optimization and Muon: A Natural Perspective on Neural
    Network Training" (lecture, MIPT, 2025), Recommendation 3.1; arXiv 2502.07529.
    """
    if kind not in ("image", "onehot"):
        raise ValueError(f"scion_groups: kind={kind!r} is unknown; use 'image' or 'onehot'")
    if algorithm not in ("scion", "uscion"):
        raise ValueError(f"scion_groups: algorithm={algorithm!r}; use 'scion' or 'uscion'")
    layers = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(getattr(module, "weight", None), torch.Tensor) and module.weight.ndim >= 2
    ]
    if not layers:
        raise ValueError("scion_groups: the model has no weight with ndim >= 2")
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    for i, (_, module) in enumerate(layers):
        weight = module.weight
        seen.add(id(weight))
        group: dict[str, Any] = {"params": [weight], "algorithm": algorithm, "radius": radius}
        if i == len(layers) - 1 and len(layers) > 1:
            d_in = math.prod(weight.shape[1:])
            group.update(norm="sign", radius=head_radius or radius / d_in)
        elif i == 0 and kind == "onehot":
            group.update(norm="colnorm", transpose=isinstance(module, nn.Embedding))
        else:
            group["norm"] = "spectral"
        groups.append(group)
    vectors = [p for p in model.parameters() if id(p) not in seen and p.ndim < 2]
    others = [p for p in model.parameters() if id(p) not in seen and p.ndim >= 2]
    if vectors:
        groups.append({"params": vectors, "algorithm": algorithm, "norm": "rms", "radius": radius})
    if others:
        groups.append(
            {"params": others, "algorithm": algorithm, "norm": "spectral", "radius": radius}
        )
    return groups
