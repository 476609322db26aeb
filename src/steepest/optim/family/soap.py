"""The "soap" member: Adam in the eigenbasis of Shampoo's preconditioners (Vyas et al. 2024)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from steepest.matrices.views import as_matrices, from_matrices, matrix_shape

from ..batching import whole_matrix
from ..block_state import block_key, block_rows, block_states, split_rows
from ..checks import check_flag, check_nonnegative, check_unit_interval
from ..eigen import symmetric_eigh
from ..gram import normalize_gram
from ..precision import work_dtype
from ..presets import Preset, preset
from ..registry import Algorithm, Group, State, register
from ..scaling import check_scale, scale_factor

__all__ = ["SOAP", "SOAPAlgorithm"]

#: The per-block state of SOAP (block_state.py); exp_avg is per parameter.
_BLOCK_KEYS = ("exp_avg_sq", "left", "right", "left_basis", "right_basis", "stat_scale")


class SOAPAlgorithm(Algorithm):
    """SOAP: Adam's update computed in the rotated basis Q_L^T G Q_R.

    Math, per matrix view G_k (betas (b1, b2), call k = 0, 1, 2, ...; t = k Adam steps):
        k = 0: L = (1 - b2) G G^T, R = (1 - b2) G^T G; Q_L, Q_R = eigenvectors of L, R;
               N = 0 (no preconditioned step: the basis has seen only this gradient)
        k >= 1, in this order:
            M <- b1 M + (1 - b1) G                  (in the original basis)
            V <- b2 V + (1 - b2) (Q_L^T G Q_R)^2    (rotated with the previous basis)
            N = Q_L [ (Q_L^T M Q_R / (1 - b1^t)) / (sqrt(V / (1 - b2^t)) + eps) ] Q_R^T
            L <- b2 L + (1 - b2) G G^T,  R <- b2 R + (1 - b2) G^T G
            Q_L, Q_R <- eigenvectors of L, R        (when t is a multiple of
                                                     ``precondition_every``)
        W <- (1 - lr wd) W - lr * scale * N
    This is the order of Vyas et al.'s implementation: the gradient is rotated with the basis
    of the earlier statistics, never with one computed from itself (a basis that diagonalizes
    G G^T makes Q_L^T G Q_R diagonal up to round-off, and M / sqrt(V) blows the round-off up
    to entries of size 1). Conventions that differ from it: eps is added to sqrt(V / (1 -
    b2^t)) (theirs: (sqrt(V) + eps) with the bias corrections in the step size, the same
    with eps / sqrt(1 - b2^t)); the basis is refreshed by an exact eigendecomposition (theirs:
    one power-iteration step and a QR); weight decay also acts on call 0.
    Stages: 1 none (the gradient); 2 the moments, L, R, the basis and the rotated Adam step;
    3 none; 4 scale (default 1); 5 decay. State is float32 for 16-bit parameters. L, R and V
    are stored divided by s^2, s the largest |G| seen (gram.py), and the step is computed in
    units of s: N = Q_L [(Q_L^T (M / s) Q_R / (1 - b1^t)) / (sqrt(V / s^2 / (1 - b2^t)) +
    eps / s)] Q_R^T, the same N, so gradients of any finite size neither overflow nor
    underflow the squares. V is kept when the basis is refreshed. With row ``blocks`` (a
    fused QKV weight, also with unequal blocks) each block is its own matrix with its own L,
    R, bases, V and scale (block_state.py); M is kept for the whole parameter (it is
    elementwise).

    References: N. Vyas et al., "SOAP: Improving and Stabilizing Shampoo using Adam",
    arXiv 2409.11321 (2024), Algorithm 3.
    """

    name = "soap"
    defaults: Mapping[str, Any] = {
        "lr": 3e-3,
        "betas": (0.95, 0.95),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "cautious_weight_decay": False,
        "precondition_every": 10,
        "scale": 1.0,
    }

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        check_nonnegative(who, f"{prefix}lr", hp["lr"], 3e-3)
        betas = hp["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"{who}: {prefix}betas={betas!r} must be a pair; try (0.95, 0.95)")
        check_unit_interval(who, f"{prefix}betas[0]", betas[0], 0.95)
        check_unit_interval(who, f"{prefix}betas[1]", betas[1], 0.95)
        check_nonnegative(who, f"{prefix}eps", hp["eps"], 1e-8)
        check_nonnegative(who, f"{prefix}weight_decay", hp["weight_decay"], 0.0)
        check_flag(who, f"{prefix}cautious_weight_decay", hp["cautious_weight_decay"])
        every = hp["precondition_every"]
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"{who}: {prefix}precondition_every={every!r}; need an int >= 1")
        check_scale(who, hp["scale"])

    def init_state(self, p: torch.Tensor, group: Group) -> State:
        *batch, m, n = matrix_shape(p.shape, group["matrix_view"])
        zeros: dict[str, Any] = dict(dtype=work_dtype(p.dtype), device=p.device)
        state: State = {"exp_avg": torch.zeros(p.shape, **zeros)}
        for i, rows in enumerate(block_rows(group, m)):
            shapes = {
                "exp_avg_sq": (rows, n),
                "left": (rows, rows),
                "right": (n, n),
                "left_basis": (rows, rows),
                "right_basis": (n, n),
                "stat_scale": (1, 1),
            }
            for key, shape in shapes.items():
                state[block_key(key, i, group)] = torch.zeros(*batch, *shape, **zeros)
        state["step"] = torch.zeros((), dtype=torch.int64, device="cpu")
        return state

    def precondition(
        self, directions: list[torch.Tensor], states: list[State], group: Group
    ) -> list[torch.Tensor]:
        beta1 = group["betas"][0]
        out = []
        for direction, state in zip(directions, states, strict=True):
            grad, back = whole_matrix(direction)  # FSDP2: the bases belong to the whole matrix
            view = group["matrix_view"]
            g = grad.to(state["exp_avg"].dtype)
            G = as_matrices(g, view)
            rows = block_rows(group, G.shape[-2])
            t = int(state["step"])  # this call's Adam step; 0 for the initializing call
            state["step"] += 1
            if t > 0:
                state["exp_avg"].lerp_(g, 1 - beta1)
            M = as_matrices(state["exp_avg"], view)
            blocks = block_states(state, _BLOCK_KEYS, len(rows), group)
            parts = [
                self.precondition_block(Gb, Mb, block, group, t)
                for Gb, Mb, block in zip(
                    split_rows(G, rows), split_rows(M, rows), blocks, strict=True
                )
            ]
            N = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)
            out.append(back(from_matrices(N, grad.shape, view).to(grad.dtype)))
        return out

    def precondition_block(
        self, G: torch.Tensor, M: torch.Tensor, state: State, group: Group, t: int
    ) -> torch.Tensor:
        """One matrix (row block): gradient G, first moment M (already updated), its
        statistics ``state``; returns the rotated Adam step N of Adam step t (zero at call
        t = 0, which only initializes L, R and the basis)."""
        beta1, beta2 = group["betas"]
        scale = state["stat_scale"]
        statistics = [state["left"], state["right"], state["exp_avg_sq"]]
        Gn = normalize_gram(G, scale, statistics, running=True)
        N = torch.zeros_like(G)
        if t > 0:
            QL, QR = state["left_basis"], state["right_basis"]
            state["exp_avg_sq"].lerp_((QL.mT @ Gn @ QR).square(), 1 - beta2)
            rotated = (QL.mT @ (M / scale) @ QR) / (1 - beta1**t)  # |M| <= s: no overflow
            denom = (state["exp_avg_sq"] / (1 - beta2**t)).sqrt_().add_(group["eps"] / scale)
            N = QL @ (rotated / denom) @ QR.mT
        state["left"].lerp_(Gn @ Gn.mT, 1 - beta2)
        state["right"].lerp_(Gn.mT @ Gn, 1 - beta2)
        if t % group["precondition_every"] == 0:
            for key in ("left", "right"):
                decomposition = symmetric_eigh(state[key])
                if decomposition is not None:  # else keep the previous basis
                    state[f"{key}_basis"].copy_(decomposition[1])
        return N

    def dualize(self, X: torch.Tensor, group: Group) -> torch.Tensor:
        return X  # the rotated Adam step is new memory; stage 4 scales it in place

    def scale(self, m: int, n: int, group: Group) -> float:
        return scale_factor(group["scale"], m, n)


register(SOAPAlgorithm())


@preset("soap")
class SOAP(Preset):
    """SOAP on the matrices, AdamW on the rest."""

    algorithm = "soap"
