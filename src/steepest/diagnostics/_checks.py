"""Input validation shared by the diagnostics modules: clear errors before any work is done."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_matrix(fn: str, name: str, X: object) -> None:
    """Raise unless X is a real floating tensor of shape (..., m, n)."""
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(X).__name__}")
    if X.ndim < 2:
        raise ValueError(f"{fn}: {name} must have shape (..., m, n), got {tuple(X.shape)}")
    if not X.is_floating_point():
        raise TypeError(f"{fn}: {name} must be a floating tensor, got {X.dtype}")


def svd_dtype(X: torch.Tensor) -> torch.dtype:
    """The dtype an SVD of X runs in: float32 for half types (LAPACK has none), else X's."""
    return torch.float32 if X.dtype in (torch.float16, torch.bfloat16) else X.dtype


def check_tensor_list(fn: str, name: str, tensors: object) -> list[torch.Tensor]:
    """Return `tensors` as a non-empty list of floating tensors, or raise."""
    if isinstance(tensors, torch.Tensor) or not isinstance(tensors, Sequence):
        raise TypeError(
            f"{fn}: {name} must be a list of tensors, got {type(tensors).__name__}; "
            f"wrap a single tensor as [tensor]"
        )
    items: list[object] = list(tensors)
    if not items:
        raise ValueError(f"{fn}: {name} is empty; need at least one tensor")
    checked: list[torch.Tensor] = []
    for i, t in enumerate(items):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"{fn}: {name}[{i}] must be a floating torch.Tensor, got {got}")
        checked.append(t)
    return checked


def check_params_and_direction(
    fn: str, params: object, direction: object
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Check that params require grad and direction matches them one to one in shape."""
    params = check_tensor_list(fn, "params", params)
    direction = check_tensor_list(fn, "direction", direction)
    if len(params) != len(direction):
        raise ValueError(
            f"{fn}: direction has {len(direction)} tensors but params has {len(params)}; "
            f"need one direction tensor per parameter"
        )
    for i, (p, u) in enumerate(zip(params, direction, strict=False)):
        if not p.requires_grad:
            raise ValueError(f"{fn}: params[{i}] does not require grad; set requires_grad=True")
        if p.shape != u.shape:
            raise ValueError(
                f"{fn}: direction[{i}] has shape {tuple(u.shape)} but params[{i}] has "
                f"{tuple(p.shape)}; they must match"
            )
    return params, direction
