"""Per-parameter statistics of one optimizer step, from a snapshot taken before the step.

Usage::

    before = snapshot(model.named_parameters())
    optimizer.step()                      # p.grad still holds the gradient of this step
    stats = update_stats(model.named_parameters(), before)
    stats["fc.weight"]["effective_lr"]
"""

from __future__ import annotations

import math

import torch

from ._checks import svd_dtype
from .matrix import _effective_rank, _nuclear_rank, _stable_rank

__all__ = ["matrix_view", "snapshot", "update_stats"]


def matrix_view(X: torch.Tensor) -> torch.Tensor | None:
    """The matrix a parameter is treated as: (out, in*...) for ndim >= 2, None for vectors."""
    return X.reshape(X.shape[0], -1) if X.ndim >= 2 else None


def _named(fn: str, params) -> list[tuple[str, torch.Tensor]]:
    """Normalize tensors / (name, tensor) pairs / a dict to a list of (name, tensor)."""
    if isinstance(params, torch.Tensor):
        raise TypeError(f"{fn}: params must be an iterable of tensors; wrap one tensor as [p]")
    items = list(params.items()) if isinstance(params, dict) else list(params)
    if not items:
        raise ValueError(f"{fn}: params is empty")
    named = []
    for i, item in enumerate(items):
        if isinstance(item, torch.Tensor):
            named.append((str(i), item))
        elif (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], torch.Tensor)
        ):
            named.append(item)
        else:
            raise TypeError(
                f"{fn}: params[{i}] is {type(item).__name__}; need tensors or (name, tensor) pairs"
            )
    return named


def snapshot(params) -> dict[str, torch.Tensor]:
    """Detached copies of the parameters, keyed like `update_stats` keys its result.

    Args:
        params: tensors, (name, tensor) pairs (e.g. model.named_parameters()) or a dict;
            unnamed tensors are keyed "0", "1", ...

    Returns:
        dict name -> cloned tensor.
    """
    return {name: p.detach().clone() for name, p in _named("snapshot", params)}


def update_stats(params, before: dict[str, torch.Tensor], grads=None) -> dict[str, dict]:
    """Statistics of the update dW = W_after - W_before of each parameter, against its gradient g.

    Math (all Frobenius / Euclidean over the whole tensor unless noted; u = -dW is the step
    direction times lr):
        update_rms    = ||dW||_F / sqrt(numel)
        relative_size = ||dW||_F / ||W_before||_F          (seed 000 Def. 6, Frobenius norm)
        effective_lr  = ||dW||_F / ||g||_F                 (equals lr for SGD)
        cosine        = <-dW, g> / (||dW||_F ||g||_F),   angle_deg = degrees(arccos(cosine))
        grad_dual_norm = ||g||_* (nuclear norm of the matrix view) for ndim >= 2 (the dual of
                         the spectral norm Muon steps in), ||g||_2 for vectors
    and for matrices (ndim >= 2, through their matrix view (out, in*...)), from one SVD each of
    dW and g: update_spectral = ||dW||_2, update_stable_rank, update_orthogonality_gap
    (`orthogonality_gap(dW, normalize=True)`), grad_stable_rank, grad_nuclear_rank
    (||g||_*^2 / ||g||_F^2, seed 004) and grad_effective_rank.
    A parameter without gradient gets only the update statistics.

    Args:
        params: the parameters after the step: tensors, (name, tensor) pairs or a dict, in the
            same form as given to `snapshot`.
        before: the dict returned by `snapshot(params)` before the step.
        grads: optional dict name -> gradient; default p.grad of each parameter.

    Returns:
        dict name -> dict of floats.

    References:
        seeds/000_0ff94013880c6450.txt, Definition 6 (relative size) and §2.3 (dual norms).
    """
    if not isinstance(before, dict):
        raise TypeError("update_stats: before must be the dict returned by snapshot(params)")
    if grads is not None and not isinstance(grads, dict):
        raise TypeError("update_stats: grads must be a dict name -> tensor or None")
    named = _named("update_stats", params)
    missing = [name for name, _ in named if name not in before]
    if missing:
        raise ValueError(
            f"update_stats: before has no entry for {missing[:3]}; take it with snapshot() on "
            f"the same params"
        )
    out = {}
    for name, p in named:
        W0 = before[name]
        if W0.shape != p.shape:
            raise ValueError(
                f"update_stats: before[{name!r}] has shape {tuple(W0.shape)} but the parameter "
                f"has {tuple(p.shape)}"
            )
        g = p.grad if grads is None else grads.get(name)
        out[name] = _one_param(p.detach(), W0, None if g is None else g.detach())
    return out


def _one_param(W: torch.Tensor, W0: torch.Tensor, g: torch.Tensor | None) -> dict[str, float]:
    dtype = svd_dtype(W)
    dW = (W.to(dtype) - W0.to(dtype)).reshape(W.shape)
    dW_norm = torch.linalg.vector_norm(dW).item()
    W0_norm = torch.linalg.vector_norm(W0.to(dtype)).item()
    stats = {
        "update_rms": dW_norm / math.sqrt(max(W.numel(), 1)),
        "relative_size": dW_norm / W0_norm if W0_norm > 0 else float("nan"),
    }
    view = matrix_view(dW)
    if view is not None:
        s_u = torch.linalg.svdvals(view)
        top = s_u[0].item()
        stats["update_spectral"] = top
        stats["update_stable_rank"] = _stable_rank(s_u).item()
        stats["update_orthogonality_gap"] = (1.0 - s_u[-1] / top).item() if top > 0 else 1.0
    if g is None:
        return stats
    g = g.to(dtype)
    g_norm = torch.linalg.vector_norm(g).item()
    cosine = float("nan")
    if g_norm > 0 and dW_norm > 0:
        cosine = max(-1.0, min(1.0, -(dW * g).sum().item() / (dW_norm * g_norm)))
    g_view = matrix_view(g)
    if g_view is None:
        dual = g_norm
    else:
        s_g = torch.linalg.svdvals(g_view)
        dual = s_g.sum().item()
        stats["grad_stable_rank"] = _stable_rank(s_g).item()
        stats["grad_nuclear_rank"] = _nuclear_rank(s_g).item()
        stats["grad_effective_rank"] = _effective_rank(s_g).item()
    stats.update(
        {
            "effective_lr": dW_norm / g_norm if g_norm > 0 else float("nan"),
            "grad_dual_norm": dual,
            "cosine": cosine,
            "angle_deg": math.degrees(math.acos(cosine)) if cosine == cosine else float("nan"),
        }
    )
    return stats
