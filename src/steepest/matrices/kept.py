"""Values kept across optimizer steps while the same tensor objects come again.

The fast path hands the same parameters, and its recorded stages the same output tensors,
to every step; what a step derives from them (a grouping, the place of a stacked view, a
stage's layout) is then found with one pass over object identities instead of being
derived again. The tensors are held by weak references, so a kept value never keeps a
tensor alive, and a value is found only while every tensor, and an equal signature (the
other inputs it was derived from), come again.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

import torch

__all__ = ["KeptForTensors"]

V = TypeVar("V")


class KeptForTensors(Generic[V]):
    """Per key: the value derived from a sequence of tensors and a signature."""

    def __init__(self) -> None:
        self._kept: dict[Hashable, tuple[list[weakref.ref[torch.Tensor]], Hashable, V]] = {}

    def get(
        self, key: Hashable, tensors: Sequence[torch.Tensor], signature: Hashable = None
    ) -> V | None:
        """The value kept for `key` if it was derived from these very tensor objects (in
        order) and an equal `signature`, else None."""
        kept = self._kept.get(key)
        if kept is None:
            return None
        refs, kept_signature, value = kept
        if kept_signature != signature or len(refs) != len(tensors):
            return None
        return value if all(r() is t for r, t in zip(refs, tensors, strict=True)) else None

    def put(
        self, key: Hashable, tensors: Sequence[torch.Tensor], value: V, signature: Hashable = None
    ) -> V:
        """Keep `value` for `key`, derived from `tensors` and `signature`; returns it."""
        self._kept[key] = ([weakref.ref(t) for t in tensors], signature, value)
        return value
