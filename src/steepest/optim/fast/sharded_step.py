"""The fast path's step of a group shared across ranks: two local parts around the exchange.

Under torch.distributed a Muon-like group (``fused_momentum``: EMA momentum in stage 1,
identities in stage 2 and in stage 4's rescale) runs as

1. ``local_stages_1_2`` on this rank's part of every tensor (its rows under FSDP2, the whole
   tensor when replicated): the momentum update and the directions, as one fused pass per
   same-shape stack where the single-process step fuses it, with the squared Frobenius norms
   of the directions' local matrices summed on the way; the device-side verdict masks it;
2. the exchange and dualization of whole matrices (steepest.distributed: collectives), each
   owned stack through ``dualize_directions``; the squared norms travel with the directions
   (an owner adds its matrices' row parts), so no owner reads its stack for them;
3. ``local_stages_5`` on this rank's part: weight decay and the update.

Parts 1 and 3 have no collectives and no host synchronisation, so they are compiled and
recorded like the single-process step; so is part 2's function of each owned stack, between
the collectives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch

from steepest.matrices.views import matrix_shape
from steepest.polar.msign import iteration_dtype

from ..polar_step import compute_dtype
from ..registry import Algorithm, Group, State
from ..stages import Scalar, apply_update
from .fused_momentum import momentum_stack
from .row_scales import rescale_rows

__all__ = [
    "dualize_directions",
    "local_stages_1_2",
    "local_stages_5",
    "stack_dtype",
    "stage_pieces",
]


def stack_dtype(
    group: Group, grad: torch.Tensor, shape: Sequence[int], prescaled: bool = False
) -> torch.dtype:
    """The dtype of the fused stage 1's directions for a tensor of global `shape`, as in
    stages.fused_stages_1_to_4: float16 where the polar iteration computes in float16 and
    the stack may be ``prescaled``; else bfloat16 where it computes in 16 bits, else the
    iteration's dtype."""
    m, n = matrix_shape(tuple(shape))[-2:]
    form = group.get("polar_form", "direct")
    compute = iteration_dtype(m, n, grad.device, compute_dtype(group, grad), form)
    if compute == torch.float16 and prescaled:
        return torch.float16
    return torch.bfloat16 if compute in (torch.bfloat16, torch.float16) else compute


def stage_pieces(grads: Sequence[torch.Tensor], dtypes: Sequence[torch.dtype]) -> list[list[int]]:
    """The fused stage 1's same-shape stacks: indices of the non-empty tensors by (shape,
    dtype, stack dtype), in order of first appearance (a float16 stack is prescaled)."""
    pieces: dict[tuple[tuple[int, ...], torch.dtype, torch.dtype], list[int]] = {}
    for i, (g, dtype) in enumerate(zip(grads, dtypes, strict=True)):
        if g.numel():
            pieces.setdefault((tuple(g.shape), g.dtype, dtype), []).append(i)
    return list(pieces.values())


def local_stages_1_2(
    algorithm: Algorithm,
    grads: list[torch.Tensor],
    states: list[State],
    group: Group,
    finite: torch.Tensor | None,
    dtypes: Sequence[torch.dtype] | None = None,
    kernels: str = "auto",
    prescales: Sequence[torch.Tensor | None] = (),
    shared: bool = False,
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """Stages 1-2 on local tensors; returns the directions (local, like the gradients) and,
    from the fused stage 1, each direction's squared Frobenius norms, one float64 entry per
    local matrix under the default view (None per direction when unfused).

    Args:
        algorithm, grads, states, group: this rank's part of the group's work.
        finite: the device-side verdict (0-dim bool) or None; False makes every gradient its
            momentum buffer, so the momentum stays and the direction is finite.
        dtypes: the fused stage 1 (``momentum_stack``), one stack dtype per tensor
            (``stack_dtype``); None runs the member's ``accumulate`` and ``precondition``.
        kernels: momentum_stack's kernel choice.
        prescales: with ``dtypes``, one per stage_pieces stack: momentum_stack's prescale of a
            float16 stack (updated in place), else None; the squared norms are then those
            of the scaled directions.
        shared: the prescales are shared by the row parts of each matrix across ranks
            (momentum_stack's ``shared``: on return they hold the scale each part carries).
    """
    if dtypes is None:
        if finite is not None:
            grads = [
                torch.where(finite, g, s["momentum_buffer"] if "momentum_buffer" in s else 0.0)
                for g, s in zip(grads, states, strict=True)
            ]
        directions = algorithm.accumulate(grads, states, group)
        return algorithm.precondition(directions, states, group), [None] * len(grads)
    out: list[torch.Tensor | None] = [None] * len(grads)
    squares: list[torch.Tensor | None] = [None] * len(grads)
    for i, (g, dtype) in enumerate(zip(grads, dtypes, strict=True)):
        if g.numel() == 0:  # an empty row shard: nothing to accumulate
            out[i] = torch.zeros(g.shape, dtype=dtype, device=g.device)
            matrices = math.prod(matrix_shape(tuple(g.shape))[:-2])
            squares[i] = torch.zeros(matrices, dtype=torch.float64, device=g.device)
    for k, members in enumerate(stage_pieces(grads, dtypes)):
        shape, dtype = tuple(grads[members[0]].shape), dtypes[members[0]]
        prescale = prescales[k] if prescales else None
        D, norms = momentum_stack(
            [grads[i] for i in members],
            [states[i]["momentum_buffer"] for i in members],
            group["momentum"],
            group["nesterov"],
            dtype,
            finite,
            matrix=matrix_shape(shape)[-2:],  # type: ignore[arg-type]
            kernel=kernels,
            prescale=prescale,
            shared=shared and prescale is not None,
        )
        D = D.reshape(len(members), *shape)
        square = norms.square().reshape(len(members), -1)
        for j, i in enumerate(members):
            out[i], squares[i] = D[j], square[j]
    return cast(list[torch.Tensor], out), squares  # every index is empty or in one piece


def dualize_directions(
    algorithm: Algorithm,
    X: torch.Tensor,
    group: Group,
    dtype: torch.dtype,
    normed: bool,
    squares: torch.Tensor | None = None,
    prescale: torch.Tensor | None = None,
    row_factors: torch.Tensor | None = None,
) -> torch.Tensor:
    """Stages 3-4 on one owned (K, m, n) stack of whole directions, into a contiguous tensor
    of ``dtype`` (the parameters', or for a fused group the directions', rounded once after
    the factors, which apply in at least float32). ``normed``: X is the fused stage 1's
    stack and the member's ``dualize_normed`` and ``damp`` run as in the fused
    single-process step, on the Frobenius norms ``squares.sqrt()`` ((K,) float64 squared
    norms of the unrounded directions, from stage 1) or, without ``squares``, on float64
    norms of X's entries. ``prescale``: X's matrices are stored times these powers of two
    (a prescaled float16 stack; ``squares`` are the scaled ones), so msign folds the
    normalization into its first products and ``damp`` takes the updated prescale's
    reciprocals, as in one process. ``row_factors``: (K, m) float32, X's row parts were
    stored times different powers of two (a shared prescale that some part could not use),
    which these factors bring to one scale per matrix, in place, before all else (``squares``
    are those at that scale)."""
    m, n = X.shape[-2:]
    if row_factors is not None:
        X = rescale_rows(X, row_factors)
    if normed:
        if squares is not None:
            norms = squares.sqrt()
        else:
            norms = torch.linalg.vector_norm(X, dim=(-2, -1), dtype=torch.float64)
        wide = torch.promote_types(dtype, torch.float32)
        scaled = prescale is not None
        U = algorithm.dualize_normed(X, norms, wide, group, unit_scaled=scaled)
        U = algorithm.damp(U, norms if prescale is None else prescale.reciprocal(), group)
    else:
        U = algorithm.dualize(X, group)
    # contiguous, whatever layout the iteration left (a wide stack's result is transposed):
    # compiled, a fresh ``out=`` tensor does not fix the layout, nor does contiguous() on it
    # (traced, it already is), and the exchange and the recorded last stage then copy the
    # stack; compiled, the product, cast and layout are one kernel
    return torch.mul(U, algorithm.scale(m, n, group)).to(dtype).contiguous()


def local_stages_5(
    params: list[torch.Tensor],
    updates: list[torch.Tensor],
    group: Group,
    lr: Scalar,
    weight_decay: Scalar,
    finite: torch.Tensor | None,
) -> None:
    """Stage 5 on local tensors (a False ``finite`` makes lr and weight decay 0: no write
    changes a parameter); updates in another dtype than their parameters' (a fused group's
    16-bit ones) are cast in the same pass."""
    updates = [u.to(p.dtype) for p, u in zip(params, updates, strict=True)]
    if finite is not None:
        lr = torch.where(finite, lr, 0.0)
        weight_decay = torch.where(finite, weight_decay, 0.0)
    apply_update(params, updates, lr, weight_decay, group.get("cautious_weight_decay", False))
