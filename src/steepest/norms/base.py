"""The abstract `Norm`: norm(X), dual_norm(G), dualize(G) on batched tensors, with a shape scale."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

__all__ = ["Norm", "check_bool", "check_tensor"]


def check_tensor(owner: str, name: str, X: object, min_ndim: int) -> torch.Tensor:
    """Raise unless X is a non-empty real floating tensor with ndim >= min_ndim."""
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(X).__name__}")
    if not X.is_floating_point():
        raise TypeError(f"{owner}: {name} has dtype {X.dtype}; need a real floating dtype")
    if X.ndim < min_ndim:
        what = "(..., m, n) with ndim >= 2" if min_ndim == 2 else "(..., n) with ndim >= 1"
        raise ValueError(f"{owner}: {name} has shape {tuple(X.shape)}; need {what}")
    if any(size == 0 for size in X.shape[X.ndim - min_ndim :]):
        raise ValueError(
            f"{owner}: {name} has shape {tuple(X.shape)}; the reduced dimensions must be non-empty"
        )
    return X


def check_bool(owner: str, name: str, value: object) -> bool:
    """Raise TypeError unless value is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name}={value!r}; need True or False")
    return value


class Norm(ABC):
    """A norm on the last `min_ndim` dimensions of a tensor, with its dual norm and dualizer.

    Math: for a norm ||.|| with dual ||G||_* = max_{||T|| = 1} <G, T>, the dualizer is the
    maximizer T* = dualize(G), so ||dualize(G)|| = 1 and <G, dualize(G)> = ||G||_* for G != 0
    (<., .> is the entrywise (Frobenius) inner product over the reduced dims). A zero G (also one
    inside a batch, or a zero column/row for the column/row norms) dualizes to zeros.

    Shape scaling: a subclass defines an unscaled norm N (`_norm`, `_dual_norm`, `_dualize`) and
    may define a positive factor c = `_scale(shape)` that depends only on the shape (e.g. the RMS
    factors of the LMO table in Beznosikov (2025)). The object's norm is then c * N,
    its dual norm N_* / c and its dualizer dualize_N / c, so both identities hold exactly for the
    scaled norm whatever c is.

    Shapes: matrix norms (min_ndim = 2) reduce over the last two dims (..., m, n) and return a
    tensor of shape (...); vector norms (min_ndim = 1) reduce over the last dim. Leading dims
    are a batch. dualize returns a tensor of G's shape and dtype.

    References:
        Cesista (2025), §2.3 (the dualizer, eq. for dualizer_{||.||}).
    """

    #: 2 for matrix norms (reduce over (..., m, n)), 1 for vector norms (reduce over (..., n)).
    min_ndim: int = 2

    def norm(self, X: torch.Tensor) -> torch.Tensor:
        """||X|| per matrix (or vector) of X; shape X.shape[:-min_ndim]."""
        X = check_tensor(f"{type(self).__name__}.norm", "X", X, self.min_ndim)
        return self._norm(X) * self._scale(X.shape)

    def dual_norm(self, G: torch.Tensor) -> torch.Tensor:
        """||G||_* = max_{||T|| = 1} <G, T> per matrix (or vector); shape G.shape[:-min_ndim]."""
        G = check_tensor(f"{type(self).__name__}.dual_norm", "G", G, self.min_ndim)
        return self._dual_norm(G) / self._scale(G.shape)

    def dualize(self, G: torch.Tensor) -> torch.Tensor:
        """argmax_{||T|| = 1} <G, T> per matrix (or vector); zeros where G is zero."""
        G = check_tensor(f"{type(self).__name__}.dualize", "G", G, self.min_ndim)
        scale = self._scale(G.shape)
        T = self._dualize(G)
        return T if scale == 1.0 else T / scale

    def inner(self, G: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        """<G, T>: the entrywise product summed over the reduced dims; shape G.shape[:-min_ndim]."""
        dims = tuple(range(-self.min_ndim, 0))
        return (G * T).sum(dim=dims)

    @classmethod
    def examples(cls) -> list[Norm]:
        """Configurations the registry's property tests run (exact backends); one per
        distinct case of the constructor's arguments. Default: the no-argument instance."""
        return [cls()]

    # -- what a subclass defines ------------------------------------------------------------
    @abstractmethod
    def _norm(self, X: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _dual_norm(self, G: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _dualize(self, G: torch.Tensor) -> torch.Tensor: ...

    def _scale(self, shape: torch.Size) -> float:
        """The shape factor c > 0 (norm = c * unscaled norm); 1 unless a subclass says otherwise."""
        return 1.0

    def _params(self) -> dict[str, object]:
        """The constructor arguments shown by repr."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self._params().items())
        return f"{type(self).__name__}({args})"
