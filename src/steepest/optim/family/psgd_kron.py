"""The "psgd_kron" member: PSGD with a Kronecker-factored preconditioner P = (Q_l^T Q_l) x
(Q_r^T Q_r), each factor fitted by the PSGD whitening criterion."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import torch

from steepest.matrices.views import as_matrices, from_matrices, matrix_shape

from ..batching import whole_matrix
from ..block_state import block_key, block_rows, block_states, split_rows
from ..checks import check_choice, check_nonnegative
from ..momentum import MOMENTUM_DEFAULTS, MomentumAlgorithm
from ..precision import work_dtype
from ..presets import Preset, preset
from ..registry import Group, State, register
from ..scaling import check_scale, scale_factor

__all__ = [
    "FACTORS",
    "PSGDKron",
    "PSGDKronAlgorithm",
    "norm_lower_bound",
    "update_probability",
]

#: Each side's factor: upper-triangular (m, m), a diagonal (m,), or "auto" (triangular up to
#: AUTO_TRIANGULAR_MAX, diagonal above).
FACTORS = ("triangular", "diagonal", "auto")
AUTO_TRIANGULAR_MAX: Final = 8192

#: The per-block state (block_state.py): the two factors.
_BLOCK_KEYS = ("left_factor", "right_factor")


def update_probability(step: int, schedule: float | tuple[float, ...]) -> float:
    """The probability of refitting the preconditioner at ``step`` (0-based): a constant, or
    for (max_p, min_p, decay, flat_steps) max_p during the first flat_steps steps, then
    max_p exp(-decay (step - flat_steps)), never below min_p (the schedule of the kron
    implementations of PSGD: (1.0, 0.03, 0.001, 500))."""
    if not isinstance(schedule, tuple):
        return float(schedule)
    high, low, decay, flat = schedule
    return max(low, min(high, high * math.exp(-decay * max(0.0, step - flat))))


def norm_lower_bound(A: torch.Tensor) -> torch.Tensor:
    """A lower bound of the spectral norm of each symmetric (..., k, k) matrix A, (..., 1, 1):
    ||A x|| / ||x|| for x the column of A of largest norm (at least max |A_ij|)."""
    columns = torch.linalg.vector_norm(A, dim=-2, keepdim=True)  # (..., 1, k)
    index = columns.argmax(dim=-1, keepdim=True).expand(*A.shape[:-1], 1)
    x = torch.gather(A, -1, index)  # (..., k, 1)
    x = x / torch.linalg.vector_norm(x, dim=-2, keepdim=True).clamp_min(torch.finfo(A.dtype).tiny)
    bound: torch.Tensor = torch.linalg.vector_norm(A @ x, dim=-2, keepdim=True)
    return bound


class PSGDKronAlgorithm(MomentumAlgorithm):
    """PSGD-Kron: momentum, preconditioned by Kronecker factors fitted to whiten it.

    Math, per matrix view (m, n) with momentum M (EMA, beta 0.9), N = M / rms(M):
        P N = Q_l^T Q_l N Q_r^T Q_r                          (the preconditioned direction)
    With probability p_t (``precondition_probability``) the factors are refitted first, on N
    and a Gaussian V (m, n): A = Q_l N Q_r^T, B = Q_l^(-T) V Q_r^(-1), and for each side
        Q_l <- Q_l - mu / ||A A^T + B B^T|| * triu(A A^T - B B^T) Q_l
        Q_r <- Q_r - mu / ||A^T A + B^T B|| * triu(A^T A - B^T B) Q_r
    (a diagonal factor takes the diagonals of those matrices, elementwise; ||.|| a lower
    bound of the spectral norm, norm_lower_bound), mu = ``precondition_lr``. At the fit's
    fixed point E[A A^T] = E[B B^T] (and the same on the right): P whitens N. The update
    u = P N is clipped to RMS ``clip_rms`` (1.1), W <- (1 - lr wd) W - lr * scale * u (so lr,
    default 3e-3, is in Adam's units).
    Q_l, Q_r start as identities. Dividing M by its RMS (in float64) makes the step
    independent of the gradient's scale and keeps A A^T finite; since the whitening
    preconditioner of c N is P / c, the fixed point's direction P N is unchanged.
    The random draws (the refit coin and V) come from a generator seeded by ``seed`` and the
    step, so runs and resumed runs repeat exactly. Factors are float32 for 16-bit weights.

    When the preconditioner is refitted to one fixed gradient G = U S V^T (momentum 0,
    probability 1: the instantaneous preconditioner), the fixed point is
    Q_l^T Q_l ∝ (G G^T)^(-1/4), Q_r^T Q_r ∝ (G^T G)^(-1/4) and P G ∝ U V^T: the whitened update
    approaches Muon's orthogonalized one (tests/optim/test_psgd_kron.py measures it).

    References: Li, "Preconditioned Stochastic Gradient Descent", arXiv 1512.04202 (the
    criterion and Kronecker-product preconditioners, §IV); Li, "Preconditioner on Matrix Lie
    Group for SGD", arXiv 1809.10232 (the triangular-factor update with normalized step);
    Pooladzandi & Li, "Curvature-Informed SGD via General Purpose Lie-Group Preconditioners",
    arXiv 2402.04553; Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and
    Non-Riemannian Manifolds" (2025), §3.3.4 (PSGD whitens; Muon as its instantaneous version).
    """

    name = "psgd_kron"
    defaults: Mapping[str, Any] = {
        **MOMENTUM_DEFAULTS,
        "lr": 3e-3,
        "momentum": 0.9,
        "nesterov": False,
        "precondition_lr": 0.1,
        "precondition_probability": (1.0, 0.03, 0.001, 500),
        "factors": "auto",
        "clip_rms": 1.1,
        "seed": 0,
        "scale": 1.0,
    }

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        super().validate(who, hp, prefix)
        if hp["nesterov"]:
            raise ValueError(f"{who}: {prefix}nesterov=True is not a psgd_kron option; pass False")
        check_nonnegative(who, f"{prefix}precondition_lr", hp["precondition_lr"], 0.1)
        if not 0 < hp["precondition_lr"] <= 1:
            raise ValueError(
                f"{who}: {prefix}precondition_lr={hp['precondition_lr']!r} must be in (0, 1]; "
                "try 0.1"
            )
        _check_probability(who, f"{prefix}precondition_probability", hp["precondition_probability"])
        check_choice(who, f"{prefix}factors", hp["factors"], FACTORS)
        clip = hp["clip_rms"]
        if clip is not None:
            check_nonnegative(who, f"{prefix}clip_rms", clip, 1.1)
            if clip == 0:
                raise ValueError(f"{who}: {prefix}clip_rms=0 must be > 0 or None (no clipping)")
        seed = hp["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{who}: {prefix}seed={seed!r} must be an int >= 0")
        check_scale(who, hp["scale"])

    def init_state(self, p: torch.Tensor, group: Group) -> State:
        state = super().init_state(p, group)
        *batch, m, n = matrix_shape(p.shape, group["matrix_view"])
        options: dict[str, Any] = dict(dtype=work_dtype(p.dtype), device=p.device)
        for i, rows in enumerate(block_rows(group, m)):
            for key, k in (("left_factor", rows), ("right_factor", n)):
                if _triangular(group["factors"], k):
                    factor = torch.eye(k, **options).expand(*batch, k, k).clone()
                else:
                    factor = torch.ones(*batch, k, **options)
                state[block_key(key, i, group)] = factor
        state["step"] = torch.zeros((), dtype=torch.int64, device="cpu")
        return state

    def uncapturable(self, group: Group) -> str:
        return "the refit coin is drawn on the host"

    def precondition(
        self, directions: list[torch.Tensor], states: list[State], group: Group
    ) -> list[torch.Tensor]:
        out = []
        for direction, state in zip(directions, states, strict=True):
            D, back = whole_matrix(direction)  # FSDP2: the factors belong to the whole matrix
            X = as_matrices(D, group["matrix_view"]).to(work_dtype(D.dtype))
            step = int(state["step"])
            gen = torch.Generator(device=X.device).manual_seed(group["seed"] * 1_000_003 + step)
            p = update_probability(step, group["precondition_probability"])
            refit = p >= 1 or bool(torch.rand((), generator=gen, device=X.device) < p)
            rows = block_rows(group, X.shape[-2])
            blocks = block_states(state, _BLOCK_KEYS, len(rows), group)
            parts = [
                self.precondition_block(piece, block, group, gen if refit else None)
                for piece, block in zip(split_rows(X, rows), blocks, strict=True)
            ]
            state["step"] += 1
            update = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)
            out.append(back(from_matrices(update, D.shape, group["matrix_view"]).to(D.dtype)))
        return out

    def precondition_block(
        self, X: torch.Tensor, state: State, group: Group, gen: torch.Generator | None
    ) -> torch.Tensor:
        """One matrix (row block) X: refit the factors (when ``gen`` is given), return the
        clipped P (X / rms(X))."""
        rms = torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True, dtype=torch.float64)
        rms = rms / math.sqrt(X.shape[-2] * X.shape[-1])
        N = X / torch.where(rms > 0, rms, 1.0).to(X.dtype)
        left, right = state["left_factor"], state["right_factor"]
        if gen is not None and bool((rms > 0).all()):  # a zero direction carries no fit
            V = torch.randn(N.shape, generator=gen, device=N.device, dtype=N.dtype)
            fit_factors(left, right, N, V, group["precondition_lr"])
        u = _apply(left, _apply(left, N, transpose=False), transpose=True)  # Q_l^T Q_l N
        u = _apply(right, _apply(right, u.mT, transpose=False), transpose=True).mT
        if group["clip_rms"] is not None:
            size = torch.linalg.vector_norm(u, dim=(-2, -1), keepdim=True)
            size = size / math.sqrt(u.shape[-2] * u.shape[-1])
            u = u * (group["clip_rms"] / size.clamp_min(group["clip_rms"]))
        return u

    def dualize(self, X: torch.Tensor, group: Group) -> torch.Tensor:
        return X  # stage 2 returns the preconditioned direction

    def scale(self, m: int, n: int, group: Group) -> float:
        return scale_factor(group["scale"], m, n)


def fit_factors(
    left: torch.Tensor, right: torch.Tensor, N: torch.Tensor, V: torch.Tensor, lr: float
) -> None:
    """One PSGD refit of the factors (in place) on direction N and Gaussian V (..., m, n)."""
    A = _apply(right, _apply(left, N, transpose=False).mT, transpose=False).mT  # Q_l N Q_r^T
    B = _solve(left, V)  # Q_l^(-T) V
    B = _solve(right, B.mT).mT  # Q_l^(-T) V Q_r^(-1)
    for factor, a, b in ((left, A, B), (right, A.mT, B.mT)):
        if factor.ndim == a.ndim:  # triangular
            grow, shrink = a @ a.mT, b @ b.mT
            bound = norm_lower_bound(grow + shrink)
            tiny = torch.finfo(a.dtype).tiny
            factor.sub_(torch.triu(grow - shrink) @ factor * (lr / bound.clamp_min(tiny)))
        else:  # diagonal
            grow, shrink = a.square().sum(-1), b.square().sum(-1)
            bound = (grow + shrink).amax(dim=-1, keepdim=True)
            factor.sub_(
                (grow - shrink) * factor * (lr / bound.clamp_min(torch.finfo(a.dtype).tiny))
            )


def _apply(factor: torch.Tensor, X: torch.Tensor, *, transpose: bool) -> torch.Tensor:
    """Q X (or Q^T X) for a triangular (..., m, m) or diagonal (..., m) factor Q, X (..., m, n)."""
    if factor.ndim == X.ndim:
        return (factor.mT if transpose else factor) @ X
    return factor.unsqueeze(-1) * X


def _solve(factor: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Q^(-T) X for a triangular or diagonal factor Q (X's rows are Q's side)."""
    if factor.ndim == X.ndim:
        solved: torch.Tensor = torch.linalg.solve_triangular(factor.mT, X, upper=False)
        return solved
    return X / factor.unsqueeze(-1)


def _triangular(factors: str, size: int) -> bool:
    return factors == "triangular" or (factors == "auto" and size <= AUTO_TRIANGULAR_MAX)


def _check_probability(who: str, name: str, value: Any) -> None:
    """A probability in (0, 1], or (max_p, min_p, decay, flat_steps) with 0 < min_p <= max_p
    <= 1, decay >= 0 and flat_steps >= 0."""
    ok = False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ok = 0 < value <= 1
    elif isinstance(value, tuple) and len(value) == 4:
        high, low, decay, flat = value
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ok = numbers and 0 < low <= high <= 1 and decay >= 0 and flat >= 0
    if not ok:
        raise ValueError(
            f"{who}: {name}={value!r} must be a probability in (0, 1] or a tuple (max_p, min_p, "
            "decay, flat_steps) with 0 < min_p <= max_p <= 1; try (1.0, 0.03, 0.001, 500)"
        )


register(PSGDKronAlgorithm())


@preset("psgd_kron")
class PSGDKron(Preset):
    """PSGD-Kron on the matrices, AdamW on the rest."""

    algorithm = "psgd_kron"
