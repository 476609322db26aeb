"""Per-row-block state for members whose statistics belong to one matrix (Shampoo, SOAP).

With a group's ``blocks`` (row counts, views.py) each row block of a matrix view is its own
matrix: its statistics live under the key with the block's index appended ("left/0",
"left/1", ...; the plain key without blocks), so the state stays a flat dict of tensors that is
saved, loaded and re-cast like any other.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .registry import Group, State

__all__ = ["block_key", "block_rows", "block_states", "split_rows"]


def block_rows(group: Group, rows: int) -> list[int]:
    """The row counts of a matrix view's blocks: the group's ``blocks``, or all ``rows``."""
    blocks = group.get("blocks")
    return list(blocks) if blocks is not None else [rows]


def block_key(key: str, index: int, group: Group) -> str:
    """The state key of block ``index``'s ``key`` ("left/1"; "left" without blocks)."""
    return key if group.get("blocks") is None else f"{key}/{index}"


def block_states(state: State, keys: Sequence[str], count: int, group: Group) -> list[State]:
    """One dict per block with that block's tensors under the plain keys (the same tensor
    objects, so in-place updates reach the optimizer state)."""
    return [{key: state[block_key(key, i, group)] for key in keys} for i in range(count)]


def split_rows(X: torch.Tensor, rows: Sequence[int]) -> list[torch.Tensor]:
    """The row blocks of (..., m, n) matrices (views of X)."""
    return list(torch.split(X, list(rows), dim=-2))
