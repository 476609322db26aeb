"""Per-parameter statistics of one optimizer step, from a snapshot taken before the step.

Usage::

    before = snapshot(model.named_parameters())
    optimizer.step()                      # p.grad still holds the gradient of this step
    stats = update_stats(model.named_parameters(), before)
    stats["fc.weight"]["effective_lr"]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from steepest.matrices.views import as_matrices

from ._checks import svd_dtype
from .matrix import _effective_rank, _nuclear_rank, _padded_singular_values, _ratio, _stable_rank

__all__ = ["matrix_view", "snapshot", "update_stats"]

#: A parameter set: tensors, (name, tensor) pairs or a dict name -> tensor.
Params = Mapping[str, torch.Tensor] | Iterable[torch.Tensor | tuple[str, torch.Tensor]]

#: Statistics as tensors: stat -> (parameter names, float64 values, one per name).
StatTable = dict[str, tuple[list[str], torch.Tensor]]


def matrix_view(X: torch.Tensor) -> torch.Tensor | None:
    """The matrices the optimizers read a parameter as (steepest.matrices.as_matrices,
    "auto"): (out, in) for ndim 2, a batch of (m, n) matrices for a stacked (experts, m, n)
    weight, (out, in*kh*kw) for a conv weight; None for vectors. A batch's statistics are
    those of its block-diagonal matrix (the union of its matrices' singular values)."""
    return as_matrices(X) if X.ndim >= 2 else None


def _named(fn: str, params: Params) -> list[tuple[str, torch.Tensor]]:
    """Normalize tensors / (name, tensor) pairs / a dict to a list of (name, tensor)."""
    if isinstance(params, torch.Tensor):
        raise TypeError(f"{fn}: params must be an iterable of tensors; wrap one tensor as [p]")
    items: list[object] = list(params.items()) if isinstance(params, Mapping) else list(params)
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
            named.append((item[0], item[1]))
        else:
            raise TypeError(
                f"{fn}: params[{i}] is {type(item).__name__}; need tensors or (name, tensor) pairs"
            )
    return named


def snapshot(params: Params) -> dict[str, torch.Tensor]:
    """Detached copies of the parameters, keyed like `update_stats` keys its result.

    Args:
        params: tensors, (name, tensor) pairs (e.g. model.named_parameters()) or a dict;
            unnamed tensors are keyed "0", "1", ...

    Returns:
        dict name -> cloned tensor.
    """
    return {name: p.detach().clone() for name, p in _named("snapshot", params)}


def update_stats(
    params: Params,
    before: dict[str, torch.Tensor],
    grads: Mapping[str, torch.Tensor | None] | None = None,
) -> dict[str, dict[str, float]]:
    """Statistics of the update dW = W_after - W_before of each parameter, against its gradient g.

    Math (all Frobenius / Euclidean over the whole tensor unless noted; u = -dW is the step
    direction times lr):
        update_rms    = ||dW||_F / sqrt(numel)
        relative_size = ||dW||_F / ||W_before||_F          (Cesista 2025, Def. 6; Frobenius)
        effective_lr  = ||dW||_F / ||g||_F                 (equals lr for SGD)
        cosine        = <-dW, g> / (||dW||_F ||g||_F),   angle_deg = degrees(arccos(cosine))
        grad_dual_norm = ||g||_* (nuclear norm of the matrix view) for ndim >= 2 (the dual of
                         the spectral norm Muon steps in), ||g||_2 for vectors
    and for matrices (ndim >= 2, through their matrix view (out, in*...)), from the singular
    values of dW and g (one svdvals call per group of equal shape over all parameters):
    update_spectral = ||dW||_2, update_stable_rank, update_orthogonality_gap
    (`orthogonality_gap(dW, normalize=True)`), grad_stable_rank, grad_nuclear_rank
    (||g||_*^2 / ||g||_F^2, arXiv 2505.23737) and grad_effective_rank.
    A parameter without gradient gets only the update statistics. All values are computed as
    tensors and copied to the host once.

    Args:
        params: the parameters after the step: tensors, (name, tensor) pairs or a dict, in the
            same form as given to `snapshot`.
        before: the dict returned by `snapshot(params)` before the step.
        grads: optional dict name -> gradient; default p.grad of each parameter.

    Returns:
        dict name -> dict of floats.

    References:
        Cesista (2025), Definition 6 (relative size) and §2.3 (dual norms).
    """
    if not isinstance(before, dict):
        raise TypeError("update_stats: before must be the dict returned by snapshot(params)")
    if grads is not None and not isinstance(grads, Mapping):
        raise TypeError("update_stats: grads must be a dict name -> tensor or None")
    named = _named("update_stats", params)
    missing = [name for name, _ in named if name not in before]
    if missing:
        raise ValueError(
            f"update_stats: before has no entry for {missing[:3]}; take it with snapshot() on "
            f"the same params"
        )
    for name, p in named:
        if before[name].shape != p.shape:
            raise ValueError(
                f"update_stats: before[{name!r}] has shape {tuple(before[name].shape)} but the "
                f"parameter has {tuple(p.shape)}"
            )
    chosen = {name: p.grad if grads is None else grads.get(name) for name, p in named}
    table = update_table(dict(named), before, chosen)
    return table_to_floats(table, [name for name, _ in named], keep=UPDATE_STATS)


#: The statistics `update_stats` reports, in the order each parameter's dict lists them.
UPDATE_STATS = (
    "update_rms",
    "relative_size",
    "update_spectral",
    "update_stable_rank",
    "update_orthogonality_gap",
    "effective_lr",
    "grad_dual_norm",
    "cosine",
    "angle_deg",
    "grad_stable_rank",
    "grad_nuclear_rank",
    "grad_effective_rank",
)


def update_table(
    params: Mapping[str, torch.Tensor],
    before: Mapping[str, torch.Tensor],
    grads: Mapping[str, torch.Tensor | None],
) -> StatTable:
    """The statistics of `update_stats` as float64 tensors, without checks or host copies.

    Besides `UPDATE_STATS` the table holds `update_frobenius` (||dW||_F, all parameters) for
    callers that reuse it (the Monitor's smoothness estimates). Tensors live on the device of
    the first parameter.

    Args:
        params: name -> parameter after the step (shapes already checked against `before`).
        before: name -> parameter before the step.
        grads: name -> gradient or None (no gradient statistics for that parameter).

    Returns:
        dict stat -> (names, values) with values of shape (len(names),).
    """
    names = list(params)
    device = params[names[0]].device
    dW, W0, numel = [], [], []
    for name in names:
        W = params[name].detach()
        dtype = svd_dtype(W)
        W0.append(before[name].to(dtype))
        dW.append(W.to(dtype) - W0[-1])
        numel.append(max(W.numel(), 1))
    dW_norm = _stack_norms(dW, device)
    W0_norm = _stack_norms(W0, device)
    nan = torch.full_like(dW_norm, math.nan)
    table: StatTable = {
        "update_frobenius": (names, dW_norm),
        "update_rms": (
            names,
            dW_norm / torch.tensor(numel, dtype=torch.float64, device=device).sqrt(),
        ),
        "relative_size": (names, torch.where(W0_norm > 0, dW_norm / W0_norm, nan)),
    }
    with_grad = [i for i, name in enumerate(names) if grads.get(name) is not None]
    g = []
    for i in with_grad:
        grad = grads[names[i]]
        assert grad is not None
        g.append(grad.detach().to(dW[i].dtype))
    matrices = [i for i, X in enumerate(dW) if X.ndim >= 2 and X.numel() > 0]
    grad_matrices = [j for j, i in enumerate(with_grad) if dW[i].ndim >= 2 and dW[i].numel() > 0]
    views = [matrix_view(dW[i]) for i in matrices] + [matrix_view(g[j]) for j in grad_matrices]
    if views:
        S, lengths = _padded_singular_values([v for v in views if v is not None])
        S, lengths = S.to(device), lengths.to(device)
        S_u, S_g = S[: len(matrices)], S[len(matrices) :]
        top = S_u[:, 0]
        bottom = S_u.gather(1, (lengths[: len(matrices)] - 1).unsqueeze(1)).squeeze(1)
        matrix_names = [names[i] for i in matrices]
        table["update_spectral"] = (matrix_names, top)
        table["update_stable_rank"] = (matrix_names, _stable_rank(S_u))
        table["update_orthogonality_gap"] = (
            matrix_names,
            torch.where(top > 0, 1.0 - _ratio(bottom, top), torch.ones_like(top)),
        )
        grad_names = [names[with_grad[j]] for j in grad_matrices]
        table["grad_nuclear_norm"] = (grad_names, S_g.sum(-1))
        table["grad_stable_rank"] = (grad_names, _stable_rank(S_g))
        table["grad_nuclear_rank"] = (grad_names, _nuclear_rank(S_g))
        table["grad_effective_rank"] = (grad_names, _effective_rank(S_g))
    if with_grad:
        grad_names = [names[i] for i in with_grad]
        g_norm = _stack_norms(g, device)
        u_norm = dW_norm[with_grad]
        dots = torch.stack(
            [
                torch.dot(dW[i].reshape(-1), gj.reshape(-1)).to(device, torch.float64)
                for i, gj in zip(with_grad, g, strict=True)
            ]
        )
        both = (g_norm > 0) & (u_norm > 0)
        cosine = torch.where(both, (-dots / (u_norm * g_norm)).clamp(-1.0, 1.0), nan[with_grad])
        dual = g_norm.clone()
        if "grad_nuclear_norm" in table:
            dual[torch.tensor(grad_matrices, dtype=torch.long, device=device)] = table[
                "grad_nuclear_norm"
            ][1]
        table["effective_lr"] = (
            grad_names,
            torch.where(g_norm > 0, u_norm / g_norm, nan[with_grad]),
        )
        table["grad_dual_norm"] = (grad_names, dual)
        table["cosine"] = (grad_names, cosine)
        table["angle_deg"] = (grad_names, torch.rad2deg(torch.acos(cosine)))
    return table


def _stack_norms(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Euclidean norms of all tensors (one foreach call) as a float64 vector on `device`."""
    norms = torch._foreach_norm(tensors)
    if all(n.dtype == torch.float64 and n.device == device for n in norms):
        return torch.stack(list(norms))
    return torch.stack([n.to(device=device, dtype=torch.float64) for n in norms])


def table_to_floats(
    table: StatTable, names: list[str], keep: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Copy the statistics named in `keep` to the host at once: name -> stat -> float."""
    stats = [stat for stat in keep if stat in table]
    if not stats:
        return {name: {} for name in names}
    values = torch.cat([table[stat][1].to(torch.float64) for stat in stats]).tolist()
    out: dict[str, dict[str, float]] = {name: {} for name in names}
    position = 0
    for stat in stats:
        for name in table[stat][0]:
            out[name][stat] = values[position]
            position += 1
    return out
