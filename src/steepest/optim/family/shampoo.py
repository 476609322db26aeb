"""The "shampoo" and "caspr" members: Kronecker-factored preconditioners L and R.

Both reduce to Muon when L and R are not accumulated (Cesista, "Muon and a Selective Survey on
Steepest Descent in Riemannian and Non-Riemannian Manifolds" (2025), §3.3.2-3.3.3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from steepest.matrices.views import as_matrices, from_matrices, matrix_shape

from ..batching import whole_matrix
from ..block_state import block_key, block_rows, block_states, split_rows
from ..checks import check_flag, check_nonnegative
from ..eigen import symmetric_eigh
from ..gram import normalize_gram
from ..momentum import MOMENTUM_DEFAULTS, MomentumAlgorithm
from ..precision import work_dtype
from ..presets import Preset, preset
from ..registry import Group, State, register
from ..scaling import check_scale, scale_factor

__all__ = ["CASPR", "CASPRAlgorithm", "Shampoo", "ShampooAlgorithm", "inverse_root"]

#: The per-block state of Shampoo and CASPR (block_state.py).
_BLOCK_KEYS = ("left", "right", "left_root", "right_root", "stat_scale")


def inverse_root(
    A: torch.Tensor, root: int, epsilon: float, scale: torch.Tensor | None = None
) -> torch.Tensor | None:
    """(s^2 A + epsilon I)^(-1/root) of symmetric PSD matrices (..., k, k) by eigendecomposition.

    ``A`` may hold a statistic divided by s^2 (``scale`` s of shape (..., 1, 1), see gram.py);
    then (s^2 A + eps I)^(-1/r) = s^(-2/r) (A + eps / s^2 I)^(-1/r), with the per-eigenvalue
    weights computed in float64 so that neither s^2 nor eps / s^2 over- or underflows.
    Without ``scale``, s = 1.

    The eigendecomposition runs in float64 whatever A's dtype (symmetric_eigh, which retries
    with a jitter instead of raising). Eigenvalues are clamped at 0; those <= eps(A's dtype) *
    lambda_max, below the round-off of A's own entries (an exactly singular A), get weight 0
    (a pseudo-inverse root), so directions that A does not see are left out instead of being
    amplified by epsilon^(-1/root). (A float32 eigh with the threshold k * eps * lambda_max
    zeroes directions that float64 keeps: 10 steps on 32 x 64 gradients land 2.6e-3 from the
    float64 run, against 3.1e-6 this way and 2.3e-5 for pytorch-optimizer's float32 SVD root.)

    Returns:
        The root in A's dtype, or None when A is not finite or no eigendecomposition
        succeeded (the caller keeps its previous root).

    References: V. Gupta, T. Koren, Y. Singer, "Shampoo: Preconditioned Stochastic Tensor
    Optimization", arXiv 1802.09568 (2018), Algorithm 1 (L^(-1/4), R^(-1/4)).
    """
    low = A.dtype in (torch.float16, torch.bfloat16)
    stored = torch.float32 if low else A.dtype  # eigh has no half kernels: float32 statistics
    decomposition = symmetric_eigh(A.double())
    if decomposition is None:
        return None
    lam, Q = decomposition
    lam = lam.clamp_min(0)
    keep = lam > lam[..., -1:] * torch.finfo(stored).eps
    s = (
        torch.ones((), dtype=torch.float64, device=A.device)
        if scale is None
        else (scale.squeeze(-1).double().clamp_min(torch.finfo(torch.float64).tiny))
    )
    weights = (lam + epsilon / s.square()) ** (-1.0 / root) * s ** (-2.0 / root)
    weights = torch.where(keep, weights, 0.0)
    return ((Q * weights.unsqueeze(-2)) @ Q.mT).to(A.dtype)


class ShampooAlgorithm(MomentumAlgorithm):
    """Shampoo: Delta = L^(-1/4) D R^(-1/4) with L = sum D D^T + eps I, R = sum D^T D + eps I.

    Stages: 1 momentum (none by default), 2 the statistics of the stage-1 direction D (the
    gradient when momentum = 0, as in Cesista's §3.3.2) are accumulated (``accumulate=True``) or
    replaced (``accumulate=False``); every ``precondition_every`` steps the inverse fourth
    roots are recomputed by eigendecomposition, and Delta = L^(-1/4) D R^(-1/4);
    3 none; 4 shape rule (default spectral, like Muon); 5 decay.
    With accumulate=False and epsilon -> 0, L = D D^T, R = D^T D and Delta = U V^T: Muon.
    Each matrix view (..., m, n) keeps L (..., m, m) and R (..., n, n) and their roots (in
    float32 for 16-bit parameters); L and R are stored divided by s^2, s the largest |D| seen
    (gram.py), so gradients of any finite size neither overflow nor underflow them. With row
    ``blocks`` (a fused QKV weight, also with unequal blocks) each block is its own matrix
    with its own L, R, roots and scale (block_state.py), as if it were a separate parameter.

    References: Cesista (2025), "Muon and a Selective Survey on Steepest Descent...", §3.3.2;
    Gupta et al. 2018 (arXiv 1802.09568).
    """

    name = "shampoo"
    defaults: Mapping[str, Any] = {
        **MOMENTUM_DEFAULTS,
        "lr": 0.02,
        "momentum": 0.0,
        "nesterov": False,
        "accumulate": True,
        "epsilon": 1e-12,
        "precondition_every": 1,
        "scale": "spectral",
    }

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        super().validate(who, hp, prefix)
        check_flag(who, f"{prefix}accumulate", hp["accumulate"])
        check_nonnegative(who, f"{prefix}epsilon", hp["epsilon"], 1e-12)
        every = hp["precondition_every"]
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"{who}: {prefix}precondition_every={every!r}; need an int >= 1")
        check_scale(who, hp["scale"])

    def init_state(self, p: torch.Tensor, group: Group) -> State:
        state = super().init_state(p, group)
        *batch, m, n = matrix_shape(p.shape, group["matrix_view"])
        zeros: dict[str, Any] = dict(dtype=work_dtype(p.dtype), device=p.device)
        for i, rows in enumerate(block_rows(group, m)):
            for key, k in (("left", rows), ("right", n)):
                state[block_key(key, i, group)] = torch.zeros(*batch, k, k, **zeros)
                state[block_key(f"{key}_root", i, group)] = torch.zeros(*batch, k, k, **zeros)
            state[block_key("stat_scale", i, group)] = torch.zeros(*batch, 1, 1, **zeros)
        state["step"] = torch.zeros((), dtype=torch.int64, device="cpu")
        return state

    def precondition(
        self, directions: list[torch.Tensor], states: list[State], group: Group
    ) -> list[torch.Tensor]:
        out = []
        for direction, state in zip(directions, states, strict=True):
            D, back = whole_matrix(direction)  # FSDP2: L and R belong to the whole matrix
            X = as_matrices(D, group["matrix_view"]).to(work_dtype(D.dtype))
            rows = block_rows(group, X.shape[-2])
            refresh = int(state["step"]) % group["precondition_every"] == 0
            blocks = block_states(state, _BLOCK_KEYS, len(rows), group)
            parts = [
                self.precondition_block(piece, block, group, refresh)
                for piece, block in zip(split_rows(X, rows), blocks, strict=True)
            ]
            state["step"] += 1
            update = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)
            out.append(back(from_matrices(update, D.shape, group["matrix_view"]).to(D.dtype)))
        return out

    def precondition_block(
        self, X: torch.Tensor, state: State, group: Group, refresh: bool
    ) -> torch.Tensor:
        """One matrix (row block) X with its statistics ``state``: update L and R, refresh
        the roots when due, return the preconditioned direction."""
        running = group["accumulate"]
        statistics = [state["left"], state["right"]]
        Xn = normalize_gram(X, state["stat_scale"], statistics, running)
        for key, stat in (("left", Xn @ Xn.mT), ("right", Xn.mT @ Xn)):
            if running:
                state[key].add_(stat)
            else:
                state[key].copy_(stat)
        if refresh:
            self.refresh_roots(state, group)
        return self.combine(X, state)

    def refresh_roots(self, state: State, group: Group) -> None:
        """left_root = L^(-1/4), right_root = R^(-1/4) (with epsilon), L and R unscaled; a
        root whose eigendecomposition fails keeps its previous value."""
        for key in ("left", "right"):
            root = inverse_root(state[key], 4, group["epsilon"], state["stat_scale"])
            if root is not None:  # else keep the previous root: never raise mid-training
                state[f"{key}_root"].copy_(root)

    def combine(self, X: torch.Tensor, state: State) -> torch.Tensor:
        """The preconditioned direction from the roots."""
        left: torch.Tensor = state["left_root"]
        right: torch.Tensor = state["right_root"]
        return left @ X @ right

    def dualize(self, X: torch.Tensor, group: Group) -> torch.Tensor:
        return X  # the preconditioned direction is new memory; stage 4 scales it in place

    def scale(self, m: int, n: int, group: Group) -> float:
        return scale_factor(group["scale"], m, n)


class CASPRAlgorithm(ShampooAlgorithm):
    """CASPR: Delta = (L~^(-1/2) D + 2 L~^(-1/4) D R~^(-1/4) + D R~^(-1/2)) / 4.

    L~ = L + eps I, R~ = R + eps I with L, R accumulated as in Shampoo. Without accumulation
    Delta = U diag(s / sqrt(s^2 + eps)) V^T -> U V^T (Muon) as eps -> 0. Default epsilon
    1e-8 (relative to gradients of size ~1e-2..1 this keeps Delta within 1e-4 of U V^T).

    References: Cesista (2025), "Muon and a Selective Survey on Steepest Descent...", §3.3.3;
    Surya et al. 2024 (CASPR).
    """

    name = "caspr"
    defaults: Mapping[str, Any] = {**ShampooAlgorithm.defaults, "epsilon": 1e-8}

    def combine(self, X: torch.Tensor, state: State) -> torch.Tensor:
        left: torch.Tensor = state["left_root"]
        right: torch.Tensor = state["right_root"]
        return (left @ (left @ X) + 2 * left @ X @ right + (X @ right) @ right) / 4


register(ShampooAlgorithm())
register(CASPRAlgorithm())


@preset("shampoo")
class Shampoo(Preset):
    """Shampoo on the matrices, AdamW on the rest."""

    algorithm = "shampoo"


@preset("caspr")
class CASPR(Preset):
    """CASPR on the matrices, AdamW on the rest."""

    algorithm = "caspr"
