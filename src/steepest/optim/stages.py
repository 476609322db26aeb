"""The five stages of a matrix group, written once.

grad -> [1 accumulate] -> [2 precondition] -> [3 dualize] -> [4 scale] -> [5 apply]

``run_stages`` takes the learning rate and weight decay as floats (the eager path) or as 0-dim
tensors (the fast path, which compiles and records this same function so that schedules
neither recompile nor re-record). Members that declare ``fused_momentum`` may run stages 1-4
as ``fused_stages_1_to_4`` instead: stage 1 as one pass per matrix that also yields the
directions' norms, which the dualizer takes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from steepest.matrices.stacking import map_matrices
from steepest.matrices.views import matrix_shape
from steepest.polar.msign import iteration_dtype

from .fast.fused_momentum import momentum_stack
from .polar_step import compute_dtype
from .registry import Algorithm, Group, State

__all__ = ["apply_update", "fused_stages_1_to_4", "run_stages", "same_shape"]

#: A learning rate or weight decay: a float, or a 0-dim tensor read when the step runs.
Scalar = float | torch.Tensor
#: Stages 3 and 4 over a group's directions (split into matrices, dualized per stack, scaled).
Dualize = Callable[[list[torch.Tensor]], list[torch.Tensor]]


def run_stages(
    algorithm: Algorithm,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    states: list[State],
    group: Group,
    lr: Scalar,
    weight_decay: Scalar,
    finite: torch.Tensor | None = None,
    fused: bool = False,
    prescales: Sequence[torch.Tensor] = (),
    dualize: Dualize | None = None,
    kernels: str = "auto",
) -> None:
    """Stages 1-5 of one matrix group: the parameters and states are updated in place.

    Args:
        algorithm, params, grads, states, group: the group's work for this step.
        lr, weight_decay: floats, or 0-dim tensors (the compiled and recorded step).
        finite: a 0-dim bool tensor (members declaring ``fused_momentum`` only): False makes
            the step an exact no-op. Each gradient is replaced by its momentum buffer (zero
            without one), so M <- M + w (M - M) = M and the direction is M (finite), and lr
            and weight decay become 0, so p <- p * 1 - 0 * u = p.
        fused: run stages 1-4 as fused_stages_1_to_4 (the caller checked that it may).
        prescales: for the fused stage 1, one per same-shape stack (same_shape's order).
        dualize: stages 3 and 4 over the directions (the optimizer's, which may shard them
            across ranks and counts them); default: locally, stack by stack.
        kernels: the fused stage 1's kernel choice, "auto" or "torch" (FastPath.kernels).
    """
    if finite is not None:
        lr = torch.where(finite, lr, 0.0)
        weight_decay = torch.where(finite, weight_decay, 0.0)
    if fused:
        updates = fused_stages_1_to_4(algorithm, grads, states, group, finite, prescales, kernels)
    else:
        if finite is not None:
            grads = [
                torch.where(finite, g, s["momentum_buffer"] if "momentum_buffer" in s else 0.0)
                for g, s in zip(grads, states, strict=True)
            ]
        directions = algorithm.accumulate(grads, states, group)  # 1
        directions = algorithm.precondition(directions, states, group)  # 2

        def dualize_and_scale(X: torch.Tensor) -> torch.Tensor:  # 3, 4 on one (K, m, n) stack
            m, n = X.shape[-2:]
            return algorithm.dualize(X, group) * algorithm.scale(m, n, group)

        if dualize is None:
            updates = map_matrices(
                dualize_and_scale, directions, group["matrix_view"], group["blocks"]
            )
        else:
            updates = dualize(directions)
    updates = algorithm.rescale(updates, states, group)  # 4 (state-dependent)
    cautious = group.get("cautious_weight_decay", False)
    apply_update(params, updates, lr, weight_decay, cautious)  # 5


def apply_update(
    params: list[torch.Tensor],
    updates: list[torch.Tensor],
    lr: Scalar,
    weight_decay: Scalar,
    cautious: bool = False,
) -> None:
    """Stage 5: weight decay, then p <- p - lr u (lr and weight decay floats or 0-dim tensors).

    Decoupled (default): p <- (1 - lr wd) p - lr u (arXiv 1711.05101). Cautious: the decay
    acts only where u * p >= 0, p <- p - lr (u + wd 1[u * p >= 0] p) (arXiv 2510.12402,
    Alg. 1). Written with foreach ops, so that torch.compile writes every parameter from one
    horizontally fused kernel.
    """
    live = isinstance(weight_decay, torch.Tensor)
    if live or weight_decay != 0:
        if cautious:
            for p, u in zip(params, updates, strict=True):
                p.sub_((u * p >= 0).to(p.dtype) * p * (lr * weight_decay))
        else:
            torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_sub_(params, torch._foreach_mul(updates, lr))


def same_shape(tensors: list[torch.Tensor]) -> list[list[int]]:
    """Indices of tensors grouped by (shape, dtype), in order of first appearance."""
    pieces: dict[tuple[tuple[int, ...], torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        pieces.setdefault((tuple(t.shape), t.dtype), []).append(i)
    return list(pieces.values())


def fused_stages_1_to_4(
    algorithm: Algorithm,
    grads: list[torch.Tensor],
    states: list[State],
    group: Group,
    finite: torch.Tensor | None,
    prescales: Sequence[torch.Tensor] = (),
    kernels: str = "auto",
) -> list[torch.Tensor]:
    """Stages 1-4 with stage 1 as momentum_stack per same-shape stack: the directions are
    written once, with their norms, and the dualizer takes both (Algorithm.dualize_normed).

    Where the polar iteration computes in float16 and the member is ``scale_invariant``, and
    ``prescales`` are given, the directions are stored in float16, each times a power of two
    (the stack's entry of ``prescales``), and msign folds their normalization into its first
    products; other 16-bit iterations take bfloat16 directions, float32 and float64 ones their
    own dtype. The result matches accumulate + dualize up to that rounding of the direction.
    """
    form = group.get("polar_form", "direct")
    updates: list[torch.Tensor] = list(grads)  # every entry is replaced below
    for k, members in enumerate(same_shape(grads)):
        shape, dtype = grads[members[0]].shape, grads[members[0]].dtype
        m, n = matrix_shape(tuple(shape))[-2:]
        polar_dtype = compute_dtype(group, grads[members[0]])
        compute = iteration_dtype(m, n, grads[0].device, polar_dtype, form)
        prescale = None
        if compute == torch.float16 and algorithm.scale_invariant and prescales:
            prescale = prescales[k]
        if prescale is not None:
            stack_dtype = torch.float16
        elif compute in (torch.bfloat16, torch.float16):
            stack_dtype = torch.bfloat16
        else:
            stack_dtype = compute
        D, norms = momentum_stack(
            [grads[i] for i in members],
            [states[i]["momentum_buffer"] for i in members],
            group["momentum"],
            group["nesterov"],
            stack_dtype,
            finite,
            matrix=(m, n),
            kernel=kernels,
            prescale=prescale,
        )
        U = algorithm.dualize_normed(D, norms, dtype, group, unit_scaled=prescale is not None)
        # the directions' norms: with a prescale the returned ones are scaled, and the updated
        # prescale is 2^-e for a norm f 2^e, f in [1/2, 1): its reciprocal is within 2x
        U = algorithm.damp(U, norms if prescale is None else prescale.reciprocal(), group)
        U = U * algorithm.scale(m, n, group)
        U = U.reshape(len(members), *shape)
        for j, i in enumerate(members):
            updates[i] = U[j]
    return updates
