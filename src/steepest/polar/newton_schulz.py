"""Newton-Schulz coefficient schedules: named fixed quintics and user-given per-step triples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import TypeGuard

__all__ = [
    "CUBIC",
    "JORDAN",
    "NEWTON_SCHULZ_SCHEDULES",
    "newton_schulz_coefficients",
]

#: Jordan's quintic (a, b, c) = (3.4445, -4.7750, 2.0315): fast early growth, plateaus with
#: singular values in about [0.68, 1.13] instead of converging (Cesista, "Muon and a Selective
#: Survey on Steepest Descent in Riemannian and Non-Riemannian Manifolds" (2025), Alg. 2;
#: arXiv 2505.16932, §1.2).
JORDAN = (3.4445, -4.7750, 2.0315)

#: Classical cubic Newton-Schulz p(x) = 1.5 x - 0.5 x^3: converges to U V^T (quadratically near 1)
#: for normalized singular values in (0, sqrt(3)) (arXiv 2505.16932, eq. (2)).
CUBIC = (1.5, -0.5, 0.0)

#: The named schedules accepted by `coefficients=`; each is one triple repeated for every step.
NEWTON_SCHULZ_SCHEDULES = {"jordan": JORDAN, "cubic": CUBIC}

#: What `coefficients=` accepts: None, a schedule name, one (a, b, c) triple or a list of triples.
Coefficients = str | Sequence[float] | Sequence[Sequence[float]] | None


def _is_triple(value: object) -> TypeGuard[Sequence[float]]:
    return (
        isinstance(value, (tuple, list))
        and len(value) == 3
        and all(isinstance(v, Real) and not isinstance(v, bool) for v in value)
    )


def newton_schulz_coefficients(
    coefficients: Coefficients, steps: int
) -> tuple[tuple[float, float, float], ...]:
    """Resolve `coefficients` into exactly `steps` per-step (a, b, c) triples.

    Args:
        coefficients: None or "jordan" (the default schedule), "cubic", one (a, b, c) triple
            (repeated for every step), or a sequence of triples. A sequence gives the triples of
            the first steps in order: its first `steps` entries are used, and when it is shorter
            than `steps` its last triple is repeated (the convention of arXiv 2505.16932,
            Algorithm 1).
        steps: the number of steps, an int >= 1 (validated by the caller).

    Returns:
        A tuple of `steps` (a, b, c) tuples of Python floats.
    """
    if coefficients is None:
        coefficients = "jordan"
    triples: list[Sequence[float]]
    if isinstance(coefficients, str):
        if coefficients not in NEWTON_SCHULZ_SCHEDULES:
            raise ValueError(
                f"msign: coefficients={coefficients!r} is not a known Newton-Schulz schedule; "
                f"use one of {sorted(NEWTON_SCHULZ_SCHEDULES)} or a list of (a, b, c) triples"
            )
        triples = [NEWTON_SCHULZ_SCHEDULES[coefficients]]
    elif _is_triple(coefficients):
        triples = [tuple(coefficients)]
    elif (
        isinstance(coefficients, (tuple, list))
        and len(coefficients) > 0
        and all(_is_triple(t) for t in coefficients)
    ):
        triples = [tuple(t) for t in coefficients]
    else:
        raise ValueError(
            f"msign: coefficients={coefficients!r} is not valid; use 'jordan', 'cubic', one "
            f"(a, b, c) triple of real numbers or a non-empty list of such triples"
        )
    floats = [(float(a), float(b), float(c)) for a, b, c in triples]  # each has length 3
    for t in floats:
        if not all(math.isfinite(v) for v in t):
            raise ValueError(f"msign: coefficients contain a non-finite triple {t!r}")
    used = floats[:steps] + [floats[-1]] * max(0, steps - len(floats))
    return tuple(used)
