"""The "muon" algorithm: momentum, then msign of each matrix, then a shape-rule scale."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import torch
from torch.optim.optimizer import ParamsT

from steepest.norms import Norm
from steepest.polar.msign import Backend
from steepest.polar.newton_schulz import Coefficients

from ..checks import check_nonnegative
from ..engine import Steepest
from ..fast.options import FastPath
from ..momentum import MOMENTUM_DEFAULTS, MomentumAlgorithm
from ..polar_step import POLAR_DEFAULTS, GroupSpectral, check_polar, polar
from ..presets import preset
from ..registry import Group, register
from ..scaling import check_scale, scale_factor

__all__ = ["EPS", "Muon", "MuonAlgorithm"]

#: Muon's default eps: directions with a smaller Frobenius norm get proportionally shorter
#: steps (MuonAlgorithm.damp); 1e-7 as in the reference Muon and torch.optim.Muon.
EPS: Final = 1e-7


class MuonAlgorithm(MomentumAlgorithm):
    """Muon: EMA momentum (optionally Nesterov), msign of the matrix view, shape scale.

    Math (per matrix W with gradient G, momentum beta, learning rate lr, decay wd):
        M <- beta M + (1 - beta) G
        D <- (1 - beta) G + beta M  if nesterov else M
        W <- (1 - lr wd) W - lr * scale(m, n) * msign(D)
    msign(D) = U V^T for D = U S V^T, computed by ``steepest.polar.msign`` with the group's
    backend, steps, coefficients, polar_dtype and polar_form (or, for backend "randomized_svd", the
    rank-``rank`` factor of ``steepest.polar.randomized_polar``).
    Group keys: lr, momentum, nesterov, weight_decay, cautious_weight_decay, momentum_8bit,
    backend, coefficients, steps, polar_dtype, polar_form, polar_kernel, rank, scale (plus the
    view keys matrix_view and blocks read by the engine).

    References: Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and
    Non-Riemannian Manifolds" (2025), Alg. 1 (Muon) and Alg. 2 (Newton-Schulz), Condition 1
    (spectral scale); arXiv 2502.16982 (rms scale).
    """

    name = "muon"
    defaults: Mapping[str, Any] = {
        **MOMENTUM_DEFAULTS,
        **POLAR_DEFAULTS,
        "scale": "spectral",
        "eps": EPS,
    }

    fused_momentum = True
    scale_invariant = True

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        super().validate(who, hp, prefix)
        check_scale(who, hp["scale"])
        check_polar(who, hp, prefix)
        check_nonnegative(who, f"{prefix}eps", hp["eps"], EPS)

    def norm(self, group: Group) -> Norm:
        """The spectral norm, dualized by the group's polar backend."""
        return GroupSpectral(group)

    def dualize(self, X: torch.Tensor, group: Group) -> torch.Tensor:
        """The norm's dualizer U V^T, damped (``damp``) where ||X||_F < eps."""
        U = self.norm(group).dualize(X)
        if group["eps"] == 0:  # no damping: skip the norms' pass over X
            return U
        norms = torch.linalg.vector_norm(X, dim=(-2, -1), dtype=torch.float64)
        return self.damp(U, norms, group)

    def damp(self, U: torch.Tensor, norms: torch.Tensor, group: Group) -> torch.Tensor:
        """U times min(1, ||D||_F / eps) per matrix: a direction D whose Frobenius norm is
        below the group's ``eps`` gets a proportionally shorter step (U exactly when
        ||D||_F >= eps), so a gradient of 1e-30 moves nothing. The reference Muon
        normalizes D / (||D||_F + eps) before Newton-Schulz and torch.optim.Muon
        D / max(||D||_F, eps), both with eps = 1e-7, whose iteration then leaves such a
        direction small; the factor states that rule for every backend (an exact polar
        factor is scale invariant). eps = 0: scale invariant."""
        eps = group["eps"]
        if eps == 0:
            return U
        factor = (norms / eps).clamp(max=1.0).to(U.dtype)
        return torch.mul(U, factor.reshape(*U.shape[:-2], 1, 1))

    def dualize_normed(
        self,
        X: torch.Tensor,
        norms: torch.Tensor,
        dtype: torch.dtype,
        group: Group,
        *,
        unit_scaled: bool = False,
    ) -> torch.Tensor:
        return polar(X, group, frobenius=norms, out_dtype=dtype, unit_scaled=unit_scaled)

    def uncapturable(self, group: Group) -> str:
        """The iterative backends with float momentum are capturable (no host sync, no
        Python-side state)."""
        if group["backend"] not in ("newton_schulz", "polar_express"):
            return f"backend={group['backend']!r} is not one of the iterative polar backends"
        if group["momentum_8bit"]:
            return "momentum_8bit=True (8-bit momentum is not recorded)"
        return ""

    def scale(self, m: int, n: int, group: Group) -> float:
        return scale_factor(group["scale"], m, n)


register(MuonAlgorithm())


@preset("muon")
class Muon(Steepest):
    """Muon for the matrices of a model and AdamW for everything else, in one optimizer.

    Routing: groups from ``steepest.param_groups`` (or any group with an ``algorithm`` key)
    keep their algorithm; plain tensors with ndim >= 2 go to "muon" and the rest to "adamw".
    A plain parameter list sends embeddings and output heads to Muon (tensors shaped like
    them warn once); use ``steepest.param_groups(model)`` to send them to AdamW.

    To follow ``torch.optim.Muon`` (up to bf16 rounding; with both iterations in float32 the
    trajectories agree to 1e-5 of the distance moved, 1.5e-6 measured over 6 steps):
    ``backend="newton_schulz", coefficients="jordan",
    polar_dtype=torch.bfloat16, scale="jordan"``.

    Args:
        params: tensors, (name, tensor) pairs or param groups.
        lr: Muon learning rate (>= 0), default 0.02.
        momentum: EMA factor beta in [0, 1), default 0.95.
        nesterov: use the Nesterov direction (1 - beta) G + beta M, default True.
        weight_decay: decoupled weight decay of the matrices (W *= 1 - lr * wd), default 0.
        cautious_weight_decay: decay only where update and weight agree in sign
            (arXiv 2510.12402), default False.
        momentum_8bit: keep the momentum in block-wise int8 (arXiv 2509.23106), default False.
        rank: rank of backend="randomized_svd" (low-rank updates, arXiv 2509.14562).
        backend, coefficients, steps, polar_dtype: passed to ``steepest.polar.msign``
            (backend "svd", "newton_schulz", "polar_express" or a callable; default
            "polar_express" with 5 steps; polar_dtype None = bfloat16 on CUDA, float32 on CPU).
        polar_form: ``msign``'s ``form``: "auto" (default: the Gram form, an iteration on the
            small matrix X X^T, for matrices with aspect ratio >= 2, in float16 on CUDA unless
            polar_dtype is bfloat16; the direct form otherwise), "direct" or "gram".
        eps: a direction whose Frobenius norm is below eps gets a step shortened by
            ||D||_F / eps (MuonAlgorithm.damp), default 1e-7; 0 makes the step scale
            invariant (a gradient of 1e-30 then moves the weights as far as one of 1).
        polar_kernel: ``msign``'s ``kernel`` for the polar products: "auto" (default: the
            Triton symmetric-product kernel on CUDA where it measured faster), "torch" or
            "triton".
        scale: shape rule on the matrix view (m, n) = (d_out, d_in): "spectral" sqrt(m/n)
            (default), "jordan" sqrt(max(1, m/n)), "rms" 0.2 sqrt(max(m, n)), or a float.
        nonfinite: "raise", "skip" or "ignore" (see Steepest).
        adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay, adamw_fused: AdamW
            hyperparameters of the non-matrix groups (torch's AdamW math).
        compile, cuda_graph: the GPU fast path of Steepest (the five stages compiled and
            recorded); default None: on for CUDA parameters, off elsewhere.
        master_weights: float32 master copies of bf16/fp16 parameters (see Steepest).
        fast: the fast path's options (steepest.optim.fast.FastPath).

    References: Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and
    Non-Riemannian Manifolds" (2025), Alg. 1 and Condition 1; arXiv 2502.16982.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        backend: Backend = "polar_express",
        coefficients: Coefficients = None,
        steps: int = 5,
        polar_dtype: torch.dtype | None = None,
        polar_form: str = "auto",
        polar_kernel: str = "auto",
        scale: str | float = "spectral",
        cautious_weight_decay: bool = False,
        momentum_8bit: bool = False,
        rank: int | None = None,
        eps: float = EPS,
        nonfinite: str = "raise",
        adamw_lr: float = 3e-4,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-8,
        adamw_weight_decay: float = 0.0,
        adamw_fused: bool | None = None,
        compile: bool | str | None = None,
        cuda_graph: bool | None = None,
        master_weights: bool = False,
        fast: FastPath | None = None,
    ) -> None:
        muon = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            backend=backend,
            coefficients=coefficients,
            steps=steps,
            polar_dtype=polar_dtype,
            polar_form=polar_form,
            polar_kernel=polar_kernel,
            scale=scale,
            cautious_weight_decay=cautious_weight_decay,
            momentum_8bit=momentum_8bit,
            rank=rank,
            eps=eps,
        )
        adamw = dict(
            lr=adamw_lr,
            betas=adamw_betas,
            eps=adamw_eps,
            weight_decay=adamw_weight_decay,
            fused=adamw_fused,
        )
        super().__init__(
            params,
            {"muon": muon, "adamw": adamw},
            nonfinite=nonfinite,
            prefixes={"adamw": "adamw_"},
            compile=compile,
            cuda_graph=cuda_graph,
            master_weights=master_weights,
            fast=fast,
        )
