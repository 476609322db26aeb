"""msign: the polar factor U V^T of batched matrices, with one backend chosen per call."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import torch

from .aol import PRECONDITIONERS, aol_rescale_with_gram
from .gram import gram_quintic_iteration
from .iteration import odd_quintic_iteration
from .kernels import KERNELS, resolve_kernel
from .newton_schulz import Coefficients, newton_schulz_coefficients
from .polar_express import polar_express_coefficients
from .svd import polar_svd

__all__ = [
    "BACKENDS",
    "FORMS",
    "GRAM_MIN_ASPECT",
    "NORMALIZATION_SAFETY",
    "PolarConfig",
    "default_compute_dtype",
    "iteration_dtype",
    "msign",
    "msign_normed",
]

#: The backend names msign accepts (a callable (X, steps) -> X is accepted too).
BACKENDS: Final = ("svd", "newton_schulz", "polar_express")

#: Polar Express (and callable backends) first divide G by NORMALIZATION_SAFETY * ||G||_F
#: (+ eps). Since ||G||_F >= ||G||_2 this puts every singular value in [0, 1 / 1.01], leaving
#: room for round-off in low precision (arXiv 2505.16932, Algorithm 1; §4.3 for u = 1).
#: Newton-Schulz divides by ||G||_F (+ eps) as Cesista (2025) Alg. 2 states, so that its
#: trajectory matches the reference Muon (and torch.optim.Muon) exactly.
NORMALIZATION_SAFETY: Final = 1.01

#: How the iterative backends evaluate their steps: "direct" (on X), "gram" (on the small Gram
#: matrix X X^T, steepest.polar.gram) or "auto" (gram where long side >= GRAM_MIN_ASPECT * short
#: and the compute dtype is not an explicit bfloat16).
FORMS: Final = ("direct", "gram", "auto")

#: "auto" takes the Gram form from this aspect ratio on: at 2:1 it needs 0.88 of the direct
#: form's flops with one restart, at 4:1 0.67 (gram_flop_ratio).
GRAM_MIN_ASPECT: Final = 2

_COMPUTE_DTYPES: Final = (torch.bfloat16, torch.float16, torch.float32, torch.float64)


def default_compute_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CUDA (speed), float32 elsewhere (the CPU has no fast bfloat16 matmul)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


#: msign's backend: one of BACKENDS or a callable (X, steps) -> X.
Backend = str | Callable[[torch.Tensor, int], torch.Tensor]


def _validate(
    G: torch.Tensor,
    backend: Backend,
    steps: int,
    dtype: torch.dtype | None,
    coefficients: Coefficients,
    lower_bound: float,
    eps: float,
    kernel: str,
    form: str,
) -> None:
    if not isinstance(G, torch.Tensor):
        raise TypeError(f"msign: G must be a torch.Tensor, got {type(G).__name__}")
    if not G.is_floating_point():
        raise TypeError(f"msign: G has dtype {G.dtype}; need a real floating dtype")
    if G.ndim < 2:
        raise ValueError(f"msign: G has shape {tuple(G.shape)}; need (..., m, n) with ndim >= 2")
    _validate_config(backend, steps, dtype, coefficients, lower_bound, eps, kernel, form)


def _validate_config(
    backend: Backend,
    steps: int,
    dtype: torch.dtype | None,
    coefficients: Coefficients,
    lower_bound: float,
    eps: float,
    kernel: str,
    form: str,
) -> None:
    """ValueError naming the first bad msign argument (msign's and PolarConfig's checks)."""
    if not (callable(backend) or backend in BACKENDS):
        raise ValueError(
            f"msign: backend={backend!r} is unknown; use one of {list(BACKENDS)} "
            f"or a callable (X, steps) -> X"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"msign: steps={steps!r}; need an int >= 1")
    if dtype is not None and dtype not in _COMPUTE_DTYPES:
        raise ValueError(
            f"msign: dtype={dtype!r}; use None (bfloat16 on CUDA, float32 otherwise) or one of "
            f"{[str(d) for d in _COMPUTE_DTYPES]}"
        )
    if coefficients is not None and backend != "newton_schulz":
        raise ValueError(
            f"msign: coefficients={coefficients!r} applies only to backend='newton_schulz', "
            f"got backend={backend!r}; pass coefficients=None"
        )
    if (
        isinstance(lower_bound, bool)
        or not isinstance(lower_bound, (int, float))
        or not (0.0 < lower_bound <= 1.0)
    ):
        raise ValueError(f"msign: lower_bound={lower_bound!r}; need a float in (0, 1]")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (0.0 <= eps < math.inf):
        raise ValueError(f"msign: eps={eps!r}; need a finite float >= 0")
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(f"msign: kernel={kernel!r} is unknown; use one of {list(KERNELS)}")
    if not isinstance(form, str) or form not in FORMS:
        raise ValueError(f"msign: form={form!r} is unknown; use one of {list(FORMS)}")


def _validate_known(
    G: torch.Tensor,
    frobenius: torch.Tensor | None,
    out_dtype: torch.dtype | None,
    unit_scaled: bool = False,
) -> None:
    if not isinstance(unit_scaled, bool):
        raise ValueError(f"msign: unit_scaled={unit_scaled!r}; need True or False")
    if frobenius is not None and (
        not isinstance(frobenius, torch.Tensor) or frobenius.shape != G.shape[:-2]
    ):
        got = tuple(frobenius.shape) if isinstance(frobenius, torch.Tensor) else frobenius
        raise ValueError(
            f"msign: frobenius has shape {got}; need G's leading shape {tuple(G.shape[:-2])} "
            "(one norm per matrix)"
        )
    if out_dtype is not None and out_dtype not in _COMPUTE_DTYPES:
        raise ValueError(
            f"msign: out_dtype={out_dtype!r}; use None (G's dtype) or one of "
            f"{[str(d) for d in _COMPUTE_DTYPES]}"
        )


@torch.compiler.assume_constant_result  # type: ignore[untyped-decorator]  # untyped in torch
def _polar_express_schedule(
    steps: int, lower_bound: float
) -> tuple[tuple[float, float, float], ...]:
    """The cached schedule, seen by torch.compile as a constant (the generator uses numpy)."""
    return tuple(polar_express_coefficients(steps, lower_bound))


def _normalization(
    X: torch.Tensor, eps: float, safety: float, norm: torch.Tensor | None = None
) -> torch.Tensor:
    """1 / (safety * ||X||_F + eps) for every (m, n) matrix of the (K, m, n) stack X, 0 for
    zero matrices: (K,) float32 (float64 for float64 X).

    ||X||_F is accumulated in float64 (or taken from ``norm``, one value per matrix), so
    gradients of any float32 magnitude (1e-30 to 1e30) neither underflow to a zero norm nor
    overflow to inf.
    """
    if norm is None:
        norm = torch.linalg.vector_norm(X, dim=(-2, -1), dtype=torch.float64)
    else:
        norm = norm.to(torch.float64).reshape(-1)
    scale = torch.where(norm > 0, 1.0 / (safety * norm + eps), 0.0)
    return scale.to(torch.float64 if X.dtype == torch.float64 else torch.float32)


def _normalize(X: torch.Tensor, scale: torch.Tensor, compute_dtype: torch.dtype) -> torch.Tensor:
    """X times its per-matrix scale (_normalization) in float32 (float64 for float64 X),
    rounded once into the compute dtype."""
    return torch.mul(X, scale[:, None, None], out=torch.empty_like(X, dtype=compute_dtype))


def _validate_precondition(precondition: str | None) -> None:
    if precondition is not None and precondition not in PRECONDITIONERS:
        raise ValueError(
            f"msign: precondition={precondition!r} is unknown; use None or one of "
            f"{list(PRECONDITIONERS)}"
        )


@dataclass(frozen=True)
class PolarConfig:
    """A validated msign configuration: backend, steps, compute dtype, Newton-Schulz
    coefficients, Polar Express lower bound, eps, product kernel and form (each as in msign).

    Construction checks every field and, for the iterative backends, builds the step schedule
    (so a coefficient list of the wrong length fails here, not at the first call); calling the
    object runs msign with it.

    Example:
        >>> import torch
        >>> from steepest.polar import PolarConfig
        >>> config = PolarConfig(backend="newton_schulz", coefficients="jordan", steps=5)
        >>> config(torch.randn(2, 4, 6)).shape
        torch.Size([2, 4, 6])
    """

    backend: Backend = "polar_express"
    steps: int = 5
    dtype: torch.dtype | None = None
    coefficients: Coefficients = None
    lower_bound: float = 1e-3
    eps: float = 0.0
    kernel: str = "auto"
    form: str = "direct"
    precondition: str | None = None

    def __post_init__(self) -> None:
        _validate_config(
            self.backend, self.steps, self.dtype, self.coefficients, self.lower_bound,
            self.eps, self.kernel, self.form,
        )  # fmt: skip
        _validate_precondition(self.precondition)
        if isinstance(self.backend, str) and self.backend != "svd":
            _schedule(self.backend, self.steps, self.coefficients, self.lower_bound)

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        """msign(G) under this configuration."""
        return msign(
            G, self.backend, self.steps, self.dtype, self.coefficients, self.lower_bound,
            eps=self.eps, kernel=self.kernel, form=self.form, precondition=self.precondition,
        )  # fmt: skip


def msign(
    G: torch.Tensor,
    backend: Backend = "polar_express",
    steps: int = 5,
    dtype: torch.dtype | None = None,
    coefficients: Coefficients = None,
    lower_bound: float = 1e-3,
    *,
    eps: float = 0.0,
    kernel: str = "auto",
    form: str = "direct",
    precondition: str | None = None,
) -> torch.Tensor:
    """The matrix sign (polar factor) msign(G) = U V^T of every (..., m, n) matrix in G.

    Math: for G = U diag(s) V^T, msign(G) = U V^T, the dualizer of the spectral norm; singular
    directions with s = 0 map to zero. The iterative backends divide G by
    1.01 * ||G||_F + eps (newton_schulz: ||G||_F + eps, Cesista (2025) Alg. 2), transpose tall
    matrices so the Gram product X X^T is the small one,
    apply odd quintics p_t to the singular values (odd_quintic_iteration) and transpose back.
    A zero matrix (also one inside a batch) gives exact zeros.

    Backends and the accuracy they reach (normalized singular values s in [1e-3, 1]):
        "svd": exact U V^T via torch.linalg.svd in float32, or float64 when G or `dtype` is
            float64 (a bfloat16/float16 `dtype` is raised to float32); singular values
            <= max(m, n) * eps(compute dtype) * s_max count as zero. The oracle for the others.
        "newton_schulz": `coefficients` "jordan" (default; output singular values in about
            [0.68, 1.13] once converged, but only about 0.47 for s = 1e-3 after 5 steps),
            "cubic" (converges to U V^T; needs many steps for small s), one (a, b, c) triple or
            a list of per-step triples (see newton_schulz_coefficients for the length rule).
        "polar_express": the schedule polar_express_coefficients(steps, lower_bound); with the
            default lower_bound=1e-3, 5 steps map every s in [1e-3, 1] into [0.85, 1.13] (worst
            |p(s) - 1| = 0.148 in exact arithmetic, against 0.529 for jordan); 6 steps: 4.4e-3,
            7 steps: 4e-7. Directions with s below lower_bound converge later.
        callable: backend(X, steps) gets the normalized (batch, rows, cols) tensor with
            rows <= cols in the compute dtype and must return a tensor of the same shape.

    Args:
        G: a real floating tensor of shape (..., m, n); leading dimensions are a batch. Empty
            tensors give empty outputs. Inputs are not checked for NaN/inf (that would need a
            host sync); non-finite entries give non-finite results for their matrix.
        backend: one of BACKENDS or a callable, default "polar_express".
        steps: number of iterations, an int >= 1 (ignored by "svd").
        dtype: compute dtype of the iteration; default bfloat16 on CUDA and float32 otherwise.
        coefficients: Newton-Schulz schedule, only for backend="newton_schulz".
        lower_bound: Polar Express's assumed lower bound on the normalized smallest singular
            value, in (0, 1]; default 1e-3 (arXiv 2505.16932, §4.3).
        eps: added to the Frobenius norm term of the normalization, default 0.0 (scale
            invariant).
        kernel: products of the iterative backends: "auto" (default; the Triton kernels of
            steepest.polar.kernels on CUDA bfloat16/float16 where they measured faster, torch
            elsewhere), "torch" (cuBLAS/CPU bmm only) or "triton" (ValueError where it cannot
            run, e.g. on CPU). Ignored by "svd" and callable backends.
        form: how the iterative backends run their steps: "direct" (default; on X), "gram"
            (on the Gram matrix X X^T, restarted after step 2: steepest.polar.gram; the same map
            in exact arithmetic, fewer flops for rectangular matrices; with dtype=None it
            computes in float16 on CUDA, whose finer mantissa the s x s products need) or
            "auto" (gram where the long side is at least GRAM_MIN_ASPECT times the short one,
            unless dtype=torch.bfloat16 is asked for: the Gram form loses accuracy in bfloat16).
        precondition: None (default) or "aol": the iterative backends rescale the rows of
            the normalized wide stack by steepest.polar.aol.aol_rescale before iterating
            (Turbo-Muon, arXiv 2512.04632), which bounds the spectral norm by 1 and raises
            the small singular values, so that one step fewer (with a Polar Express
            schedule for a larger ``lower_bound``, e.g. 1e-2) can reach the error of the
            standard schedule; it also moves the result toward the polar factor of the
            rescaled matrix (see aol_rescale). Ignored by "svd".

    Returns:
        A tensor of G's shape and dtype.

    Compilation: odd_quintic_iteration is the pure core and compiles with fullgraph=True.
    msign itself compiles with fullgraph=True when steps stays a static int
    (torch.compile(msign, dynamic=False)); the Polar Express schedule is a compile-time constant.

    References:
        Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and Non-Riemannian
        Manifolds" (2025), Alg. 2 and §3.3.1; arXiv 2505.16932 (Polar Express).
    """
    return msign_normed(
        G, None, backend, steps, dtype, coefficients, lower_bound,
        eps=eps, kernel=kernel, form=form, precondition=precondition,
    )  # fmt: skip


def msign_normed(
    G: torch.Tensor,
    frobenius: torch.Tensor | None,
    backend: Backend = "polar_express",
    steps: int = 5,
    dtype: torch.dtype | None = None,
    coefficients: Coefficients = None,
    lower_bound: float = 1e-3,
    *,
    eps: float = 0.0,
    kernel: str = "auto",
    form: str = "direct",
    out_dtype: torch.dtype | None = None,
    unit_scaled: bool = False,
    precondition: str | None = None,
) -> torch.Tensor:
    """msign(G) for the fused optimizer step, whose stage 1 hands over a (possibly 16-bit,
    prescaled) stack together with its matrices' Frobenius norms.

    The same map as msign (its arguments mean the same), plus:

    Args:
        frobenius: the Frobenius norms of G's matrices when already known (None: computed),
            G.shape[:-2] values (float64 where G is low precision, e.g. from the fused step's
            steepest.optim.fast.fused_momentum.momentum_stack); used by the iterative backends
            instead of a reduction over G. Ignored by "svd".
        out_dtype: the result's dtype, default G's (a bfloat16 G with a float32 result keeps
            the iteration's last rounding only).
        unit_scaled: G's matrices have Frobenius norms within a small factor of 1, as the
            fused step's prescaled stack (norms in [1/4, 8],
            steepest.optim.fast.fused_momentum.momentum_stack). A float16 G computed in float16 by
            the Triton kernels then is not copied: 1 / (1.01 ||G||_F + eps) is folded into
            the first products' float32 epilogues (one rounding less, no pass over G). Far
            from unit norm the folded factor shrinks the iteration's first float16
            polynomials toward subnormals (4x the error at norm 4e3 on an H100), so the
            default makes the normalized copy. Ignored elsewhere.
        precondition: as in msign.

    Returns:
        A tensor of G's shape, in out_dtype (default G's dtype).
    """
    _validate(G, backend, steps, dtype, coefficients, lower_bound, eps, kernel, form)
    _validate_known(G, frobenius, out_dtype, unit_scaled)
    _validate_precondition(precondition)
    out_dtype = G.dtype if out_dtype is None else out_dtype
    if G.numel() == 0:
        return torch.zeros_like(G, dtype=out_dtype)
    if backend == "svd":
        wide = torch.float64 in (G.dtype, dtype)
        out = polar_svd(G.reshape(-1, *G.shape[-2:]).to(torch.float64 if wide else torch.float32))
        return out.reshape(G.shape).to(out_dtype)
    plan = _Plan(G, backend, dtype, form, out_dtype)
    normalization = _normalization(plan.matrices, float(eps), plan.safety, frobenius)
    scale: torch.Tensor | None = None
    if unit_scaled and precondition is None and plan.folds(backend, kernel):
        X, scale = plan.oriented(plan.matrices), normalization  # the first products scale
    else:
        X = plan.oriented(_normalize(plan.matrices, normalization, plan.compute_dtype))
    gram: torch.Tensor | None = None  # X X^T where the preconditioner formed it
    if precondition == "aol":
        X, gram = aol_rescale_with_gram(X)
    if callable(backend):  # _validate: any other str is one of BACKENDS
        X = _call_backend(backend, X, steps)
    else:
        schedule = _schedule(backend, steps, coefficients, lower_bound)
        iterate = gram_quintic_iteration if plan.gram else odd_quintic_iteration
        X = iterate(X, schedule, kernel=kernel, scale=scale, gram=gram)
    return plan.finish(X)


def iteration_dtype(
    m: int, n: int, device: torch.device, dtype: torch.dtype | None = None, form: str = "direct"
) -> torch.dtype:
    """The dtype msign's iterative backends compute in for (m, n) matrices on ``device`` with
    its ``dtype`` and ``form`` arguments: ``dtype`` when given; float16 on CUDA for the Gram
    form ("gram", or "auto" on matrices with aspect >= GRAM_MIN_ASPECT); else
    default_compute_dtype(device)."""
    if dtype is not None:
        return dtype
    if _uses_gram(m, n, dtype, form) and device.type == "cuda":
        return torch.float16
    return default_compute_dtype(device)


def _uses_gram(m: int, n: int, dtype: torch.dtype | None, form: str) -> bool:
    """Whether msign takes the Gram form for (m, n) matrices (see FORMS)."""
    rectangular = max(m, n) >= GRAM_MIN_ASPECT * min(m, n)
    return form == "gram" or (form == "auto" and rectangular and dtype != torch.bfloat16)


class _Plan:
    """How msign's iterative path sees one stack G: its (K, m, n) matrices, orientation,
    form, compute dtype and normalization safety."""

    def __init__(
        self,
        G: torch.Tensor,
        backend: Backend,
        dtype: torch.dtype | None,
        form: str,
        out_dtype: torch.dtype,
    ) -> None:
        m, n = G.shape[-2:]
        self.shape, self.dtype = G.shape, out_dtype
        self.matrices = G.reshape(-1, m, n)
        self.tall = m > n
        self.gram = _uses_gram(m, n, dtype, form)
        self.compute_dtype = iteration_dtype(m, n, G.device, dtype, form)
        self.safety = 1.0 if backend == "newton_schulz" else NORMALIZATION_SAFETY

    def oriented(self, X: torch.Tensor) -> torch.Tensor:
        """The (K, m, n) stack X as the iteration takes it: wide (transposed when tall)."""
        return X.mT if self.tall else X

    def folds(self, backend: Backend, kernel: str) -> bool:
        """Whether the iteration takes the normalization as a factor in its first products'
        float32 epilogues instead of a scaled copy of G: a float16 G computed in float16 by
        the Triton kernels (fp32 accumulation, so the unscaled products cannot overflow;
        the copy is skipped and G rounded once less)."""
        return (
            isinstance(backend, str)
            and self.matrices.dtype == torch.float16
            and self.compute_dtype == torch.float16
            and resolve_kernel(kernel, self.oriented(self.matrices)) == "triton"
        )

    def finish(self, X: torch.Tensor) -> torch.Tensor:
        """The iterated wide stack X back in G's orientation and shape, in the output dtype."""
        return self.oriented(X).reshape(self.shape).to(self.dtype)


def _schedule(
    backend: str, steps: int, coefficients: Coefficients, lower_bound: float
) -> Sequence[tuple[float, float, float]]:
    """The per-step (a, b, c) triples of an iterative backend."""
    if backend == "newton_schulz":
        return newton_schulz_coefficients(coefficients, steps)
    schedule: tuple[tuple[float, float, float], ...] = _polar_express_schedule(
        steps, float(lower_bound)
    )
    return schedule


def _call_backend(backend: Callable[..., Any], X: torch.Tensor, steps: int) -> torch.Tensor:
    """A callable backend on the normalized wide stack, its output shape checked."""
    shape = X.shape
    Y = backend(X, steps)
    if not isinstance(Y, torch.Tensor) or Y.shape != shape:
        got = tuple(Y.shape) if isinstance(Y, torch.Tensor) else type(Y).__name__
        raise ValueError(
            f"msign: backend {backend!r} returned {got}; it must return a tensor of the "
            f"input shape {tuple(shape)}"
        )
    return Y
