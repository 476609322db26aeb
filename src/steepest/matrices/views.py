"""Matrix views: how a parameter tensor is read as a batch of (m, n) matrices.

A group declares its view with ``matrix_view`` and optionally ``blocks``:

* ``"auto"`` (default): ndim 2 is (out, in); ndim 3 is a batch of matrices (experts, m, n);
  ndim >= 4 is a conv weight (out, in, kh, kw) read as (out, in * kh * kw).
* ``"flatten"``: (shape[0], prod(shape[1:])), e.g. a Conv1d weight (out, in, k).
* ``"batch"``: leading dims are a batch of (shape[-2], shape[-1]) matrices.
* ``"transposed"``: the last two dims swapped, leading dims a batch: a weight stored as
  (d_in, d_out), e.g. Hugging Face's GPT-2 ``Conv1D``, is read as the (d_out, d_in) matrix
  that the shape rules and row-wise norms expect. The matrices are transposed views of the
  tensor; ``as_matrices`` / ``from_matrices`` read and write them.
* a tuple of ints: a reshape whose last two dims are the matrix, e.g. (heads, head_dim, d_in)
  to orthogonalize each attention head on its own.
* a tensor with ndim < 2 (only for algorithms that accept vectors) is one (1, numel) row.
* ``blocks``: a list of row counts that splits every matrix of the view into row blocks, e.g.
  a fused QKV weight (3 d, d) with blocks [d, d, d] is three (d, d) matrices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch

__all__ = [
    "VIEWS",
    "View",
    "as_matrices",
    "check_view",
    "from_matrices",
    "join_matrices",
    "local_part",
    "local_state",
    "matrix_shape",
    "split_matrices",
]

VIEWS = ("auto", "flatten", "batch", "transposed")

#: A group's ``matrix_view``: one of VIEWS or a reshape (tuple of ints, last two the matrix).
View = str | tuple[int, ...]


def matrix_shape(shape: Sequence[int], view: View = "auto") -> tuple[int, ...]:
    """The (..., m, n) shape under which a tensor of `shape` is read as matrices."""
    shape = tuple(shape)
    if isinstance(view, tuple):
        return view
    if len(shape) < 2:  # a vector or scalar (algorithms with vectors = True): one row
        return (1, math.prod(shape))
    if view == "transposed":
        return (*shape[:-2], shape[-1], shape[-2])
    if view == "batch" or (view == "auto" and len(shape) == 3):
        return shape
    return (shape[0], math.prod(shape[1:]))


def as_matrices(t: torch.Tensor, view: View = "auto") -> torch.Tensor:
    """`t` read as its (..., m, n) matrices under `view` (a view of t where torch can)."""
    if view == "transposed" and t.ndim >= 2:
        return t.mT
    return t.reshape(matrix_shape(t.shape, view))


def from_matrices(X: torch.Tensor, shape: Sequence[int], view: View = "auto") -> torch.Tensor:
    """Inverse of as_matrices: the (..., m, n) matrices X back as a tensor of `shape`."""
    if view == "transposed" and len(shape) >= 2:
        return X.mT.reshape(tuple(shape))
    return X.reshape(tuple(shape))


def check_view(
    who: str, name: str, shape: Sequence[int], view: View, blocks: Sequence[int] | None
) -> None:
    """Raise ValueError unless `view` and `blocks` give matrices for a tensor of `shape`."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(
            f"{who}: {name} has shape {shape}; a matrix algorithm needs ndim >= 2, "
            "route it to 'adamw'"
        )
    if isinstance(view, tuple):
        ok = len(view) >= 2 and all(isinstance(d, int) and d > 0 for d in view)
        if not ok or math.prod(view) != math.prod(shape):
            raise ValueError(
                f"{who}: matrix_view={view!r} does not reshape {name} of shape {shape}; "
                "give positive ints with the same number of elements, last two the matrix"
            )
    elif view not in VIEWS:
        raise ValueError(
            f"{who}: matrix_view={view!r} is unknown; use one of {list(VIEWS)} or a tuple"
        )
    if blocks is not None:
        rows = matrix_shape(shape, view)[-2]
        ok = all(isinstance(b, int) and b > 0 for b in blocks)
        if not ok or sum(blocks) != rows:
            raise ValueError(
                f"{who}: blocks={list(blocks)!r} must be positive ints summing to the "
                f"{rows} rows of {name}'s matrix view {matrix_shape(shape, view)}"
            )


def split_matrices(
    t: torch.Tensor, view: View = "auto", blocks: Sequence[int] | None = None
) -> list[torch.Tensor]:
    """The (..., m_i, n) matrices of `t` under its view (views into t where possible)."""
    X = as_matrices(t, view)
    return [X] if blocks is None else list(X.split(list(blocks), dim=-2))  # type: ignore[no-untyped-call]


def join_matrices(
    pieces: list[torch.Tensor], shape: Sequence[int], view: View = "auto"
) -> torch.Tensor:
    """Inverse of split_matrices: concatenate the row blocks and bring them back to `shape`
    (pass the same `view`: a "transposed" view is transposed back)."""
    X = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-2)
    return from_matrices(X, shape, view)


def local_part(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a DTensor (its local tensor, the same storage); a plain tensor
    itself.

    The DTensor's ``_local_tensor`` where it has one: ``to_local()`` returns a view of it
    through an autograd function, which costs the host microseconds per tensor, and an
    optimizer step reads every parameter, gradient and state tensor so."""
    local = getattr(t, "_local_tensor", None)
    if isinstance(local, torch.Tensor):
        return local
    to_local = getattr(t, "to_local", None)
    return cast(torch.Tensor, to_local()) if callable(to_local) else t


def local_state(state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state with every tensor replaced by its ``local_part`` (other values
    kept): the state of this rank's part of a parameter."""
    return {k: local_part(v) if isinstance(v, torch.Tensor) else v for k, v in state.items()}
