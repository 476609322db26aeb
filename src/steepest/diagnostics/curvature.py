"""Curvature along a direction with Hessian-vector products (double backward; no Hessian formed):
directional sharpness u^T H u, NDS, the one-step Taylor check, the within-/cross-layer split, and
the exact Hessian of one small parameter tensor.

Conventions: `loss_fn()` recomputes the scalar loss from the current values of `params` (a list
of tensors with requires_grad=True), and `direction` is a list of tensors matching `params` one to
one. A step of size lr along u is p <- p - lr * u (u is the update direction, as an optimizer
subtracts it). Scalars come back as Python floats, computed in the parameters' dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypedDict

import torch

from ._checks import check_params_and_direction

__all__ = [
    "directional_sharpness",
    "hessian_vector_product",
    "layer_hessian",
    "layer_split",
    "taylor_check",
]


#: loss_fn(): the scalar loss recomputed from the current parameters.
LossFn = Callable[[], torch.Tensor]


class LayerSplit(TypedDict):
    """What `layer_split` returns."""

    total: float
    within: float
    cross: float
    blocks: list[float]
    update_norm_sq: float


def _loss_and_grads(
    fn: str, loss_fn: object, params: list[torch.Tensor]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run loss_fn() and return (loss, grads) with grads differentiable (create_graph=True)."""
    if not callable(loss_fn):
        raise TypeError(f"{fn}: loss_fn must be callable (loss_fn() -> scalar tensor)")
    loss = loss_fn()
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"{fn}: loss_fn() must return a scalar tensor, got {shape}")
    raw = torch.autograd.grad(loss.reshape(()), params, create_graph=True, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, raw, strict=False)]
    return loss.reshape(()), grads


def _dot(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum_i <x_i, y_i> over matching non-empty lists of tensors, summed left to right."""
    terms = [(x * y).sum() for x, y in zip(xs, ys, strict=False)]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _hvp(
    grads: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    vectors: Sequence[torch.Tensor],
    retain_graph: bool,
) -> list[torch.Tensor]:
    """H v from differentiable grads: d/dp <g(p), v>."""
    gv = _dot(grads, vectors)
    if not gv.requires_grad:  # the loss is linear in params: H = 0
        return [torch.zeros_like(p) for p in params]
    hv = torch.autograd.grad(gv, params, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if h is None else h for p, h in zip(params, hv, strict=False)]


def hessian_vector_product(
    loss_fn: LossFn, params: Sequence[torch.Tensor], vector: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """H v, the Hessian of loss_fn() at params times the vector v, by double backward.

    Args:
        loss_fn: callable returning the scalar loss from the current params.
        params: list of tensors with requires_grad=True.
        vector: list of tensors matching params in shape.

    Returns:
        List of detached tensors (H v)_i matching params.
    """
    params, vector = check_params_and_direction("hessian_vector_product", params, vector)
    _, grads = _loss_and_grads("hessian_vector_product", loss_fn, params)
    return [h.detach() for h in _hvp(grads, params, vector, retain_graph=False)]


def directional_sharpness(
    loss_fn: LossFn,
    params: Sequence[torch.Tensor],
    direction: Sequence[torch.Tensor],
    normalized: bool = False,
) -> float:
    """Directional sharpness u^T H u, or with normalized=True NDS = u^T H u / ||u||^2.

    ||u||^2 is the squared Euclidean (Frobenius) norm summed over all tensors of u.

    Args:
        loss_fn: callable returning the scalar loss from the current params.
        params: list of tensors with requires_grad=True.
        direction: list of tensors u matching params.
        normalized: divide by ||u||^2 (normalized directional sharpness, NDS).

    Returns:
        float (nan for normalized=True and u = 0).

    References:
        arXiv 2606.04662, the curvature penalty of the
        second-order Taylor expansion and its normalization NDS (abstract; Fig. 2).
    """
    params, direction = check_params_and_direction("directional_sharpness", params, direction)
    if not isinstance(normalized, bool):
        raise TypeError(f"directional_sharpness: normalized={normalized!r}; need True or False")
    _, grads = _loss_and_grads("directional_sharpness", loss_fn, params)
    hu = _hvp(grads, params, direction, retain_graph=False)
    curvature = _dot(direction, hu).item()
    if not normalized:
        return curvature
    norm_sq = _dot(direction, direction).item()
    return curvature / norm_sq if norm_sq > 0 else float("nan")


def taylor_check(
    loss_fn: LossFn, params: Sequence[torch.Tensor], direction: Sequence[torch.Tensor], lr: float
) -> dict[str, float]:
    """Second-order Taylor prediction of the step p <- p - lr * u against the actual change.

    Math: with g the gradient and H the Hessian at p,
        first_order = <g, u>,  curvature = u^T H u,
        predicted   = -lr * first_order + lr^2 / 2 * curvature,
        actual      = loss(p - lr * u) - loss(p),  gap = actual - predicted.
    The step is taken in place under no_grad and undone by copying the saved values back, so the
    parameters are bit-for-bit what they were, also if loss_fn raises.

    Args:
        loss_fn: callable returning the scalar loss from the current params.
        params: list of tensors with requires_grad=True (modified and restored).
        direction: list of tensors u matching params.
        lr: step size, a finite float.

    Returns:
        dict with `loss`, `first_order`, `curvature`, `update_norm_sq` (||u||^2), `nds`
        (curvature / ||u||^2, nan for u = 0), `predicted`, `actual`, `gap`.

    References:
        arXiv 2606.04662: the one-step decomposition into a
        first-order gain and a curvature penalty; the predicted-vs-actual check is the referee's
        major comment there.
    """
    params, direction = check_params_and_direction("taylor_check", params, direction)
    if (
        isinstance(lr, bool)
        or not isinstance(lr, (int, float))
        or lr != lr
        or abs(lr) == float("inf")
    ):
        raise ValueError(f"taylor_check: lr={lr!r}; need a finite float")
    loss, grads = _loss_and_grads("taylor_check", loss_fn, params)
    hu = _hvp(grads, params, direction, retain_graph=False)
    first_order = _dot(grads, direction).item()
    curvature = _dot(direction, hu).item()
    norm_sq = _dot(direction, direction).item()
    base = loss.item()
    saved = [p.detach().clone() for p in params]
    try:
        with torch.no_grad():
            for p, u in zip(params, direction, strict=False):
                p.sub_(u.to(p.dtype), alpha=lr)
            stepped = loss_fn().item()
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=False):
                p.copy_(s)
    predicted = -lr * first_order + 0.5 * lr * lr * curvature
    actual = stepped - base
    return {
        "loss": base,
        "first_order": first_order,
        "curvature": curvature,
        "update_norm_sq": norm_sq,
        "nds": curvature / norm_sq if norm_sq > 0 else float("nan"),
        "predicted": predicted,
        "actual": actual,
        "gap": actual - predicted,
    }


def _check_blocks(blocks: Sequence[Sequence[int]] | None, count: int) -> list[list[int]]:
    """Default one block per tensor; else check `blocks` partitions range(count)."""
    if blocks is None:
        return [[i] for i in range(count)]
    if not isinstance(blocks, Sequence) or not all(isinstance(b, Sequence) for b in blocks):
        raise TypeError("layer_split: blocks must be a list of lists of parameter indices")
    flat = [i for b in blocks for i in b]
    if sorted(flat) != list(range(count)) or any(len(b) == 0 for b in blocks):
        raise ValueError(
            f"layer_split: blocks={blocks!r} must split the indices 0..{count - 1} into non-empty "
            f"groups, each index exactly once"
        )
    return [list(b) for b in blocks]


def layer_split(
    loss_fn: LossFn,
    params: Sequence[torch.Tensor],
    direction: Sequence[torch.Tensor],
    blocks: Sequence[Sequence[int]] | None = None,
) -> LayerSplit:
    """Split u^T H u into within-block and cross-block curvature.

    Math: with u = (u_1, ..., u_B) over parameter blocks and H_bc the Hessian blocks,
        u^T H u = sum_b u_b^T H_bb u_b  +  sum_{b != c} u_b^T H_bc u_c  =  within + cross.
    Each H_bb u_b is one double backward restricted to block b's tensors (B + 1 backward passes
    after one forward).

    Args:
        loss_fn: callable returning the scalar loss from the current params.
        params: list of tensors with requires_grad=True.
        direction: list of tensors u matching params.
        blocks: optional list of lists of indices into params, one list per layer (a partition);
            default: each tensor is its own block.

    Returns:
        dict with `total` (u^T H u), `within` and `cross` (floats, within + cross = total up to
        rounding), `blocks` (list of u_b^T H_bb u_b per block) and `update_norm_sq` (||u||^2).

    References:
        arXiv 2606.04662, the within-/cross-layer decomposition
        of directional sharpness (Fig. 4, Fig. 9).
    """
    params, direction = check_params_and_direction("layer_split", params, direction)
    groups = _check_blocks(blocks, len(params))
    _, grads = _loss_and_grads("layer_split", loss_fn, params)
    per_block = []
    for group in groups:
        g_b = [grads[i] for i in group]
        p_b = [params[i] for i in group]
        u_b = [direction[i] for i in group]
        h_b = _hvp(g_b, p_b, u_b, retain_graph=True)
        per_block.append(_dot(u_b, h_b).item())
    hu = _hvp(grads, params, direction, retain_graph=False)
    total = _dot(direction, hu).item()
    within = sum(per_block)
    return {
        "total": total,
        "within": within,
        "cross": total - within,
        "blocks": per_block,
        "update_norm_sq": _dot(direction, direction).item(),
    }


def layer_hessian(loss_fn: LossFn, param: torch.Tensor, max_numel: int = 4096) -> torch.Tensor:
    """The exact Hessian of loss_fn() with respect to one parameter tensor, by n HVPs.

    Row i is H e_i, one double backward per entry of the tensor, so use it only for small
    layers. Rows and columns follow the row-major flattening of the tensor (`param.reshape(-1)`),
    so for a weight W of shape (m, n) the Hessian A (x) B means H vec(X) = vec(A X B^T), matching
    `kronecker_approx` with shape_a = (m, m) and shape_b = (n, n).

    Args:
        loss_fn: callable returning the scalar loss from the current parameters.
        param: one tensor with requires_grad=True.
        max_numel: refuse tensors with more entries than this (the cost is numel backward
            passes and numel^2 memory).

    Returns:
        Detached tensor of shape (numel, numel) in param's dtype.

    References:
        arXiv 2606.04662, Fig. 5, Fig. 10-12 (Hessians of single attention matrices).
    """
    if not isinstance(param, torch.Tensor) or not param.is_floating_point():
        raise TypeError("layer_hessian: param must be a floating torch.Tensor")
    if not param.requires_grad:
        raise ValueError("layer_hessian: param does not require grad; set requires_grad=True")
    if not isinstance(max_numel, int) or max_numel < 1:
        raise ValueError(f"layer_hessian: max_numel={max_numel!r}; need a positive int")
    n = param.numel()
    if n > max_numel:
        raise ValueError(
            f"layer_hessian: param has {n} entries > max_numel={max_numel}; the exact Hessian "
            f"needs {n} backward passes. Raise max_numel or use directional_sharpness"
        )
    _, (grad,) = _loss_and_grads("layer_hessian", loss_fn, [param])
    flat = grad.reshape(-1)
    rows = []
    for i in range(n):
        if not flat.requires_grad:
            rows.append(torch.zeros(n, dtype=param.dtype, device=param.device))
            continue
        (row,) = torch.autograd.grad(flat[i], param, retain_graph=i < n - 1, allow_unused=True)
        rows.append(torch.zeros_like(param).reshape(-1) if row is None else row.reshape(-1))
    return torch.stack(rows).detach()
