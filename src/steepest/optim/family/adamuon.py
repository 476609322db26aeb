"""The "adamuon" member: msign of the sign of the momentum, an element-wise second moment of
the result, and an update of fixed RMS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from steepest.matrices.views import as_matrices, from_matrices

from ..batching import whole_matrix
from ..block_state import block_rows, split_rows
from ..checks import check_flag, check_nonnegative, check_unit_interval
from ..precision import work_dtype
from ..presets import Preset, preset
from ..registry import Group, State, register
from .muon import MuonAlgorithm

__all__ = ["AdaMuon", "AdaMuonAlgorithm"]


class AdaMuonAlgorithm(MuonAlgorithm):
    """AdaMuon: Muon's direction with Adam's element-wise second moment and Adam's RMS.

    Math, per matrix view (m, n) with momentum beta, second-moment factor beta2:
        M <- beta M + (1 - beta) G        (Nesterov: D = (1 - beta) G + beta M, else D = M)
        O = msign(sign(D))                (sign_momentum=False: O = msign(D))
        V <- beta2 V + (1 - beta2) O * O  (element-wise, V the shape of the parameter)
        O^ = O / (sqrt(V) + eps)
        u = update_rms * sqrt(m n) * O^ / ||O^||_F
        W <- (1 - lr wd) W - lr u
    ||u||_F / sqrt(m n) = update_rms (0.2, Adam's typical update RMS), so AdamW's learning
    rates carry over. With row ``blocks`` each block is its own (m_b, n) matrix (msign, norm
    and sqrt(m_b n) per block); V is element-wise either way. V has no bias correction: the
    RMS rescaling removes any scalar factor.

    References: Si, Zhang, Shen, "AdaMuon: Adaptive Muon Optimizer", arXiv 2507.11005
    (v2, Alg. 1: sign-stabilized orthogonal update, element-wise second moment of O,
    RMS-aligned rescaling 0.2 sqrt(mn) / ||O^||_F).
    """

    name = "adamuon"
    defaults: Mapping[str, Any] = {
        **MuonAlgorithm.defaults,
        "lr": 0.01,
        "nesterov": True,
        "beta2": 0.95,
        "eps": 1e-8,
        "sign_momentum": True,
        "update_rms": 0.2,
        "scale": 1.0,
    }

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        super().validate(who, hp, prefix)
        check_unit_interval(who, f"{prefix}beta2", hp["beta2"], 0.95)
        check_nonnegative(who, f"{prefix}eps", hp["eps"], 1e-8)
        check_flag(who, f"{prefix}sign_momentum", hp["sign_momentum"])
        check_nonnegative(who, f"{prefix}update_rms", hp["update_rms"], 0.2)
        if hp["update_rms"] == 0:
            raise ValueError(f"{who}: {prefix}update_rms=0 must be > 0; try 0.2")
        if hp["scale"] != 1.0:
            raise ValueError(
                f"{who}: {prefix}scale={hp['scale']!r}; adamuon sets the update size with "
                "update_rms (scale must stay 1.0)"
            )

    def init_state(self, p: torch.Tensor, group: Group) -> State:
        state = super().init_state(p, group)
        # the whole matrix's shape (a plain tensor also for an FSDP2 shard: rescale sees
        # the whole update)
        state["second_moment"] = torch.zeros(p.shape, dtype=work_dtype(p.dtype), device=p.device)
        return state

    #: stage 1 differs from Muon's plain EMA momentum, so neither the fused stage 1 nor the
    #: prescaled float16 stack applies
    fused_momentum = False
    scale_invariant = False

    def uncapturable(self, group: Group) -> str:
        return "stages 1 and 4 differ from Muon's recorded ones"

    def accumulate(
        self, grads: list[torch.Tensor], states: list[State], group: Group
    ) -> list[torch.Tensor]:
        directions = super().accumulate(grads, states, group)
        if not group["sign_momentum"]:
            return directions
        return [torch.sign(d) for d in directions]

    def scale(self, m: int, n: int, group: Group) -> float:
        return 1.0  # the RMS rescaling in rescale sets the size

    def rescale(
        self, updates: list[torch.Tensor], states: list[State], group: Group
    ) -> list[torch.Tensor]:
        out = []
        for update, state in zip(updates, states, strict=True):
            u, back = whole_matrix(update)
            V = state["second_moment"]
            V.lerp_(u.to(V.dtype).square(), 1 - group["beta2"])
            normalized = u.to(V.dtype) / (V.sqrt() + group["eps"])
            X = as_matrices(normalized, group["matrix_view"])
            for block in split_rows(X, block_rows(group, X.shape[-2])):
                m, n = block.shape[-2:]
                norm = torch.linalg.vector_norm(block, dim=(-2, -1), keepdim=True)
                target = group["update_rms"] * (m * n) ** 0.5
                block.mul_(torch.where(norm > 0, target / torch.where(norm > 0, norm, 1.0), 0.0))
            out.append(back(from_matrices(X, u.shape, group["matrix_view"]).to(u.dtype)))
        return out


register(AdaMuonAlgorithm())


@preset("adamuon")
class AdaMuon(Preset):
    """AdaMuon on the matrices, AdamW on the rest."""

    algorithm = "adamuon"
