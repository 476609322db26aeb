"""The "normuon" member: Muon followed by a per-neuron second-moment normalization."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from steepest.matrices.views import as_matrices, from_matrices, matrix_shape

from ..batching import whole_matrix
from ..block_state import block_key, block_rows, split_rows
from ..checks import check_choice, check_nonnegative, check_unit_interval
from ..precision import work_dtype
from ..presets import Preset, preset
from ..registry import Group, State, register
from ..scaling import scale_factor
from .muon import MuonAlgorithm

__all__ = ["NorMuon", "NorMuonAlgorithm"]


class NorMuonAlgorithm(MuonAlgorithm):
    """NorMuon: O = msign(M), then each row (neuron) divided by its root second moment.

    Math, per matrix view (m, n), O = msign(D) (stage 3), then (stage 4, with state):
        v <- beta2 v + (1 - beta2) mean_cols(O * O)          (v in R^m)
        O^ = O / (sqrt(v) + eps)  (row-wise)
        u  = scale(m, n) * (||O||_F / ||O^||_F) O^
    The last line restores Muon's update norm, so the shape rule means what it means for Muon;
    with the default scale "rms" (0.2 sqrt(max(m, n))) and full-rank O this is the paper's
    ||u||_F = 0.2 sqrt(m n). With row ``blocks`` (a fused QKV weight) each block is its own
    (m_b, n) matrix: msign, the norm ratio and scale(m_b, n) per block; rows are neurons
    either way, so v is one entry per row of the whole view, and the update equals NorMuon's
    on the blocks as separate parameters.

    ``neurons`` picks the axis of v: "rows" (default, the paper: one entry per output
    neuron), "columns" (one entry per column, v in R^n, mean over rows), or "auto": rows for a
    matrix with m >= n and columns for a wide one (m < n), the shape rule of the NorMuon
    implementations in modded-nanogpt and nanochat. With "columns" or "auto" each row block
    has its own v (state keys "column_second_moment/<block>", or without blocks
    "column_second_moment"), chosen by the block's own shape.

    References: arXiv 2510.05491 (Li et al., NorMuon: Making Muon more efficient and
    scalable), Algorithm 1.
    """

    name = "normuon"
    #: The second moment of stage 4 makes a masked step inexact: stage 1 stays unfused.
    fused_momentum = False
    defaults: Mapping[str, Any] = {
        **MuonAlgorithm.defaults,
        "lr": 0.01,
        "nesterov": False,
        "beta2": 0.95,
        "eps": 1e-8,
        "scale": "rms",
        "neurons": "rows",
    }

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        super().validate(who, hp, prefix)
        check_unit_interval(who, f"{prefix}beta2", hp["beta2"], 0.95)
        check_nonnegative(who, f"{prefix}eps", hp["eps"], 1e-8)
        check_choice(who, f"{prefix}neurons", hp["neurons"], NEURONS)

    def init_state(self, p: torch.Tensor, group: Group) -> State:
        state = super().init_state(p, group)
        *batch, m, n = matrix_shape(p.shape, group["matrix_view"])
        dtype = work_dtype(p.dtype)
        if group["neurons"] == "rows":
            state["neuron_second_moment"] = torch.zeros(*batch, m, dtype=dtype, device=p.device)
            return state
        for i, rows in enumerate(block_rows(group, m)):
            size = rows if _row_axis(group["neurons"], rows, n) else n
            key = block_key("column_second_moment", i, group)
            state[key] = torch.zeros(*batch, size, dtype=dtype, device=p.device)
        return state

    def scale(self, m: int, n: int, group: Group) -> float:
        return 1.0  # applied in rescale, after the per-neuron normalization

    def rescale(
        self, updates: list[torch.Tensor], states: list[State], group: Group
    ) -> list[torch.Tensor]:
        if group["neurons"] != "rows":
            return [
                self.rescale_by_shape(u, s, group) for u, s in zip(updates, states, strict=True)
            ]
        out = []
        for update, state in zip(updates, states, strict=True):
            u, back = whole_matrix(update)  # FSDP2: the whole matrix (v is per row of it)
            v = state["neuron_second_moment"]
            O = as_matrices(u, group["matrix_view"]).to(v.dtype)
            v.lerp_(O.square().mean(dim=-1), 1 - group["beta2"])
            normalized = O / (v.sqrt() + group["eps"]).unsqueeze(-1)
            rows = list(group["blocks"] or [O.shape[-2]])
            pairs = zip(torch.split(O, rows, -2), torch.split(normalized, rows, -2), strict=True)
            for block, new in pairs:
                before = torch.linalg.vector_norm(block, dim=(-2, -1), keepdim=True)
                after = torch.linalg.vector_norm(new, dim=(-2, -1), keepdim=True)
                ratio = torch.where(after > 0, before / torch.where(after > 0, after, 1.0), 0.0)
                m, n = block.shape[-2:]
                new.mul_(ratio * scale_factor(group["scale"], m, n))  # a view: in normalized
            out.append(back(from_matrices(normalized, u.shape, group["matrix_view"]).to(u.dtype)))
        return out

    def rescale_by_shape(self, update: torch.Tensor, state: State, group: Group) -> torch.Tensor:
        """rescale with ``neurons`` "columns" or "auto": per row block, v over the block's
        rows (mean over columns) or columns (mean over rows), then the norm restored."""
        u, back = whole_matrix(update)
        O = as_matrices(u, group["matrix_view"]).to(work_dtype(u.dtype))
        rows = block_rows(group, O.shape[-2])
        pieces = []
        for i, block in enumerate(split_rows(O, rows)):
            m, n = block.shape[-2:]
            axis = -1 if _row_axis(group["neurons"], m, n) else -2
            v = state[block_key("column_second_moment", i, group)]
            v.lerp_(block.square().mean(dim=axis), 1 - group["beta2"])
            new = block / (v.sqrt() + group["eps"]).unsqueeze(axis)
            before = torch.linalg.vector_norm(block, dim=(-2, -1), keepdim=True)
            after = torch.linalg.vector_norm(new, dim=(-2, -1), keepdim=True)
            ratio = torch.where(after > 0, before / torch.where(after > 0, after, 1.0), 0.0)
            pieces.append(new * (ratio * scale_factor(group["scale"], m, n)))
        normalized = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-2)
        return back(from_matrices(normalized, u.shape, group["matrix_view"]).to(u.dtype))


#: The axes NorMuon's second moment can run over (``neurons``).
NEURONS = ("rows", "columns", "auto")


def _row_axis(neurons: str, m: int, n: int) -> bool:
    """True when v has one entry per row of an (m, n) matrix under ``neurons``."""
    return neurons == "rows" or (neurons == "auto" and m >= n)


register(NorMuonAlgorithm())


@preset("normuon")
class NorMuon(Preset):
    """NorMuon on the matrices, AdamW on the rest."""

    algorithm = "normuon"
