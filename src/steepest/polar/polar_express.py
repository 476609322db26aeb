"""Polar Express: per-step minimax-optimal odd quintic schedules, generated offline in float64.

Each step t applies an odd quintic p_t(x) = a x + b x^3 + c x^5 to every singular value. Given an
interval [l, u] known to hold the current singular values, the step uses the p that minimizes
max_{x in [l, u]} |1 - p(x)|; the composition of these greedy choices is the optimal odd polynomial
of its degree for approximating sign(x) on [l, 1] (Amsel et al., arXiv 2505.16932, Thm. 4.1).

References:
    N. Amsel, D. Persson, C. Musco, R. M. Gower, "The Polar Express: Optimal Matrix Sign Methods
    and Their Application to the Muon Algorithm", arXiv 2505.16932 (2025): §4.2 (minimax step,
    equioscillation), §4.3 (u = 1 after Frobenius normalization, l = 1e-3 for bfloat16), §4.4
    (finite-precision safeguards), App. G (cushion value and recentering).
"""

from __future__ import annotations

import functools
import math
from typing import Final

import numpy as np

__all__ = [
    "PAPER_CUSHION",
    "PAPER_SAFETY",
    "optimal_odd_quintic",
    "polar_express_coefficients",
]

#: Coefficient safety factor: each p(x) is replaced by p(x / 1.01), so singular values pushed
#: slightly above the current upper bound by round-off cannot grow over the steps
#: (arXiv 2505.16932, §4.4, first change; Algorithm 1).
PAPER_SAFETY: Final = 1.01

#: Cushion: each step is fitted on [max(l, cushion * u), u] instead of [l, u], which bounds
#: p(x) / x from below and avoids the loss of precision of strongly non-monotone steps in bfloat16
#: (arXiv 2505.16932, §4.4, second change; the value is the one used in App. G).
PAPER_CUSHION: Final = 0.02407327424182761

# Above this ratio l / u the minimax quintic equals the degree-5 Newton-Schulz (Pade) quintic
# (15 x - 10 x^3 + 3 x^5) / 8 to float64 accuracy, and the exchange system is ill-conditioned.
_NARROW_INTERVAL: Final = 1.0 - 1e-6
_PADE_QUINTIC: Final = (15.0 / 8.0, -10.0 / 8.0, 3.0 / 8.0)


def _interior_extrema(a: float, b: float, c: float) -> np.ndarray:
    """Positive roots of p'(x) = a + 3 b x^2 + 5 c x^4 (a quadratic in x^2), sorted."""
    squares = np.roots([5.0 * c, 3.0 * b, a])
    squares = squares[np.isreal(squares)].real
    return np.sort(np.sqrt(squares[squares > 0.0]))


def _minimax_on_unit_right_end(lo: float, max_exchanges: int = 100) -> tuple[float, float, float]:
    """Minimax odd quintic for the constant 1 on [lo, 1] by the Remez exchange.

    The optimum equioscillates on four points lo < x1 < x2 < 1 with 1 - p = +E, -E, +E, -E
    (arXiv 2505.16932, Lemma A.1 / §4.2). Each exchange solves the 4 x 4 linear system for
    (a, b, c, E) on the current points, then moves x1, x2 to the interior extrema of p.
    """
    if lo >= _NARROW_INTERVAL:
        return _PADE_QUINTIC
    # Start from the extrema of the degree-3 Chebyshev polynomial mapped to [lo, 1].
    points = (1.0 + lo) / 2.0 - (1.0 - lo) / 2.0 * np.cos(np.pi * np.arange(4) / 3.0)
    signs = np.array([1.0, -1.0, 1.0, -1.0])
    for _ in range(max_exchanges):
        system = np.stack([points, points**3, points**5, signs], axis=1)
        a, b, c, _err = np.linalg.solve(system, np.ones(4))
        extrema = _interior_extrema(a, b, c)
        extrema = extrema[(extrema > lo) & (extrema < 1.0)]
        if extrema.size != 2:
            raise RuntimeError(f"Remez exchange lost its reference points on [{lo}, 1]")
        new_points = np.array([lo, extrema[0], extrema[1], 1.0])
        moved = np.max(np.abs(new_points - points))
        points = new_points
        if moved <= 1e-15:
            break
    system = np.stack([points, points**3, points**5, signs], axis=1)
    a, b, c, _err = np.linalg.solve(system, np.ones(4))
    return float(a), float(b), float(c)


def optimal_odd_quintic(lower: float, upper: float) -> tuple[float, float, float]:
    """The odd quintic p(x) = a x + b x^3 + c x^5 minimizing max_{x in [lower, upper]} |1 - p(x)|.

    Math: the problem is scale-covariant, so it is solved on [lower / upper, 1] by the Remez
    exchange (equioscillation at lower, two interior extrema and upper) and mapped back with
    a / upper, b / upper^3, c / upper^5.

    Args:
        lower: left end of the interval, 0 < lower <= upper.
        upper: right end of the interval.

    Returns:
        The coefficients (a, b, c) as Python floats.

    References:
        arXiv 2505.16932, §4.2, eq. (14) and Algorithm 3.
    """
    if not (math.isfinite(lower) and math.isfinite(upper) and 0.0 < lower <= upper):
        raise ValueError(
            f"optimal_odd_quintic: need finite 0 < lower <= upper, got lower={lower!r}, "
            f"upper={upper!r}"
        )
    a, b, c = _minimax_on_unit_right_end(lower / upper)
    return a / upper, b / upper**3, c / upper**5


def _check_schedule_args(steps: int, lower_bound: float, safety: float, cushion: float) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"polar_express_coefficients: steps={steps!r}; need an int >= 1")
    for name, value, low, high in (
        ("lower_bound", lower_bound, 0.0, 1.0),
        ("cushion", cushion, 0.0, 1.0),
    ):
        if not isinstance(value, (int, float)) or not (low < value <= high):
            raise ValueError(
                f"polar_express_coefficients: {name}={value!r}; need a float in ({low}, {high}]"
            )
    if not isinstance(safety, (int, float)) or not (1.0 <= safety < 2.0):
        raise ValueError(
            f"polar_express_coefficients: safety={safety!r}; need a float in [1, 2); "
            f"1.0 turns the safety factor off, {PAPER_SAFETY} is the paper's value"
        )


@functools.lru_cache(maxsize=128)
def _schedule(
    steps: int, lower_bound: float, safety: float, cushion: float
) -> tuple[tuple[float, float, float], ...]:
    lower, upper = lower_bound, 1.0
    schedule: list[tuple[float, float, float]] = []
    for step in range(steps):
        a, b, c = optimal_odd_quintic(max(lower, cushion * upper), upper)
        # Recenter (App. G): scale p so that the errors at both ends of the true interval [l, u]
        # balance, 1 - s p(l) = s p(u) - 1; this matters only when the cushion was active.
        p_lower = a * lower + b * lower**3 + c * lower**5
        p_upper = a * upper + b * upper**3 + c * upper**5
        scale = 2.0 / (p_lower + p_upper)
        a, b, c = a * scale, b * scale, c * scale
        # Next interval (Thm. 4.1): the worst error is attained at l, so the singular values
        # now lie in [p(l), 2 - p(l)].
        lower = a * lower + b * lower**3 + c * lower**5
        upper = 2.0 - lower
        if step < steps - 1:  # §4.4: the safety factor can be omitted in the final step
            a, b, c = a / safety, b / safety**3, c / safety**5
        schedule.append((a, b, c))
    return tuple(schedule)


def polar_express_coefficients(
    steps: int,
    lower_bound: float = 1e-3,
    *,
    safety: float = PAPER_SAFETY,
    cushion: float = PAPER_CUSHION,
) -> list[tuple[float, float, float]]:
    """Generate the Polar Express schedule of `steps` odd quintics (a, b, c).

    Math: start from [l, u] = [lower_bound, 1] (singular values after Frobenius normalization).
    Per step: fit the minimax quintic p on [max(l, cushion * u), u] (optimal_odd_quintic), rescale
    it so the errors at l and u balance, then move to [l, u] <- [p(l), 2 - p(l)]. Every step but
    the last is finally replaced by p(x / safety). Schedules are cached per argument tuple.

    Args:
        steps: number of quintic steps, an int >= 1.
        lower_bound: assumed lower bound on the normalized smallest nonzero singular value, in
            (0, 1]; the paper recommends 1e-3 for bfloat16 (§4.3).
        safety: coefficient safety factor >= 1 (1.0 gives the raw minimax polynomials, whose first
            step matches the published coefficients); default PAPER_SAFETY = 1.01 (§4.4).
        cushion: relative floor of the fitting interval in (0, 1]; default PAPER_CUSHION (App. G).

    Returns:
        A new list of `steps` (a, b, c) tuples of Python floats.

    References:
        arXiv 2505.16932, Thm. 4.1, §4.2-4.4, Algorithm 1 and App. G.
    """
    _check_schedule_args(steps, lower_bound, safety, cushion)
    return list(_schedule(steps, float(lower_bound), float(safety), float(cushion)))
