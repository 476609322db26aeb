"""The polar iterations' symmetric product, with a pure-torch path chosen per call.

Public API:
    symmetric_product(X, alpha=1.0, C=None, beta=0.0, *, kernel="auto", out=None, shift=0.0)
    resolve_kernel(kernel, X), triton_available(), KERNELS, TRITON_DTYPES, AUTO_MIN_SIDE

The Triton kernel (steepest.kernels.syrk) is imported only when it runs, so this package
imports without triton (CPU installs, CI).
"""

from .symmetric import (
    AUTO_MIN_SIDE,
    KERNELS,
    TRITON_DTYPES,
    resolve_kernel,
    symmetric_product,
    triton_available,
)

__all__ = [
    "AUTO_MIN_SIDE",
    "KERNELS",
    "TRITON_DTYPES",
    "resolve_kernel",
    "symmetric_product",
    "triton_available",
]
