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

__all__ = ["dualize_directions", "local_stages_1_2", "local_stages_5", "stack_dtype"]


def stack_dtype(group: Group, grad: torch.Tensor, shape: Sequence[int]) -> torch.dtype:
    """The dtype of the fused stage 1's directions for a tensor of global `shape`: bfloat16
    where the polar iteration computes in 16 bits, else the iteration's dtype (as in
    stages.fused_stages_1_to_4 without a prescale)."""
    m, n = matrix_shape(tuple(shape))[-2:]
    form = group.get("polar_form", "direct")
    compute = iteration_dtype(m, n, grad.device, compute_dtype(group, grad), form)
    return torch.bfloat16 if compute in (torch.bfloat16, torch.float16) else compute


def local_stages_1_2(
    algorithm: Algorithm,
    grads: list[torch.Tensor],
    states: list[State],
    group: Group,
    finite: torch.Tensor | None,
    dtypes: Sequence[torch.dtype] | None = None,
    kernels: str = "auto",
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
    pieces: dict[tuple[tuple[int, ...], torch.dtype, torch.dtype], list[int]] = {}
    for i, (g, dtype) in enumerate(zip(grads, dtypes, strict=True)):
        if g.numel() == 0:  # an empty row shard: nothing to accumulate
            out[i] = torch.zeros(g.shape, dtype=dtype, device=g.device)
            matrices = math.prod(matrix_shape(tuple(g.shape))[:-2])
            squares[i] = torch.zeros(matrices, dtype=torch.float64, device=g.device)
        else:
            pieces.setdefault((tuple(g.shape), g.dtype, dtype), []).append(i)
    for (shape, _, dtype), members in pieces.items():
        D, norms = momentum_stack(
            [grads[i] for i in members],
            [states[i]["momentum_buffer"] for i in members],
            group["momentum"],
            group["nesterov"],
            dtype,
            finite,
            matrix=matrix_shape(shape)[-2:],  # type: ignore[arg-type]
            kernel=kernels,
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
) -> torch.Tensor:
    """Stages 3-4 on one owned (K, m, n) stack of whole directions, into a contiguous tensor
    of ``dtype`` (the parameters'). ``normed``: X is the fused stage 1's stack and the
    member's ``dualize_normed`` and ``damp`` run as in the fused single-process step, on the
    Frobenius norms ``squares.sqrt()`` ((K,) float64 squared norms of the unrounded
    directions, from stage 1) or, without ``squares``, on float64 norms of X's entries."""
    m, n = X.shape[-2:]
    if normed:
        if squares is not None:
            norms = squares.sqrt()
        else:
            norms = torch.linalg.vector_norm(X, dim=(-2, -1), dtype=torch.float64)
        U = algorithm.dualize_normed(X, norms, dtype, group)
        U = algorithm.damp(U, norms, group)
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
    changes a parameter)."""
    if finite is not None:
        lr = torch.where(finite, lr, 0.0)
        weight_decay = torch.where(finite, weight_decay, 0.0)
    apply_update(params, updates, lr, weight_decay, group.get("cautious_weight_decay", False))
