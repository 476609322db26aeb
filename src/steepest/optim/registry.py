"""The algorithms a param group can name, each a small object implementing the update stages.

A matrix algorithm (``matrix = True``) supplies the per-stage methods and the engine runs them:

    accumulate(grads, states, group)       -> directions        (1: momentum, EMA, Nesterov)
    precondition(directions, states, group) -> directions       (2: identity unless overridden)
    norm(group)                            -> Norm or None      (3: the norm stage 3 dualizes
                                                                 under; steepest.norms)
    dualize(X, group)                      -> unit-norm X       (3: on a (K, m, n) stack;
                                                                 norm(group).dualize(X) unless
                                                                 overridden)
    scale(m, n, group)                     -> float             (4: shape rule)
    rescale(updates, states, group)        -> updates           (4: state-dependent, identity
                                                                 unless overridden: NorMuon)
    (5, the engine's: decoupled or cautious weight decay, p -= lr * u; stages.apply_update)

An algorithm declares what the GPU fast path may do with it (steepest.optim.fast):
``uncapturable(group)`` says why its stages cannot be compiled and recorded for that group
("" when they can), ``fused_momentum`` that its stage 1 is plain EMA momentum with no state in
stages 2-4 and a ``dualize_normed``, and ``scale_invariant`` that its dualizer ignores the
input's scale.

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

from steepest.norms import Norm

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

    def norm(self, group: Group) -> Norm | None:
        """Stage 3's norm for this group: ``dualize`` is its dualizer (up to a member's
        documented per-matrix factor, e.g. Muon's eps damping). None: stage 3 is not a norm's
        dualizer (a preconditioner's output passed through, a clip)."""
        return None

    def dualize(self, X: torch.Tensor, group: Group) -> torch.Tensor:
        """Stage 3: the unit-norm direction of every matrix in a (K, m, n) stack; by default
        the dualizer of ``norm(group)``."""
        norm = self.norm(group)
        if norm is None:
            raise NotImplementedError(f"{self.name!r} defines neither norm nor dualize")
        return norm.dualize(X)

    def uncapturable(self, group: Group) -> str:
        """Why stages 1-4 of this group cannot be compiled as one graph and recorded ("" when
        they can: no host synchronisation and no Python-side state)."""
        return f"{self.name!r} declares no capturable stages"

    #: Stage 1 is MomentumAlgorithm's EMA momentum, stages 2 and 4's rescale are identities
    #: and ``dualize_normed`` computes ``dualize`` from known norms. The compiled step then
    #: runs stage 1 as steepest.optim.fast.fused_momentum.momentum_stack, and masks a step
    #: with a non-finite gradient into an exact no-op (the device-side check).
    fused_momentum = False

    #: dualize_normed(s X, s norms) = dualize_normed(X, norms) for every s > 0; the fused
    #: step may then store each direction times a power of two (a float16 stack).
    scale_invariant = False

    #: Stage 2 returns the final unit-norm update, scaled (Dion: P Q^T from its power
    #: iteration): stages 3 and 4 are identities, so the step skips them, and under
    #: torch.distributed no exchange of whole matrices follows stage 2.
    update_in_stage2 = False

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
