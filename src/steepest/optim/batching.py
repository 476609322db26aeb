"""Run a batched matrix function once per stack of same-shape matrices."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch

__all__ = ["map_stacked"]


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
    stacks: dict[tuple, list[int]] = defaultdict(list)
    for i, X in enumerate(matrices):
        stacks[(tuple(X.shape[-2:]), X.dtype, X.device)].append(i)
    out: list[torch.Tensor | None] = [None] * len(matrices)
    for (mn, _, _), members in stacks.items():
        flat = [matrices[i].reshape(-1, *mn) for i in members]
        Y = fn(flat[0] if len(flat) == 1 else torch.cat(flat))
        for i, part in zip(members, Y.split([f.shape[0] for f in flat]), strict=True):
            out[i] = part.reshape(matrices[i].shape)
    return out
