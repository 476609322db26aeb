"""The "dion" member: orthonormalized low-rank updates by amortized power iteration with
error feedback (Dion)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from steepest.matrices.views import as_matrices, from_matrices, matrix_shape

from ..batching import whole_matrix
from ..block_state import block_key, block_rows, block_states, split_rows
from ..checks import check_choice, check_flag, check_nonnegative, check_unit_interval
from ..precision import work_dtype
from ..presets import Preset, preset
from ..registry import Algorithm, Group, State, register
from ..scaling import check_scale, scale_factor

if TYPE_CHECKING:
    from steepest.distributed.row_shards import RowShards

__all__ = ["ORTHONORMALIZERS", "Dion", "DionAlgorithm", "dion_rank", "orthonormalize_columns"]

#: How P = B Q is given orthonormal columns: Householder QR, or randomized Cholesky-QR.
ORTHONORMALIZERS = ("qr", "cholesky_qr")

#: The per-block state of Dion (block_state.py): the error-feedback momentum and Q.
_BLOCK_KEYS = ("momentum_buffer", "right_factor")


def dion_rank(m: int, n: int, rank: int | None, rank_fraction: float) -> int:
    """The power iteration's rank r for an (m, n) matrix: ``rank`` (at most min(m, n)) if
    given, else ceil(rank_fraction * min(m, n)), at least 1."""
    full = min(m, n)
    if rank is not None:
        return min(rank, full)
    return max(1, min(full, math.ceil(rank_fraction * full)))


def orthonormalize_columns(
    P: torch.Tensor, method: str, seed: int = 0, shards: RowShards | None = None
) -> torch.Tensor:
    """An orthonormal basis of the column space of each (..., m, r) matrix P, r <= m.

    "qr": the Q factor of torch.linalg.qr. "cholesky_qr": randomized Cholesky-QR: sketch
    S P with a Gaussian S of (ceil(1.25 r), m) scaled by 1/sqrt(rows) (drawn from ``seed``),
    R from the QR of the small sketch, P R^(-1), then one Cholesky-QR pass (P^T P = L L^T,
    P L^(-T)) to restore orthonormality; matrices whose Gram matrix is not positive
    definite (rank-deficient P) fall back to QR.

    ``shards``: P (m, r) is this rank's rows of a matrix split over ranks; the result is this
    rank's rows of the basis. "qr" all-gathers P (m x r); "cholesky_qr" all-reduces the
    sketch S P (ceil(1.25 r) x r) and the Gram matrix (r x r), the paper's distributed form.

    References: Ahn et al., "Dion: Distributed Orthonormalized Updates", arXiv 2504.05295,
    the randomized Cholesky-QR of the orthonormalization step; Fukaya et al., CholeskyQR2.
    """
    if method == "qr":
        return _householder(P, shards)
    r = P.shape[-1]
    m = P.shape[-2] if shards is None else shards.rows
    rows = min(m, math.ceil(1.25 * r))
    gen = torch.Generator(device=P.device).manual_seed(seed)
    S = torch.randn(rows, m, generator=gen, device=P.device, dtype=P.dtype) / math.sqrt(rows)
    if shards is None:
        sketch = S @ P
    else:
        sketch = shards.sum(shards.columns(S) @ P)
    R = torch.linalg.qr(sketch).R
    Y = torch.linalg.solve_triangular(R, P, upper=True, left=False)
    gram = Y.mT @ Y
    if shards is not None:
        gram = shards.sum(gram.contiguous())
    L, info = torch.linalg.cholesky_ex(gram)
    Z: torch.Tensor = torch.linalg.solve_triangular(L.mT, Y, upper=True, left=False)
    if shards is None:
        good = (info == 0) & Z.isfinite().all(dim=(-2, -1))
    else:  # decided on the replicated Gram factor, the same on every rank
        good = (info == 0) & L.isfinite().all(dim=(-2, -1))
    if bool(good.all()):
        return Z
    fallback = _householder(P, shards)
    return torch.where(good[..., None, None], torch.nan_to_num(Z), fallback)


def _householder(P: torch.Tensor, shards: RowShards | None) -> torch.Tensor:
    """The Q factor of torch.linalg.qr of P (of the gathered (m, r) P under ``shards``, cut
    back to this rank's rows)."""
    if shards is None:
        exact: torch.Tensor = torch.linalg.qr(P).Q
        return exact
    whole: torch.Tensor = torch.linalg.qr(shards.gather(P.contiguous())).Q
    return shards.mine(whole)


class DionAlgorithm(Algorithm):
    """Dion: one step of power iteration per update on the momentum, with error feedback.

    Math, per matrix view (m, n) with momentum mu, rank r, right factor Q (n, r):
        B = M + G
        P = orthonormalize(B Q)                       (m, r), QR or randomized Cholesky-QR
        R = B^T P                                      (n, r)
        M <- B - (1 - mu) P R^T                        (error feedback)
        Q <- column_normalize(R)                       (a zero column of R: no update
                                                        along it, Q keeps its old column)
        W <- (1 - lr wd) W - lr * scale(m, n) * P Q^T  (default scale sqrt(m / n))
    ``power_iterations`` > 1 repeats the two middle lines with the new Q before the error
    feedback (the paper uses 1, amortized over steps by the warm start). r is ``rank``, or
    ceil(rank_fraction * min(m, n)). Q starts as Gaussian columns of unit norm drawn from
    ``seed`` (the same on every process); the iteration runs in float32 for 16-bit
    parameters, on B divided by its Frobenius norm (the update is scale invariant; the
    error feedback is scaled back). With row ``blocks`` each block is its own matrix with
    its own M and Q.

    When Q spans B's top right singular vectors (at full rank r = min(m, n): after the power
    iteration has converged, e.g. with many ``power_iterations``), P Q^T = U V^T, and since
    B_t = mu B_(t-1) + G_t is Muon's momentum divided by (1 - mu), Dion is Muon (plain
    momentum) with an exact polar factor.

    Distributed: under FSDP2 (a DTensor placed ``(Shard(0),)``, read as one matrix whose
    rows are its dim 0) each rank keeps M for its rows only and runs the iteration on them;
    P = B Q stays row-sharded, and the ranks exchange only small factors
    (steepest.distributed.row_shards): ||B||_F^2 (one number), P (m x r, all-gathered for
    "qr") or the sketch S P and the Gram matrix (for "cholesky_qr"), and R = B^T P
    (n x r, all-reduced). The update's rows are then local, so no exchange of whole
    matrices follows; the result is the single-process one. Other DTensors (3-D stacks, row
    blocks, transposed views) are gathered whole; under DDP every rank computes the whole
    (replicated) update. With ``sync_factors=True`` (data parallel without DDP's gradient
    all-reduce: each rank's gradients are its own) every rank keeps its own M_i and the
    ranks average only B_i Q (m x r) and B_i^T P (n x r); since every step is linear in B,
    mean_i M_i follows the momentum of the mean gradient, and the update equals the one
    process's on the mean gradient (the paper's decoupled momentum, (m + n) r numbers per
    matrix instead of m n).

    References: Ahn, Xu, Abreu, Fan, Magakyan, Sharma, Zhan, Langford, "Dion: Distributed
    Orthonormalized Updates", arXiv 2504.05295, Alg. 1 (single device) and its distributed
    form (sharded power iteration with all-reduces of the low-rank factors).
    """

    name = "dion"
    update_in_stage2 = True
    defaults: Mapping[str, Any] = {
        "lr": 0.02,
        "momentum": 0.95,
        "weight_decay": 0.0,
        "cautious_weight_decay": False,
        "rank": None,
        "rank_fraction": 1.0,
        "orthonormalize": "qr",
        "power_iterations": 1,
        "seed": 0,
        "scale": "spectral",
        "sync_factors": False,
    }

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        check_nonnegative(who, f"{prefix}lr", hp["lr"], 0.02)
        check_unit_interval(who, f"{prefix}momentum", hp["momentum"], 0.95)
        check_nonnegative(who, f"{prefix}weight_decay", hp["weight_decay"], 0.0)
        check_flag(who, f"{prefix}cautious_weight_decay", hp["cautious_weight_decay"])
        rank = hp["rank"]
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueError(f"{who}: {prefix}rank={rank!r} must be None or an int >= 1")
        fraction = hp["rank_fraction"]
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise ValueError(f"{who}: {prefix}rank_fraction={fraction!r} must be in (0, 1]")
        if not 0 < fraction <= 1:
            raise ValueError(f"{who}: {prefix}rank_fraction={fraction!r} must be in (0, 1]")
        check_choice(who, f"{prefix}orthonormalize", hp["orthonormalize"], ORTHONORMALIZERS)
        check_flag(who, f"{prefix}sync_factors", hp["sync_factors"])
        for key in ("power_iterations", "seed"):
            value, low = hp[key], 1 if key == "power_iterations" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{who}: {prefix}{key}={value!r} must be an int >= {low}")
        check_scale(who, hp["scale"])

    def init_state(self, p: torch.Tensor, group: Group) -> State:
        *batch, m, n = matrix_shape(p.shape, group["matrix_view"])
        dtype = work_dtype(p.dtype)
        gen = torch.Generator().manual_seed(group["seed"])
        state: State = {}
        for i, rows in enumerate(block_rows(group, m)):
            r = dion_rank(rows, n, group["rank"], group["rank_fraction"])
            Q = torch.randn(*batch, n, r, generator=gen, dtype=torch.float64)
            Q = Q / torch.linalg.vector_norm(Q, dim=-2, keepdim=True).clamp_min(1e-30)
            state[block_key("right_factor", i, group)] = Q.to(dtype=dtype, device=p.device)
            if _row_sharded(p, group):  # FSDP2: M keeps this rank's rows only
                from steepest.distributed.row_shards import zeros_like_rows

                momentum: torch.Tensor = zeros_like_rows(p, n, dtype)  # type: ignore[arg-type]
            else:
                momentum = torch.zeros(*batch, rows, n, dtype=dtype, device=p.device)
            state[block_key("momentum_buffer", i, group)] = momentum
        return state

    def precondition(
        self, directions: list[torch.Tensor], states: list[State], group: Group
    ) -> list[torch.Tensor]:
        average = _factor_average(directions, group) if group["sync_factors"] else None
        out = []
        for direction, state in zip(directions, states, strict=True):
            if average is not None:
                X = as_matrices(direction, group["matrix_view"]).to(work_dtype(direction.dtype))
                rows = block_rows(group, X.shape[-2])
                blocks = block_states(state, _BLOCK_KEYS, len(rows), group)
                parts = [
                    self.power_step(piece, block, group, None, average)
                    for piece, block in zip(split_rows(X, rows), blocks, strict=True)
                ]
                update = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)
                shape = direction.shape
                out.append(from_matrices(update, shape, group["matrix_view"]).to(direction.dtype))
                continue
            if _row_sharded(direction, group):
                out.append(self.sharded_step(direction, state, group))
                continue
            G, back = whole_matrix(direction)  # a DTensor in other placements: gathered
            X = as_matrices(G, group["matrix_view"]).to(work_dtype(G.dtype))
            rows = block_rows(group, X.shape[-2])
            blocks = block_states(state, _BLOCK_KEYS, len(rows), group)
            parts = [
                self.power_step(piece, block, group, None)
                for piece, block in zip(split_rows(X, rows), blocks, strict=True)
            ]
            update = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)
            out.append(back(from_matrices(update, G.shape, group["matrix_view"]).to(G.dtype)))
        return out

    def sharded_step(self, direction: torch.Tensor, state: State, group: Group) -> torch.Tensor:
        """The power iteration on this rank's rows of a row-sharded (FSDP2) direction: its
        momentum rows are local, Q is replicated, and only the small factors travel
        (steepest.distributed.row_shards). Returns this rank's rows of the update."""
        from steepest.distributed.row_shards import RowShards, like

        shards = RowShards.of(direction)
        assert shards is not None  # _row_sharded checked the placements
        local = direction.to_local()  # type: ignore[attr-defined]
        m, n = matrix_shape(direction.shape, group["matrix_view"])
        G = local.reshape(local.shape[0], n).to(work_dtype(local.dtype))
        momentum = state["momentum_buffer"].to_local()  # this rank's rows of M
        block = {"momentum_buffer": momentum, "right_factor": state["right_factor"]}
        update = self.power_step(G, block, group, shards)
        return like(direction, update.reshape(local.shape).to(local.dtype))  # type: ignore[arg-type]

    def power_step(
        self,
        G: torch.Tensor,
        state: State,
        group: Group,
        shards: RowShards | None,
        average: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """One matrix (row block) G with its M and Q: update both, return scale * P Q^T.

        ``shards``: G, M and P are this rank's rows of matrices split over ranks (FSDP2);
        the Frobenius norm (one number), P's orthonormalization and R = B^T P are then
        summed over the ranks, and the result is this rank's rows of the update.
        ``average`` (``sync_factors``): G and M are this rank's own; B Q and B^T P are
        averaged over the ranks, and B is not normalized (its mean's norm is unknown; the
        update is scale invariant)."""
        M, Q = state["momentum_buffer"], state["right_factor"]
        m = G.shape[-2] if shards is None else shards.rows
        B = M + G
        if average is not None:
            size = torch.ones((1, 1), dtype=B.dtype, device=B.device)
        elif shards is None:
            size = torch.linalg.vector_norm(B, dim=(-2, -1), keepdim=True, dtype=torch.float64)
        else:
            squares = B.double().square().sum().reshape(1, 1)
            size = shards.sum(squares).sqrt()
        size = torch.where(size > 0, size, 1.0).to(B.dtype)
        Bn = B / size
        P, R, normalized = Bn, Q, Q  # replaced below: power_iterations >= 1
        for _ in range(group["power_iterations"]):
            BQ = Bn @ Q if average is None else average(Bn @ Q)
            P = orthonormalize_columns(BQ, group["orthonormalize"], group["seed"], shards)
            R = Bn.mT @ P
            if shards is not None:
                R = shards.sum(R.contiguous())
            elif average is not None:
                R = average(R)
            norms = torch.linalg.vector_norm(R, dim=-2, keepdim=True)
            live = norms > 0  # a zero column of R (B has no mass there) adds nothing
            normalized = R / torch.where(live, norms, 1.0)
            Q = torch.where(live, normalized, Q)
        M.copy_(B - (1 - group["momentum"]) * size * (P @ R.mT))
        state["right_factor"].copy_(Q)
        update: torch.Tensor = P @ normalized.mT
        return update * scale_factor(group["scale"], m, G.shape[-1])

    def dualize(self, X: torch.Tensor, group: Group) -> torch.Tensor:
        return X  # stage 2 returns the orthonormalized update scale * P Q^T


def _factor_average(
    directions: list[torch.Tensor], group: Group
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The mean over the ranks of the default process group (``sync_factors``); raises if
    there is no process group or a direction is a DTensor."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "Dion: sync_factors=True needs an initialized torch.distributed process group "
            "(each rank holding its own gradients); use sync_factors=False in one process"
        )
    for d in directions:
        if type(d).__name__ == "DTensor":
            raise ValueError(
                f"Dion: sync_factors=True is for plain (replicated) parameters; a direction "
                f"of shape {tuple(d.shape)} is a DTensor (FSDP2 shards use the sharded "
                "power iteration without it)"
            )
    from steepest.distributed import all_reduce_mean

    def mean(t: torch.Tensor) -> torch.Tensor:
        t = t.contiguous()
        all_reduce_mean([t])
        return t

    return mean


def _row_sharded(t: torch.Tensor, group: Group) -> bool:
    """True for a DTensor placed (Shard(0),) on a 1-D mesh (FSDP2) read as one matrix whose
    rows are its dim 0 (ndim 2, or ndim >= 4 / "flatten"; no row blocks): Dion then runs on
    the local rows. Other DTensors are gathered whole."""
    if type(t).__name__ != "DTensor" or group["blocks"] is not None:
        return False
    view = group["matrix_view"]
    if view not in ("auto", "flatten") or (view == "auto" and t.ndim == 3) or t.ndim < 2:
        return False
    from steepest.distributed.row_shards import RowShards

    return RowShards.of(t) is not None


register(DionAlgorithm())


@preset("dion")
class Dion(Preset):
    """Dion on the matrices, AdamW on the rest."""

    algorithm = "dion"
