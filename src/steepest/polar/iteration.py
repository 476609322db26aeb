"""The core odd-quintic iteration shared by the Newton-Schulz and Polar Express backends."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .kernels import resolve_kernel, symmetric_product

__all__ = ["odd_quintic_iteration", "quintic_polynomial"]


def quintic_polynomial(
    A: torch.Tensor,
    a: float,
    b: float,
    c: float,
    kernel: str,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """P = a I + b A + c A^2 for symmetric (batch, s, s) A, times ``scale`` (one factor per
    matrix) where given: one symmetric product with the shift in its epilogue (c != 0), else
    b A plus the shift. A bfloat16/float16 P is computed in float32 and rounded once, on every
    kernel (the torch path as the Triton epilogue)."""
    if c != 0.0:
        return symmetric_product(A, c, A, b, kernel=kernel, shift=a, scale=scale)
    wide = A.float() if A.dtype in (torch.bfloat16, torch.float16) else A
    P = wide * b
    P.diagonal(dim1=-2, dim2=-1).add_(a)
    if scale is not None:
        P = P * scale.to(P.dtype)[:, None, None]
    return P.to(A.dtype)


def _check_known_gram(scale: torch.Tensor | None, gram: torch.Tensor | None) -> None:
    if scale is not None and gram is not None:
        raise ValueError("the polar iteration takes scale= or gram=, not both")


def odd_quintic_iteration(
    X: torch.Tensor,
    coefficients: Sequence[tuple[float, float, float]],
    *,
    kernel: str = "auto",
    scale: torch.Tensor | None = None,
    gram: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply X <- a X + (b A + c A^2) X with A = X X^T, once per (a, b, c) triple.

    Math: with X = U S V^T each step maps every singular value s to p(s) = a s + b s^3 + c s^5 and
    keeps U, V. X should be short-and-wide (rows <= columns) so that A is the small Gram matrix.
    Per step: A = X X^T and P = a I + b A + c A^2 (both symmetric: symmetric_product, which with
    kernel="triton" computes one block-triangle and mirrors it, b A and a I added in the
    epilogue), then X <- P X as one bmm. (A baddbmm(X, P, X, beta=a) with P = b A + c A^2
    makes cuBLAS copy X into its output first: 70 against 54 us per step on twelve 768 x 768
    matrices on an H100, as accurate against the float64 iteration.)
    No host syncs, so torch.compile can capture it; the triples are Python floats and become
    constants.

    Rounding: bfloat16/float16 on the torch path form B = b A + c A^2 in float32, round it
    once, and add a X in the float32 accumulator of X <- baddbmm(X, B, X, beta=a), the form of
    torch.optim.Muon. Rounding P = a I + B instead puts a's rounding (relative to |a + B_ii|)
    into every step: on CPU, P rounded twice gave about twice torch.optim.Muon's error against
    the float64 iteration, and P rounded once 0.7-1.0x for Jordan's quintic but 1.1-1.3x for
    the Polar Express schedule, whose first coefficients are large. The Triton kernel rounds P
    once in its epilogue.

    Args:
        X: a (batch, s, l) tensor, s <= l for efficiency, already normalized (spectral norm <= 1).
        coefficients: the per-step (a, b, c) triples, applied in order.
        kernel: "auto" (default: the Triton kernels on CUDA bfloat16/float16 where they measured
            faster, else torch), "torch" (bmm/baddbmm only; the CPU path) or "triton" (raises
            ValueError where it cannot run). See steepest.polar.kernels.resolve_kernel.
        scale: optional (batch,) factors: iterate on scale * X without forming it. The first
            step's A gets scale^2 and its P scale, both in the products' float32 epilogues
            (msign's normalization of a float16 stack, folded in).
        gram: optional X X^T in X's dtype, already computed (msign's AOL preconditioning):
            the first step uses it instead of a Gram product. Not with ``scale``.

    Returns:
        A new (batch, s, l) tensor in X's dtype.

    References:
        Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and Non-Riemannian
        Manifolds" (2025), Alg. 2 (the quintic step); arXiv 2505.16932, §4.5 (Horner form).
    """
    kernel = resolve_kernel(kernel, X)
    _check_known_gram(scale, gram)
    shift_in_product = kernel == "torch" and X.dtype in (torch.bfloat16, torch.float16)
    steps = list(coefficients)
    if gram is not None and steps:  # the first step from the known A
        a, b, c = steps.pop(0)
        if shift_in_product:
            X = torch.baddbmm(X, quintic_polynomial(gram, 0.0, b, c, kernel), X, beta=a)
        else:
            X = torch.bmm(quintic_polynomial(gram, a, b, c, kernel), X)
    for a, b, c in steps:
        if scale is not None:  # the first step of scale * X
            gram = symmetric_product(X, kernel=kernel, scale=scale * scale)
            poly = quintic_polynomial(gram, a, b, c, kernel, scale)
            scale = None
        elif shift_in_product:  # X <- a X + B X, B = b A + c A^2 rounded once
            if c == 0.0:
                update = symmetric_product(X, b, kernel=kernel)
            else:
                gram = symmetric_product(X, kernel=kernel)
                update = symmetric_product(gram, c, gram, b, kernel=kernel)
            X = torch.baddbmm(X, update, X, beta=a)
            continue
        elif c == 0.0:  # P = a I + b X X^T in one product
            poly = symmetric_product(X, b, kernel=kernel, shift=a)
        else:
            gram = symmetric_product(X, kernel=kernel)
            poly = quintic_polynomial(gram, a, b, c, kernel)
        X = torch.bmm(poly, X)
    return X
