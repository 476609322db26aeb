"""The algorithms a param group can name, each a small object implementing the update stages.

A matrix algorithm (``matrix = True``) supplies the per-stage methods and the engine runs them:

    accumulate(grads, states, group)       -> directions        (1: momentum, EMA, Nesterov)
    precondition(directions, states, group) -> directions       (2: identity unless overridden)
    dualize(X, group)                      -> unit-norm X       (3: on a (K, m, n) stack)
    scale(m, n, group)                     -> float             (4: shape rule)
    rescale(updates, states, group)        -> updates           (4: state-dependent, identity
                                                                 unless overridden: NorMuon)
    apply(params, updates, group)                               (5: decoupled or cautious
                                                                 weight decay, p -= lr * u)

``vectors = True`` lets a matrix algorithm also take tensors with ndim < 2, read as one
(1, numel) row (elementwise rules such as sign descent, and the RMS norm of Scion).
A delegating algorithm
(``matrix = False``, e.g. AdamW) implements ``update(params, grads, states, group)`` instead.
Adding an optimizer is one small file that subclasses Algorithm and calls ``register``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["ALGORITHMS", "Algorithm", "Group", "State", "register"]

#: A param group as the algorithms read it (hyperparameters by name, "params", ...).
Group = Mapping[str, Any]
#: One parameter's optimizer state.
State = dict[str, Any]

#: name -> Algorithm instance; filled by ``register`` as the algorithm modules are imported.
ALGORITHMS: dict[str, Algorithm] = {}


class Algorithm:
    """Base class: the hyperparameters an algorithm reads from its group, and its stages."""

    name: str = ""
    #: True: the engine runs the five stages on matrix views; False: ``update`` does it all.
    matrix: bool = True
    #: True: tensors with ndim < 2 are accepted too, each read as a (1, numel) matrix.
    vectors: bool = False
    #: hyperparameter name -> default value; these are the group keys the algorithm reads.
    defaults: Mapping[str, Any] = {}

    def validate(self, who: str, hparams: Group, prefix: str = "") -> None:
        """Raise ValueError naming a bad hyperparameter (prefix + key) before state exists."""

    def init_state(self, p: torch.Tensor, group: Group) -> State:
        """The eager per-parameter state (created when the parameter is added)."""
        return {}

    def accumulate(
        self, grads: list[torch.Tensor], states: list[State], group: Group
    ) -> list[torch.Tensor]:
        """Stage 1: the direction to dualize, one per gradient."""
        return list(grads)

    def precondition(
        self, directions: list[torch.Tensor], states: list[State], group: Group
    ) -> list[torch.Tensor]:
        """Stage 2: identity by default."""
        return directions

    def dualize(self, X: torch.Tensor, group: Group) -> torch.Tensor:
        """Stage 3: the unit-norm direction of every matrix in a (K, m, n) stack."""
        raise NotImplementedError

    def takes_norms(self, group: Group) -> bool:
        """Whether ``dualize_normed`` can stand in for ``dualize`` in this group (the fused
        step then runs stage 1 as steepest.optim.fused_momentum.momentum_stack)."""
        return False

    #: Whether dualize_normed(s X, s norms) = dualize_normed(X, norms) for every s > 0; then
    #: the fused step may store each direction times a power of two (a float16 stack,
    #: steepest.optim.fused_momentum.momentum_stack's prescale).
    scale_invariant = False

    def dualize_normed(
        self,
        X: torch.Tensor,
        norms: torch.Tensor,
        dtype: torch.dtype,
        group: Group,
        *,
        unit_scaled: bool = False,
    ) -> torch.Tensor:
        """Stage 3 on an unnormalized (K, m, n) stack X, possibly 16-bit, whose matrices'
        Frobenius norms are ``norms`` (K,); the result in ``dtype``. ``unit_scaled``: the
        norms lie within a small factor of 1 (a prescaled stack; see msign)."""
        raise NotImplementedError

    def damp(self, U: torch.Tensor, norms: torch.Tensor, group: Group) -> torch.Tensor:
        """Stage 3's last step on a (K, m, n) stack of unit-norm directions U whose inputs had
        Frobenius norms ``norms`` (K,): identity unless overridden (Muon's eps)."""
        return U

    def scale(self, m: int, n: int, group: Group) -> float:
        """Stage 4: the multiplier of the unit-norm update of an (m, n) matrix."""
        return 1.0

    def rescale(
        self, updates: list[torch.Tensor], states: list[State], group: Group
    ) -> list[torch.Tensor]:
        """Stage 4, the part that needs per-parameter state; identity by default."""
        return updates

    def apply(self, params: list[torch.Tensor], updates: list[torch.Tensor], group: Group) -> None:
        """Stage 5: weight decay, then p <- p - lr * u.

        Decoupled (default): p <- (1 - lr wd) p - lr u (arXiv 1711.05101). Cautious
        (group key ``cautious_weight_decay=True``): the decay acts only where u * p >= 0,
        p <- p - lr (u + wd 1[u * p >= 0] p) (arXiv 2510.12402, Alg. 1).
        """
        lr, wd = group["lr"], group["weight_decay"]
        if wd != 0 and group.get("cautious_weight_decay", False):
            for p, u in zip(params, updates, strict=True):
                mask = (u * p >= 0).to(p.dtype)
                p.addcmul_(mask, p, value=-lr * wd)
        elif wd != 0:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        torch._foreach_add_(params, updates, alpha=-lr)

    def update(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[State],
        group: Group,
    ) -> None:
        """The whole step, for algorithms with ``matrix = False``."""
        raise NotImplementedError


def register(algorithm: Algorithm) -> Algorithm:
    """Add an algorithm to ALGORITHMS under its name (a name may be registered once)."""
    if not algorithm.name or algorithm.name in ALGORITHMS:
        raise ValueError(f"register: algorithm name {algorithm.name!r} is empty or taken")
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm
