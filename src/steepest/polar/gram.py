"""The odd-quintic iteration in Gram form: iterate on the small s x s matrix X X^T, not on X."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .iteration import _check_known_gram, quintic_polynomial
from .kernels import resolve_kernel, symmetric_product

__all__ = ["GRAM_RESTARTS", "gram_flop_ratio", "gram_quintic_iteration"]

#: Steps after which the Gram form is restarted (X re-formed, X X^T recomputed from it), so that
#: round-off in the small matrices cannot pile up over all steps: after the second step, as in
#: Gram Newton-Schulz (Dao lab, "Gram Newton-Schulz", 2026, section "Stabilizing Gram
#: Newton-Schulz by Restarting").
GRAM_RESTARTS = (2,)


def _segment(
    X: torch.Tensor,
    coefficients: Sequence[tuple[float, float, float]],
    kernel: str,
    scale: torch.Tensor | None = None,
    gram: torch.Tensor | None = None,
) -> torch.Tensor:
    """len(coefficients) steps on the Gram matrix of X (of scale * X where given: scale^2 on
    X X^T, scale on the last P, so that Q X = Q' (scale X); ``gram``: X X^T already known),
    then one product with X. The
    products of two iterates are full cuBLAS products: Triton half-products of these
    commuting symmetric matrices were faster on an H100 but about 3x less accurate on
    ill-conditioned input."""
    square = None if scale is None else scale * scale
    R = symmetric_product(X, kernel=kernel, scale=square) if gram is None else gram
    Q: torch.Tensor | None = None
    last = len(coefficients) - 1
    for i, (a, b, c) in enumerate(coefficients):
        # P = a I + b R + c R^2: the step's matrix polynomial, X_{k+1} = P X_k.
        P = quintic_polynomial(R, a, b, c, kernel, scale if i == last else None)
        Q = P if Q is None else torch.bmm(P, Q)
        if i < last:  # R_{k+1} = X_{k+1} X_{k+1}^T = P R P (R P^2 was faster, less accurate)
            R = torch.bmm(torch.bmm(P, R), P)
    assert Q is not None  # coefficients is not empty
    return torch.bmm(Q, X)


def gram_quintic_iteration(
    X: torch.Tensor,
    coefficients: Sequence[tuple[float, float, float]],
    *,
    restarts: Sequence[int] = GRAM_RESTARTS,
    kernel: str = "auto",
    scale: torch.Tensor | None = None,
    gram: torch.Tensor | None = None,
) -> torch.Tensor:
    """The same map as odd_quintic_iteration, computed on the s x s Gram matrix of X.

    Math: each step X <- a X + b A X + c A^2 X with A = X X^T is X_{k+1} = P_k X_k for the
    polynomial P_k = a I + b R_k + c R_k^2 in R_k = X_k X_k^T. All P_k and R_k are polynomials in
    R_0, so they commute: R_{k+1} = P_k R_k P_k and X_K = (P_{K-1} ... P_0) X_0. Only the first
    Gram product and the last product touch the long side l; every other product is s x s. For an
    s x l matrix with l = alpha s one direct step costs (4 alpha + 2) s^3 flops and the Gram form
    about 4 alpha s^3 per segment plus 8 s^3 per step (gram_flop_ratio), a saving from alpha >= 2.
    In exact arithmetic the result equals the direct iteration's; in low precision the s x s
    products lose accuracy step after step, so the iteration restarts after each step named in
    `restarts` (X re-formed, its Gram matrix recomputed).

    Args:
        X: a (batch, s, l) tensor with s <= l, already normalized (spectral norm <= 1).
        coefficients: the per-step (a, b, c) triples, applied in order.
        restarts: step counts after which to restart, default GRAM_RESTARTS = (2,); () never
            restarts (exact arithmetic only: unstable in half precision).
        kernel: "auto", "torch" or "triton" for the symmetric products (see
            resolve_kernel).
        scale: optional (batch,) factors: iterate on scale * X without forming it (scale^2
            on the first Gram product, scale on the first segment's last polynomial, both in
            the products' float32 epilogues; msign's normalization of a float16 stack).
        gram: optional X X^T in X's dtype, already computed (msign's AOL preconditioning):
            the first segment starts from it instead of a Gram product. Not with ``scale``.

    Returns:
        A new (batch, s, l) tensor in X's dtype.

    References:
        Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and Non-Riemannian
        Manifolds" (2025), Alg. 2 (the quintic step); Dao lab, "Gram Newton-Schulz" (2026): the Gram
        form, half precision and the restart after the second step.
    """
    resolve_kernel(kernel, X)  # checks the choice; each product resolves "auto" on its operands
    _check_known_gram(scale, gram)
    steps = list(coefficients)
    cuts = sorted({0, len(steps), *(r for r in restarts if 0 < r < len(steps))})
    for start, stop in zip(cuts[:-1], cuts[1:], strict=True):
        X = _segment(X, steps[start:stop], kernel, scale, gram)
        scale = gram = None
    return X


def gram_flop_ratio(
    s: int, l: int, steps: int = 5, restarts: Sequence[int] = GRAM_RESTARTS
) -> float:
    """Flops of the Gram form over those of the direct iteration for one s x l matrix (s <= l).

    Counts 2 s l s for X X^T and Q X and 2 s^3 per s x s product, symmetric products at full cost.
    """
    s, l = min(s, l), max(s, l)
    direct = steps * (4 * s * s * l + 2 * s**3)
    cuts = sorted({0, steps, *(r for r in restarts if 0 < r < steps)})
    gram = 0
    for start, stop in zip(cuts[:-1], cuts[1:], strict=True):
        k = stop - start
        # X X^T and Q X; per step R^2; Q P on every step but the first; P R P on all but the last
        gram += 4 * s * s * l + 2 * s**3 * (k + (k - 1) + 2 * (k - 1))
    return gram / direct
