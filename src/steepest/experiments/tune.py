"""Learning-rate tuning on a log grid that widens until the best value lies strictly inside it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

__all__ = ["GridSearch", "tune_lr"]


@dataclasses.dataclass
class GridSearch:
    """A finished 1-D search: the sorted ``grid``, its ``scores`` (lower is better), the ``best``
    value, and whether it is ``inside`` (not at either end of) the grid."""

    grid: list[float]
    scores: list[float]
    best: float
    inside: bool


def tune_lr(
    score: Callable[[float], float],
    center: float,
    *,
    factor: float = 2.0,
    points: int = 3,
    max_widen: int = 12,
) -> GridSearch:
    """Minimize ``score(lr)`` over ``center * factor**k``, widening the grid at the winning edge.

    Starts from ``points`` values centred on ``center`` (spaced by ``factor``), then, while the
    best score sits at an end of the grid, adds one value beyond that end (at most ``max_widen``
    times). Non-finite scores (diverged runs) count as worse than any finite one; ties go to
    the smaller learning rate.

    Args:
        score: learning rate -> a loss to minimize (``inf`` or ``nan`` for a failed run).
        center: the grid's centre (e.g. the task's default learning rate).
        factor: ratio of neighbouring grid values, > 1.
        points: initial grid size, odd and >= 3.
        max_widen: most extensions before giving up (``inside`` is then ``False``).

    Returns:
        The :class:`GridSearch`.
    """
    if not (center > 0 and math.isfinite(center)):
        raise ValueError(f"tune_lr: center={center!r} must be a positive finite float")
    if not factor > 1:
        raise ValueError(f"tune_lr: factor={factor!r} must be > 1")
    if points < 3 or points % 2 == 0:
        raise ValueError(f"tune_lr: points={points!r} must be an odd int >= 3")
    half = points // 2
    exponents = list(range(-half, half + 1))
    results = {k: _finite(score(center * factor**k)) for k in exponents}
    for _ in range(max_widen):
        best = min(sorted(results), key=lambda k: results[k])
        if min(results) < best < max(results):
            break
        k = best - 1 if best == min(results) else best + 1
        results[k] = _finite(score(center * factor**k))
    ks = sorted(results)
    best = min(ks, key=lambda k: results[k])
    return GridSearch(
        grid=[center * factor**k for k in ks],
        scores=[results[k] for k in ks],
        best=center * factor**best,
        inside=ks[0] < best < ks[-1],
    )


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf
