"""Matrix sign / polar factor msign(G) = U V^T of batched matrices, with exact and fast backends.

Public API:
    msign(G, backend="polar_express", steps=5, dtype=None, coefficients=None, lower_bound=1e-3,
          *, eps=0.0, kernel="auto", form="direct")
    msign_normed(G, frobenius, ..., out_dtype=None, unit_scaled=False): msign of a stack whose
          Frobenius norms are known (the fused optimizer step)
    PolarConfig(backend, steps, dtype, coefficients, lower_bound, eps, kernel, form): a
          validated msign configuration; config(G) runs msign with it
    orthogonality_error(G, O)
    polar_express_coefficients(steps, lower_bound=1e-3), optimal_odd_quintic(lower, upper)
    newton_schulz_coefficients(coefficients, steps), JORDAN, CUBIC
    odd_quintic_iteration(X, coefficients, *, kernel="auto"), polar_svd(X)
    gram_quintic_iteration(X, coefficients, *, restarts=(2,), kernel="auto"), gram_flop_ratio
    steepest.polar.kernels: symmetric_product (Triton X X^T on one block-triangle, torch fallback)

References: Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and
Non-Riemannian Manifolds" (2025), Alg. 2 and §3.3.1; arXiv 2505.16932 (Polar Express).
"""

from .gram import GRAM_RESTARTS, gram_flop_ratio, gram_quintic_iteration
from .iteration import odd_quintic_iteration
from .msign import (
    BACKENDS,
    FORMS,
    GRAM_MIN_ASPECT,
    NORMALIZATION_SAFETY,
    PolarConfig,
    default_compute_dtype,
    msign,
    msign_normed,
)
from .newton_schulz import CUBIC, JORDAN, NEWTON_SCHULZ_SCHEDULES, newton_schulz_coefficients
from .orthogonality import orthogonality_error
from .polar_express import (
    PAPER_CUSHION,
    PAPER_SAFETY,
    optimal_odd_quintic,
    polar_express_coefficients,
)
from .randomized import randomized_polar
from .svd import polar_svd, zero_singular_threshold

__all__ = [
    "BACKENDS",
    "CUBIC",
    "FORMS",
    "GRAM_MIN_ASPECT",
    "GRAM_RESTARTS",
    "JORDAN",
    "NEWTON_SCHULZ_SCHEDULES",
    "NORMALIZATION_SAFETY",
    "PAPER_CUSHION",
    "PAPER_SAFETY",
    "default_compute_dtype",
    "gram_flop_ratio",
    "gram_quintic_iteration",
    "msign",
    "msign_normed",
    "PolarConfig",
    "newton_schulz_coefficients",
    "odd_quintic_iteration",
    "optimal_odd_quintic",
    "orthogonality_error",
    "polar_express_coefficients",
    "polar_svd",
    "randomized_polar",
    "zero_singular_threshold",
]
