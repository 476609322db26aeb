"""Stacking same-shape matrices: run a batched matrix function once per stack.

``map_stacked`` is the one place where matrices are stacked; ``map_matrices`` reads whole
tensors as matrices first (views.py); ``matrix_count`` counts them without splitting.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import cast

import torch

from steepest.matrices.views import View, join_matrices, matrix_shape, split_matrices

__all__ = ["map_matrices", "map_stacked", "matrix_count"]


def map_stacked(
    fn: Callable[[torch.Tensor], torch.Tensor], matrices: list[torch.Tensor]
) -> list[torch.Tensor]:
    """Apply fn to the matrices, stacking those with equal (m, n), dtype and device.

    Each (..., m, n) input is flattened to (k, m, n); the inputs of one stack are concatenated
    into one (K, m, n) tensor, fn runs once on it, and the result is split back.

    Args:
        fn: maps a (K, m, n) tensor to a tensor of the same shape (e.g. a batched msign).
        matrices: tensors of shape (..., m, n).

    Returns:
        fn's results, one per input, in input order and input shape.

    References: the megabatching of microsoft/dion (buckets by shape, dtype, sharding).
    """
    stacks: dict[tuple[tuple[int, ...], torch.dtype, torch.device], list[int]] = defaultdict(list)
    for i, X in enumerate(matrices):
        stacks[(tuple(X.shape[-2:]), X.dtype, X.device)].append(i)
    out: list[torch.Tensor | None] = [None] * len(matrices)
    for (mn, _, _), members in stacks.items():
        flat = [matrices[i].reshape(-1, *mn) for i in members]
        Y = fn(flat[0] if len(flat) == 1 else torch.cat(flat))
        for i, part in zip(members, torch.split(Y, [f.shape[0] for f in flat]), strict=True):
            out[i] = part.reshape(matrices[i].shape)
    return cast(list[torch.Tensor], out)  # every index belongs to one stack


def map_matrices(
    fn: Callable[[torch.Tensor], torch.Tensor],
    tensors: list[torch.Tensor],
    view: View = "auto",
    blocks: Sequence[int] | None = None,
) -> list[torch.Tensor]:
    """Split each tensor into its matrices (views.py), run fn per stack, reassemble.

    Args:
        fn: maps a (K, m, n) stack to a tensor of the same shape.
        tensors: plain tensors, each read as matrices under ``view`` and ``blocks``.
        view, blocks: the group's ``matrix_view`` and ``blocks`` (see views.py).

    Returns:
        one tensor per input, of the input's shape.
    """
    pieces = [split_matrices(t, view, blocks) for t in tensors]
    flat = map_stacked(fn, [m for ms in pieces for m in ms])
    out: list[torch.Tensor] = []
    start = 0
    for t, ms in zip(tensors, pieces, strict=True):
        out.append(join_matrices(flat[start : start + len(ms)], t.shape, view))
        start += len(ms)
    return out


def matrix_count(
    tensors: list[torch.Tensor], view: View = "auto", blocks: Sequence[int] | None = None
) -> int:
    """How many matrices map_matrices hands to fn for these tensors (without splitting)."""
    per_block = len(blocks) if blocks is not None else 1
    return sum(math.prod(matrix_shape(t.shape, view)[:-2]) * per_block for t in tensors)
