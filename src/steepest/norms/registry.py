"""Norms by name: steepest.norms.get(name, **kwargs) and steepest.norms.available()."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from .base import Norm

__all__ = ["available", "get", "norm_class", "register_norm"]

#: name -> Norm subclass; filled by ``register_norm`` as the norm modules are imported.
_REGISTRY: dict[str, type[Norm]] = {}

N = TypeVar("N", bound=type[Norm])


def register_norm(name: str) -> Callable[[N], N]:
    """Class decorator: make ``norms.get(name)`` build this Norm (a name may be taken once).

    The registered class's ``examples()`` are the configurations the property tests run.
    """

    def add(cls: N) -> N:
        key = name.lower()
        if not key or key in _REGISTRY:
            raise ValueError(f"register_norm: norm name {name!r} is empty or taken")
        _REGISTRY[key] = cls
        return cls

    return add


def norm_class(name: str) -> type[Norm]:
    """The Norm subclass registered under ``name`` (case-insensitive)."""
    key = _check_name(name)
    return _REGISTRY[key]


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(
            f"norms.get: name={name!r} must be a str or a Norm; use one of {list(available())}"
        )
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"norms.get: unknown norm name={name!r}; use one of {list(available())}")
    return key


def available() -> tuple[str, ...]:
    """The names `get` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def get(name: str | Norm, **kwargs: object) -> Norm:
    """Build the norm called `name` with the constructor arguments `kwargs`.

    Args:
        name: one of available() (case-insensitive), e.g. "spectral", or a Norm instance,
            which is returned as is (then kwargs must be empty).
        **kwargs: passed to the norm's constructor, e.g. get("schatten", p=4),
            get("spectral", backend="polar_express", rms=True).

    Returns:
        A Norm instance.

    Raises:
        ValueError: unknown name (the message lists the allowed names) or bad constructor values.
        TypeError: name of the wrong type, or arguments the norm's constructor does not take.

    Example:
        >>> import torch
        >>> from steepest import norms
        >>> spectral = norms.get("spectral")
        >>> G = torch.tensor([[3.0, 0.0], [0.0, -1.0]])
        >>> spectral.dualize(G)  # U V^T
        tensor([[ 1.,  0.],
                [ 0., -1.]])
        >>> spectral.dual_norm(G)  # the nuclear norm, <G, dualize(G)>
        tensor(4.)
    """
    if isinstance(name, Norm):
        if kwargs:
            raise TypeError(
                f"norms.get: got the Norm instance {name!r} and kwargs {kwargs!r}; "
                "pass either a configured instance or a name with kwargs"
            )
        return name
    cls = norm_class(name)
    accepted = [
        parameter.name
        for parameter in inspect.signature(cls).parameters.values()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]
    unexpected = sorted(set(kwargs) - set(accepted))
    if unexpected:
        raise TypeError(
            f"norms.get({name!r}): unexpected argument(s) {unexpected}; "
            f"{cls.__name__} accepts {accepted}"
        )
    return cls(**kwargs)
