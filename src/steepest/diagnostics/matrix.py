"""Spectral statistics of batched matrices: singular values, stable / nuclear / effective rank,
relative size under a chosen norm, and how far an update is from (scaled) orthogonal.

Every function takes a real floating tensor of shape (..., m, n) and returns one value per matrix,
of shape (...). Half-precision inputs are measured in float32. A zero matrix has every rank 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from ._checks import check_matrix, svd_dtype

__all__ = [
    "BUILTIN_NORMS",
    "batched_singular_values",
    "effective_rank",
    "matrix_norm",
    "nuclear_rank",
    "orthogonality_gap",
    "rank_summary",
    "relative_size",
    "singular_values",
    "stable_rank",
]

BUILTIN_NORMS = ("frobenius", "spectral", "nuclear")


class NormLike(Protocol):
    """Anything with a `norm(X)` method returning one value per matrix (e.g. a steepest Norm)."""

    def norm(self, X: torch.Tensor) -> torch.Tensor: ...


def _svdvals(X: torch.Tensor) -> torch.Tensor:
    """torch.linalg.svdvals, typed (its stub returns Any)."""
    s: torch.Tensor = torch.linalg.svdvals(X)
    return s


def singular_values(X: torch.Tensor) -> torch.Tensor:
    """Singular values of each matrix, in descending order.

    Args:
        X: real floating tensor of shape (..., m, n).

    Returns:
        Tensor of shape (..., min(m, n)).
    """
    check_matrix("singular_values", "X", X)
    return _svdvals(X.to(svd_dtype(X)))


def batched_singular_values(matrices: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Singular values of many matrices, with one `svdvals` call per group of equal shape.

    A wide matrix is transposed first (same singular values), so (m, n) and (n, m) share a
    group; each group is stacked and decomposed at once. Half precision runs in float32.

    Args:
        matrices: real floating tensors, each of shape (..., m, n); shapes may differ.

    Returns:
        list of tensors of shape (..., min(m, n)), descending, in the order given; each equals
        `singular_values` of its matrix.
    """
    if isinstance(matrices, torch.Tensor) or not isinstance(matrices, Sequence):
        raise TypeError(
            "batched_singular_values: matrices must be a list of tensors, got "
            f"{type(matrices).__name__}"
        )
    for i, X in enumerate(matrices):
        check_matrix("batched_singular_values", f"matrices[{i}]", X)
    out: list[torch.Tensor | None] = [None] * len(matrices)
    for indices, s in _grouped_svdvals(matrices):
        for i, row in zip(indices, s.unbind(0), strict=True):
            out[i] = row
    return [s for s in out if s is not None]


def _tall(X: torch.Tensor) -> torch.Tensor:
    """X, or its transpose when it is wide, in the dtype its SVD runs in."""
    X = X.to(svd_dtype(X))
    return X.mT if X.shape[-2] < X.shape[-1] else X


def _grouped_svdvals(matrices: Sequence[torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
    """Group the (tall) matrices by shape, dtype and device; one svdvals per group.

    Returns:
        list of (indices into `matrices`, singular values stacked along a new leading dim).
    """
    groups: dict[tuple[tuple[int, ...], torch.dtype, torch.device], list[int]] = {}
    tall = [_tall(X) for X in matrices]
    for i, X in enumerate(tall):
        groups.setdefault((tuple(X.shape), X.dtype, X.device), []).append(i)
    return [
        (indices, _svdvals(torch.stack([tall[i] for i in indices]))) for indices in groups.values()
    ]


def _padded_singular_values(
    matrices: Sequence[torch.Tensor], dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values of matrices as rows of one zero-padded tensor (one svdvals per shape).

    Zero padding leaves every statistic built from sums of s, s^2 or s log s unchanged, so the
    ranks of all matrices come from a handful of tensor operations on the result. A batch
    (b, m, n) is one row: the singular values of its block-diagonal matrix, all b min(m, n)
    of them in descending order.

    Args:
        matrices: non-empty list of real floating tensors (..., m, n) with min(m, n) >= 1,
            all on one device.
        dtype: dtype of the result (float64 keeps the statistics of float32 inputs exact).

    Returns:
        (S, lengths): S of shape (len(matrices), max length) on the first matrix's device,
        descending in each row and zero beyond `lengths[i]` (b min(m_i, n_i) for a batch).
    """
    if not matrices or any(X.ndim < 2 or min(X.shape[-2:]) < 1 for X in matrices):
        raise ValueError(
            "_padded_singular_values: need a non-empty list of (..., m, n) matrices with both "
            f"sides >= 1, got shapes {[tuple(X.shape) for X in matrices]}"
        )
    counts = [math.prod(X.shape[:-2]) * min(X.shape[-2:]) for X in matrices]
    width = max(counts)
    rows, order = [], []
    for indices, s in _grouped_svdvals(matrices):
        s = s.to(device=matrices[0].device, dtype=dtype)
        if s.ndim > 2:  # batches: one row of all their singular values, descending
            s = s.flatten(1).sort(dim=-1, descending=True).values
        rows.append(torch.nn.functional.pad(s, (0, width - s.shape[-1])))
        order.extend(indices)
    S = torch.cat(rows) if len(rows) > 1 else rows[0]
    position = torch.empty(len(order), dtype=torch.long)
    position[torch.tensor(order)] = torch.arange(len(order))
    S = S.index_select(0, position.to(S.device))
    lengths = torch.tensor(counts, device=S.device)
    return S, lengths


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, with 0 where den == 0 (the rank of a zero matrix)."""
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.zeros_like(num))


def stable_rank(A: torch.Tensor) -> torch.Tensor:
    """Stable rank srank(A) = ||A||_F^2 / ||A||_2^2, in [1, rank(A)] (0 for A = 0).

    Args:
        A: real floating tensor of shape (..., m, n).

    Returns:
        Tensor of shape (...).

    Example:
        >>> import torch
        >>> from steepest.diagnostics import stable_rank
        >>> stable_rank(torch.diag(torch.tensor([2.0, 1.0, 1.0])))  # (4 + 1 + 1) / 4
        tensor(1.5000)

    References:
        Cesista (2025), Definition 7.
    """
    check_matrix("stable_rank", "A", A)
    return _stable_rank(_svdvals(A.to(svd_dtype(A))))


def _stable_rank(s: torch.Tensor) -> torch.Tensor:
    return _ratio(s.square().sum(-1), s[..., 0].square())


def nuclear_rank(G: torch.Tensor) -> torch.Tensor:
    """Nuclear rank ||G||_*^2 / ||G||_F^2, in [1, rank(G)] (0 for G = 0).

    For a gradient this is the ratio that decides whether Muon's rate beats gradient descent's
    (arXiv 2505.23737: Muon gains when ||grad||_*^2 / ||grad||_F^2 is large against J / L).

    Args:
        G: real floating tensor of shape (..., m, n).

    Returns:
        Tensor of shape (...).

    References:
        Shen et al., arXiv 2505.23737, Fig. 3-4 (||grad||_*^2 and ||grad||_F^2 along training).
    """
    check_matrix("nuclear_rank", "G", G)
    return _nuclear_rank(_svdvals(G.to(svd_dtype(G))))


def _nuclear_rank(s: torch.Tensor) -> torch.Tensor:
    return _ratio(s.sum(-1).square(), s.square().sum(-1))


def effective_rank(A: torch.Tensor) -> torch.Tensor:
    """Entropy (effective) rank exp(H(p)), p_i = sigma_i / sum_j sigma_j, H(p) = -sum p_i log p_i.

    Lies in [1, rank(A)] (0 for A = 0), with 0 log 0 = 0.

    Args:
        A: real floating tensor of shape (..., m, n).

    Returns:
        Tensor of shape (...).

    References:
        O. Roy and M. Vetterli, "The effective rank: a measure of effective dimensionality",
        EUSIPCO 2007 (cited by arXiv 2606.04662, ref. [67]).
    """
    check_matrix("effective_rank", "A", A)
    return _effective_rank(_svdvals(A.to(svd_dtype(A))))


def _effective_rank(s: torch.Tensor) -> torch.Tensor:
    total = s.sum(-1, keepdim=True)
    p = _ratio(s, total.expand_as(s))
    plogp = torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), 0.0)
    entropy_rank = torch.exp(-plogp.sum(-1))
    return torch.where(total.squeeze(-1) > 0, entropy_rank, torch.zeros_like(entropy_rank))


def rank_summary(A: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stable, nuclear and effective rank and the spectral norm of A from one SVD.

    Args:
        A: real floating tensor of shape (..., m, n).

    Returns:
        dict with `stable_rank`, `nuclear_rank`, `effective_rank`, `spectral_norm`, each of
        shape (...), equal to the functions of the same names.
    """
    check_matrix("rank_summary", "A", A)
    s = _svdvals(A.to(svd_dtype(A)))
    return {
        "stable_rank": _stable_rank(s),
        "nuclear_rank": _nuclear_rank(s),
        "effective_rank": _effective_rank(s),
        "spectral_norm": s[..., 0],
    }


def matrix_norm(X: torch.Tensor, norm: str | NormLike = "frobenius") -> torch.Tensor:
    """||X|| per matrix under a chosen norm.

    Args:
        X: real floating tensor of shape (..., m, n).
        norm: "frobenius", "spectral" (largest singular value) or "nuclear" (sum of singular
            values); any other name is looked up with `steepest.norms.get(name)` when that
            registry exists; or an object with a `norm(X)` method (e.g. a `steepest.norms` Norm).

    Returns:
        Tensor of shape (...).
    """
    check_matrix("matrix_norm", "X", X)
    return _norm_fn(norm, "matrix_norm")(X)


def _norm_fn(norm: str | NormLike, fn: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Resolve `norm` (a name or an object with .norm) to a callable X -> ||X||."""
    if isinstance(norm, str):
        key = norm.lower()
        if key == "frobenius":
            return lambda X: _matrix_norm(X, "fro")
        if key == "spectral":
            return lambda X: _matrix_norm(X, 2)
        if key == "nuclear":
            return lambda X: _matrix_norm(X, "nuc")
        registry = _norm_registry()
        if registry is not None:
            try:
                return registry(norm).norm
            except (KeyError, ValueError) as err:
                raise ValueError(f"{fn}: unknown norm={norm!r}: {err}") from err
        raise ValueError(
            f"{fn}: norm={norm!r} is not known; use one of {BUILTIN_NORMS} or an object with a "
            f"norm(X) method"
        )
    norm_method = getattr(norm, "norm", None)
    if callable(norm_method):
        return lambda X: _as_tensor(norm_method(X))
    raise TypeError(
        f"{fn}: norm must be a name in {BUILTIN_NORMS} or an object with a norm(X) method, "
        f"got {type(norm).__name__}"
    )


def _matrix_norm(X: torch.Tensor, ord: str | int) -> torch.Tensor:
    """torch.linalg.matrix_norm of X in its SVD dtype, typed (its stub returns Any)."""
    value: torch.Tensor = torch.linalg.matrix_norm(X.to(svd_dtype(X)), ord=ord)
    return value


def _as_tensor(value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"norm(X) returned {type(value).__name__}; need a torch.Tensor")
    return value


def _norm_registry() -> Callable[[str], NormLike] | None:
    """`steepest.norms.get` if the norms package provides it, else None."""
    try:
        from steepest import norms
    except ImportError:
        return None
    get: Callable[[str], NormLike] | None = getattr(norms, "get", None)
    return get


def relative_size(
    dW: torch.Tensor, W: torch.Tensor, norm: str | NormLike = "frobenius"
) -> torch.Tensor:
    """Relative size relsize(dW) = ||dW|| / ||W|| under a chosen norm (inf where W = 0 != dW).

    Args:
        dW: the update, real floating tensor of shape (..., m, n).
        W: the parameter, same shape as dW.
        norm: as in `matrix_norm`: "frobenius", "spectral", "nuclear", a registered name, or an
            object with a `norm(X)` method.

    Returns:
        Tensor of shape (...).

    References:
        Cesista (2025), Definition 6.
    """
    check_matrix("relative_size", "dW", dW)
    check_matrix("relative_size", "W", W)
    if dW.shape != W.shape:
        raise ValueError(
            f"relative_size: dW has shape {tuple(dW.shape)} but W has {tuple(W.shape)}; "
            f"they must match"
        )
    fn = _norm_fn(norm, "relative_size")
    num, den = fn(dW), fn(W)
    zero_both = (num == 0) & (den == 0)
    return torch.where(zero_both, torch.zeros_like(num), num / den)


def orthogonality_gap(U: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Orthogonality error of an update: max_i |sigma_i(U) - 1| over all min(m, n) values.

    0 exactly when U has orthonormal rows or columns (U = msign(G) for a full-rank G). With
    `normalize=True` U is first divided by its largest singular value, so lr * msign(G) also
    scores 0 and the result is max_i (1 - sigma_i / sigma_max), the spread of the spectrum.
    (For an approximate polar factor judged on G's own singular subspaces see
    `steepest.polar.orthogonality_error(G, O)`.)

    Args:
        U: real floating tensor of shape (..., m, n).
        normalize: divide by sigma_max first (a zero matrix then scores 1).

    Returns:
        Tensor of shape (...).

    References:
        Cesista (2025), §3.3.1 (msign(G) = U V^T has all singular values 1).
    """
    check_matrix("orthogonality_gap", "U", U)
    if not isinstance(normalize, bool):
        raise TypeError(f"orthogonality_gap: normalize={normalize!r}; need True or False")
    s = _svdvals(U.to(svd_dtype(U)))
    if normalize:
        s = _ratio(s, s[..., :1].expand_as(s))
    return (s - 1.0).abs().amax(-1)
