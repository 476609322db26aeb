"""The "polargrad" member: the polar factor scaled by the nuclear norm."""

from __future__ import annotations

import torch

from ..polar_step import polar
from ..presets import Preset, preset
from ..registry import Group, register
from .muon import MuonAlgorithm

__all__ = ["PolarGrad", "PolarGradAlgorithm"]


class PolarGradAlgorithm(MuonAlgorithm):
    """PolarGrad: W <- (1 - lr wd) W - lr * scale * ||M||_nuc * U V^T, M = U H (polar).

    Stage 3 returns ||D||_nuc msign(D), with the nuclear norm computed as <D, msign(D)> =
    tr(H) (exact for the svd backend, the backend's approximation otherwise). This is the
    unnormalized steepest descent step under the spectral norm, ||G||_* dualize(G).
    Default scale 1 and lr 1e-3 (the step's spectral norm is lr ||M||_nuc).

    References: arXiv 2505.21799 (Lau, Long & Su, PolarGrad), the momentum-first variant;
    Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and Non-Riemannian
    Manifolds" (2025), §2.3 (dual norm of the spectral norm is nuclear).
    """

    name = "polargrad"
    defaults = {
        **MuonAlgorithm.defaults,
        "lr": 1e-3,
        "momentum": 0.9,
        "nesterov": False,
        "scale": 1.0,
        "eps": 0.0,  # the step ||D||_nuc msign(D) already shrinks with D
    }

    #: <X, msign X> grows with X's scale: the fused step stores no prescaled directions.
    scale_invariant = False
    #: dualize_normed below is PolarGrad's own dualizer on a stack with known norms.
    fused_momentum = True

    def dualize(self, X: torch.Tensor, group: Group) -> torch.Tensor:
        """||X||_nuc times the spectral norm's dualizer (the group's polar backend)."""
        return _times_nuclear(X, self.norm(group).dualize(X))

    def dualize_normed(
        self,
        X: torch.Tensor,
        norms: torch.Tensor,
        dtype: torch.dtype,
        group: Group,
        *,
        unit_scaled: bool = False,
    ) -> torch.Tensor:
        """dualize on the fused step's stack: X may be 16-bit (the rounded direction), so
        <X, msign X> is summed in ``dtype`` from X's stored values; msign takes the norms."""
        O = polar(X, group, frobenius=norms, out_dtype=dtype, unit_scaled=unit_scaled)
        return _times_nuclear(X, O)


def _times_nuclear(X: torch.Tensor, O: torch.Tensor) -> torch.Tensor:
    """O (the polar factor of X, in place) times <X, O> = tr(H) per matrix, summed in O's dtype."""
    nuclear = (X.to(O.dtype) * O).sum(dim=(-2, -1), keepdim=True)
    return O.mul_(nuclear)


register(PolarGradAlgorithm())


@preset("polargrad")
class PolarGrad(Preset):
    """PolarGrad on the matrices, AdamW on the rest."""

    algorithm = "polargrad"
