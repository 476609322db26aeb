"""One-dimensional tuning on a grid that widens until the best value lies strictly inside it.

:func:`tune_lr` searches a geometric grid without bounds (learning rates);
:func:`tune_choice` searches an ordered list of allowed values (a warmup fraction, an Adam
beta2), widening up to the ends of that list. Both score each value once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

__all__ = ["GridSearch", "tune_choice", "tune_lr"]


@dataclasses.dataclass
class GridSearch:
    """A finished 1-D search: the sorted ``grid``, its ``scores`` (lower is better), the ``best``
    value, whether it is ``inside`` (not at either end of) the grid, and whether it sits at the
    ``limit`` of the allowed values (an end that no widening can pass, e.g. warmup 0)."""

    grid: list[float]
    scores: list[float]
    best: float
    inside: bool
    limit: bool = False


def _search(
    score: Callable[[float], float],
    value: Callable[[int], float | None],
    points: int,
    max_widen: int,
) -> GridSearch:
    """Minimize ``score(value(k))`` over integers k, starting from ``points`` values centred on
    k = 0 and adding one k beyond the winning end while the best is at an end. ``value(k)`` is
    ``None`` outside the allowed range. Non-finite scores count as worse than any finite one;
    ties go to the smaller k."""
    if points < 3 or points % 2 == 0:
        raise ValueError(f"tune: points={points!r} must be an odd int >= 3")
    half = points // 2
    results: dict[int, float] = {}
    for k in range(-half, half + 1):
        v = value(k)
        if v is not None:
            results[k] = _finite(score(v))
    if not results:
        raise ValueError("tune: the start value is not among the allowed values")
    for _ in range(max_widen):
        best = min(sorted(results), key=lambda k: results[k])
        if min(results) < best < max(results):
            break
        k = best - 1 if best == min(results) else best + 1
        v = value(k)
        if v is None:  # the best is at the end of the allowed values
            break
        results[k] = _finite(score(v))
    ks = sorted(results)
    best = min(ks, key=lambda k: results[k])
    at_end = best in (ks[0], ks[-1])
    limit = at_end and value(best - 1 if best == ks[0] else best + 1) is None
    grid = [value(k) for k in ks]
    best_value = value(best)
    assert best_value is not None and all(v is not None for v in grid)
    return GridSearch(
        grid=[float(v) for v in grid if v is not None],
        scores=[results[k] for k in ks],
        best=best_value,
        inside=not at_end,
        limit=limit,
    )


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
    return _search(score, lambda k: center * factor**k, points, max_widen)


def tune_choice(
    score: Callable[[float], float],
    values: Sequence[float],
    start: float,
    *,
    points: int = 3,
) -> GridSearch:
    """Minimize ``score(v)`` over the sorted allowed ``values``, starting around ``start``.

    Starts from ``points`` neighbouring values centred on ``start`` and widens toward the
    winning end until the best is inside the grid or is an end of ``values`` (``limit``).

    Args:
        score: value -> a loss to minimize (``inf`` or ``nan`` for a failed run).
        values: the allowed values, strictly increasing.
        start: one of ``values``: the grid's centre.
        points: initial grid size, odd and >= 3.

    Returns:
        The :class:`GridSearch`.
    """
    values = list(values)
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"tune_choice: values={values!r} must be strictly increasing")
    if start not in values:
        raise ValueError(f"tune_choice: start={start!r} is not one of values={values!r}")
    origin = values.index(start)

    def value(k: int) -> float | None:
        i = origin + k
        return values[i] if 0 <= i < len(values) else None

    return _search(score, value, points, len(values))


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf
