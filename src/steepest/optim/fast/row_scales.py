"""Row factors of a float16 stack whose matrices were stored in row parts with different
powers of two (the sharded fused step's owned stack: each rank stores its rows of a matrix
times the scale the matrix shares, or times its own where that scale is unknown or would
overflow). ``rescale_rows`` brings every part to one scale in place; on CUDA a Triton kernel
that leaves matrices whose factors are all 1 unread, so the usual step pays a launch and a
look at the factors, not a pass over the stack. The torch path is the reference.
"""

from __future__ import annotations

import torch

from steepest.kernels import triton_available
from steepest.polar.kernels import KERNELS

__all__ = ["rescale_rows"]


def rescale_rows(X: torch.Tensor, factors: torch.Tensor, kernel: str = "auto") -> torch.Tensor:
    """Multiply the rows of the (K, rows, cols) stack X by factors (K, rows) float32, in place
    (the products in float32, rounded once to X's dtype); returns X.

    kernel: "auto" (Triton for a contiguous CUDA X, torch otherwise), "torch" or "triton".
    """
    if kernel not in KERNELS:
        raise ValueError(f"rescale_rows: kernel={kernel!r} is unknown; use one of {KERNELS}")
    if X.ndim != 3 or factors.shape != X.shape[:2] or factors.dtype != torch.float32:
        got = (tuple(X.shape), tuple(factors.shape), factors.dtype)
        raise ValueError(
            f"rescale_rows: X, factors are {got}; need a (K, rows, cols) X and (K, rows) "
            "float32 factors"
        )
    runs = X.device.type == "cuda" and X.is_contiguous() and triton_available()
    if kernel == "triton" and not runs:
        raise ValueError("rescale_rows: kernel='triton' needs a contiguous CUDA X and triton")
    if kernel == "torch" or not runs:
        return X.copy_(X.to(torch.float32) * factors[..., None])
    torch.ops.steepest.rescale_rows_triton(X, factors.contiguous())
    return X


@torch.library.custom_op(
    "steepest::rescale_rows_triton", mutates_args=("X",), schema="(Tensor(a!) X, Tensor f) -> ()"
)
def _rescale_rows_op(X: torch.Tensor, f: torch.Tensor) -> None:
    """The Triton path as one opaque op for torch.compile (X declared mutated, so Inductor
    does not clone it around the launch)."""
    from steepest.kernels.row_scale import rescale_rows_triton

    rescale_rows_triton(X, f)


@_rescale_rows_op.register_fake
def _rescale_rows_fake(X: torch.Tensor, f: torch.Tensor) -> None:
    return None
