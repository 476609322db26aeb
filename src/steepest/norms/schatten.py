"""Spectral and Schatten-p norms of the singular values, dualized through the SVD or msign."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from steepest.polar import msign

from .base import Norm, check_bool
from .registry import register_norm

__all__ = ["SchattenP", "Spectral"]

_SVD_DTYPES = (torch.float32, torch.float64)


def _svd_dtype(X: torch.Tensor) -> torch.dtype:
    """The dtype the SVD runs in: X's if float32/float64, else float32 (bf16/fp16 have no SVD)."""
    return X.dtype if X.dtype in _SVD_DTYPES else torch.float32


def singular_values(X: torch.Tensor) -> torch.Tensor:
    """Singular values (descending) of each (..., m, n) matrix, in the SVD dtype."""
    return torch.linalg.svdvals(X.to(_svd_dtype(X)))  # type: ignore[no-any-return]


def _relative_tolerance(shape: torch.Size, dtype: torch.dtype) -> float:
    """max(m, n) * eps(dtype): singular values below this times s_max count as zero."""
    return max(shape[-2], shape[-1]) * torch.finfo(dtype).eps


def schatten_of_singular_values(s: torch.Tensor, p: float) -> torch.Tensor:
    """(sum_i s_i^p)^(1/p) over the last dim, for s >= 0 sorted descending and 1 <= p <= inf.

    Computed as s_max * ||s / s_max||_p so that s^p can neither overflow nor underflow to a
    wrong result; an all-zero s gives 0.
    """
    top = s[..., 0]
    if p == math.inf:
        return top
    ratio = s / torch.where(top > 0, top, 1.0).unsqueeze(-1)
    return top * ratio.pow(p).sum(dim=-1).pow(1.0 / p)


@register_norm("spectral")
class Spectral(Norm):
    """The spectral norm ||X||_{S_inf} = sigma_max(X), dualized by msign (U V^T).

    Math (rms=False): norm = sigma_max, dual_norm = nuclear norm sum_i sigma_i,
    dualize(G) = msign(G) = U V^T (singular directions with sigma = 0 map to zero; a zero G gives
    zeros). rms=True is the RMS -> RMS operator norm of the LMO table for a weight of shape
    (..., d_out, d_in): norm = sqrt(d_in/d_out) sigma_max, dual_norm = sqrt(d_out/d_in) ||G||_nuc,
    dualize = sqrt(d_out/d_in) U V^T (the table's LMO up to its minus sign).

    Exactness: with backend="svd" the identities norm(dualize(G)) = 1 and
    <G, dualize(G)> = dual_norm(G) hold to round-off; the iterative backends only approximate
    U V^T (see steepest.polar.msign for their accuracy), while norm and dual_norm are always exact
    (torch.linalg.svdvals).

    Shapes: (..., m, n); norm and dual_norm return (...).

    Args:
        backend: msign backend, "svd" (exact, default), "newton_schulz", "polar_express" or a
            callable (X, steps) -> X.
        steps: iterations of an iterative backend (default 5).
        dtype: msign compute dtype (None: msign's default).
        coefficients: Newton-Schulz schedule (only with backend="newton_schulz").
        lower_bound: Polar Express lower bound on normalized singular values.
        rms: use the RMS -> RMS scaling of the LMO table (default False).

    The msign arguments are checked at construction by a dry run of msign on a 2 x 2 zero
    matrix (so a callable backend is called once there), raising msign's own message.

    References:
        Cesista (2025), eq. dualizer_{||.||_{2->2}} = U V^T and §4.2.2;
        Beznosikov (2025), the LMO table, column "RMS -> RMS (Spectral)".
    """

    def __init__(
        self,
        backend: str | Callable[[torch.Tensor, int], torch.Tensor] = "svd",
        steps: int = 5,
        dtype: torch.dtype | None = None,
        coefficients: str | Sequence[float] | Sequence[Sequence[float]] | None = None,
        lower_bound: float = 1e-3,
        rms: bool = False,
    ) -> None:
        self.rms = check_bool("Spectral", "rms", rms)
        self.backend = backend
        self.steps = steps
        self.dtype = dtype
        self.coefficients = coefficients
        self.lower_bound = lower_bound
        # msign owns the checks of its arguments; a dry run on a tiny zero matrix makes them
        # fire here, at construction, instead of at the first dualize.
        try:
            self._msign(torch.zeros(2, 2))
        except (TypeError, ValueError) as error:
            raise type(error)(f"Spectral: {error}") from None

    @classmethod
    def examples(cls) -> list[Norm]:
        return [cls(), cls(rms=True)]

    def _msign(self, G: torch.Tensor) -> torch.Tensor:
        return msign(
            G,
            backend=self.backend,
            steps=self.steps,
            dtype=self.dtype,
            coefficients=self.coefficients,
            lower_bound=self.lower_bound,
        )

    def _params(self) -> dict[str, object]:
        params: dict[str, object] = {"backend": self.backend, "steps": self.steps}
        if self.dtype is not None:
            params["dtype"] = self.dtype
        if self.coefficients is not None:
            params["coefficients"] = self.coefficients
        if self.lower_bound != 1e-3:
            params["lower_bound"] = self.lower_bound
        params["rms"] = self.rms
        return params

    def _scale(self, shape: torch.Size) -> float:
        return math.sqrt(shape[-1] / shape[-2]) if self.rms else 1.0

    def _norm(self, X: torch.Tensor) -> torch.Tensor:
        return singular_values(X)[..., 0].to(X.dtype)

    def _dual_norm(self, G: torch.Tensor) -> torch.Tensor:
        return singular_values(G).sum(dim=-1).to(G.dtype)

    def _dualize(self, G: torch.Tensor) -> torch.Tensor:
        return self._msign(G)


def _check_p(p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p):
        raise TypeError(f"SchattenP: p={p!r}; need a real number in [1, inf]")
    if not 1.0 <= p <= math.inf:
        raise ValueError(
            f"SchattenP: p={p!r} is out of range; need 1 <= p <= inf "
            "(p=1 nuclear, p=2 Frobenius, p=inf spectral)"
        )
    return float(p)


@register_norm("schatten")
class SchattenP(Norm):
    """The Schatten-p norm ||X||_{S_p} = (sum_i sigma_i^p)^(1/p), 1 <= p <= inf.

    Math: with 1/p + 1/q = 1, dual_norm(G) = ||G||_{S_q} and, for G = U diag(sigma) V^T,
        dualize(G) = U diag(sigma_i^(q-1)) V^T / ||G||_{S_q}^(q-1)       (Cesista 2025, Prop. 4),
    computed as U diag(r_i^(q-1)) V^T / ||r||_q^(q-1) with r = sigma / sigma_max, which is the
    same matrix but cannot overflow. Special cases: p = 2 gives G / ||G||_F (Frobenius); p = inf
    (q = 1) gives U V^T (Spectral); p = 1 (q = inf, dual = spectral norm) puts all weight on the
    top singular direction, split evenly over ties: U diag(1[sigma_i = sigma_max] / k) V^T with k
    the number of sigma_i >= (1 - tol) sigma_max, tol = 10 max(m, n) eps. For every p, singular
    values <= max(m, n) eps sigma_max count as zero (their directions get zero weight), so a
    rank-deficient G is dualized within its range, and a zero G gives zeros.

    All computations run through torch.linalg.svd in float64 for float64 inputs, float32
    otherwise (cast back to the input dtype).

    Shapes: (..., m, n); norm and dual_norm return (...).

    Args:
        p: the Schatten exponent, a real number in [1, inf] (math.inf for the spectral norm).

    References:
        Cesista (2025), Definition 2, Proposition 4, §4.2 and §4.3.
    """

    def __init__(self, p: float):
        self.p = _check_p(p)
        if self.p == 1.0:
            self.q = math.inf
        elif self.p == math.inf:
            self.q = 1.0
        else:
            self.q = self.p / (self.p - 1.0)

    @classmethod
    def examples(cls) -> list[Norm]:
        return [cls(p) for p in (1, 1.25, 2, 3, 7.5, math.inf)]

    def _params(self) -> dict[str, object]:
        return {"p": self.p}

    def _norm(self, X: torch.Tensor) -> torch.Tensor:
        return schatten_of_singular_values(singular_values(X), self.p).to(X.dtype)

    def _dual_norm(self, G: torch.Tensor) -> torch.Tensor:
        return schatten_of_singular_values(singular_values(G), self.q).to(G.dtype)

    def _dualize(self, G: torch.Tensor) -> torch.Tensor:
        U, s, Vh = torch.linalg.svd(G.to(_svd_dtype(G)), full_matrices=False)
        top = s[..., :1]
        ratio = s / torch.where(top > 0, top, 1.0)
        nonzero = ratio > _relative_tolerance(G.shape, s.dtype)
        if self.q == math.inf:
            tied = ratio >= 1.0 - 10.0 * _relative_tolerance(G.shape, s.dtype)
            weights = (tied & nonzero).to(s.dtype)
            weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1.0)
        elif self.q == 1.0:
            weights = nonzero.to(s.dtype)
        else:
            powered = torch.where(nonzero, ratio, 0.0).pow(self.q - 1.0)
            # ||r||_q^(q-1) = (sum r^q)^((q-1)/q); r_1 = 1 keeps it >= 1 unless G = 0.
            denominator = ratio.pow(self.q).sum(dim=-1, keepdim=True).pow((self.q - 1.0) / self.q)
            weights = powered / torch.where(top > 0, denominator, 1.0)
        return ((U * weights.unsqueeze(-2)) @ Vh).to(G.dtype)  # type: ignore[no-any-return]
