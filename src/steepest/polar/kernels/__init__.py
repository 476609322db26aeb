"""GPU kernels for the polar iterations, each with a pure-torch fallback chosen per call.

Public API:
    symmetric_product(X, alpha=1.0, C=None, beta=0.0, *, kernel="auto", out=None, shift=0.0)
    commuting_product(A, B, *, kernel="auto", out=None): A B of commuting symmetric matrices
    resolve_kernel(kernel, X, product="symmetric"), triton_available(), KERNELS, TRITON_DTYPES

The Triton module is imported only when a Triton kernel runs, so this package imports without
triton (CPU installs, CI).
"""

from .symmetric import (
    AUTO_MIN_SIDE,
    COMMUTING_AUTO_MIN_SIDE,
    KERNELS,
    TRITON_DTYPES,
    commuting_product,
    resolve_kernel,
    symmetric_product,
    triton_available,
)

__all__ = [
    "AUTO_MIN_SIDE",
    "COMMUTING_AUTO_MIN_SIDE",
    "KERNELS",
    "TRITON_DTYPES",
    "commuting_product",
    "resolve_kernel",
    "symmetric_product",
    "triton_available",
]
