"""Verdicts of the ``reproduce`` targets: a criterion stated before the run, applied to the data.

Every target records, per claim, a :class:`Verdict`: the claim (with its paper), the criterion
(fixed in this module, printed before the numbers), the outcome computed from the per-seed
values (``agrees``, ``disagrees`` or ``inconclusive``) and the evidence (mean ± std, n seeds).

The shared rule (:func:`sign_of`): an effect measured once per seed is *positive* when every
seed's value is > 0 and the mean exceeds two standard errors, *negative* in the mirror case,
and *unclear* otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

__all__ = ["OUTCOMES", "Verdict", "mean_std", "fmt", "sign_of", "threshold_test"]

OUTCOMES = ("agrees", "disagrees", "inconclusive")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One claim's verdict: ``claim`` (cited), ``criterion`` (stated in advance), ``outcome``
    (one of :data:`OUTCOMES`) and ``evidence`` (the numbers it rests on)."""

    claim: str
    criterion: str
    outcome: str
    evidence: str

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"Verdict: outcome={self.outcome!r}; choose one of {OUTCOMES}")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) of the finite ``values``."""
    done = [v for v in values if math.isfinite(v)]
    if not done:
        return math.nan, math.nan
    return statistics.fmean(done), statistics.stdev(done) if len(done) > 1 else 0.0


def fmt(values: Sequence[float], spec: str = ".3g") -> str:
    """``mean ± std (n=k)`` of ``values``."""
    mean, std = mean_std(values)
    return f"{mean:{spec}} ± {std:.2g} (n={len(values)})"


def sign_of(values: Sequence[float]) -> int:
    """+1 / -1 when every value is > 0 / < 0 and |mean| > 2 std / sqrt(n); else 0."""
    done = [v for v in values if math.isfinite(v)]
    if len(done) < 2:
        return 0
    mean, std = mean_std(done)
    if abs(mean) <= 2 * std / math.sqrt(len(done)):
        return 0
    if all(v > 0 for v in done):
        return 1
    if all(v < 0 for v in done):
        return -1
    return 0


def threshold_test(values: Sequence[float], threshold: float) -> int:
    """:func:`sign_of` of ``threshold - value``: +1 when clearly below ``threshold``, -1 when
    clearly above, 0 otherwise."""
    return sign_of([threshold - v for v in values])
