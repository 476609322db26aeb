"""Stage 4 of the update: the shape rule that turns a unit-norm direction into a step size.

Every rule reads the matrix view (m, n) = (d_out, d_in) of the piece being updated.
"""

from __future__ import annotations

import math
from numbers import Real

__all__ = ["SCALES", "check_scale", "scale_factor"]


def scale_spectral(m: int, n: int) -> float:
    """sqrt(d_out / d_in): the spectral scaling condition.

    References: Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and
    Non-Riemannian Manifolds" (2025), Condition 1 (Spectral Scaling), §3.2.2.
    """
    return math.sqrt(m / n)


def scale_jordan(m: int, n: int) -> float:
    """sqrt(max(1, d_out / d_in)): the rule of reference Muon (Jordan et al., 2024)."""
    return math.sqrt(max(1.0, m / n))


def scale_rms(m: int, n: int) -> float:
    """0.2 * sqrt(max(d_out, d_in)): matches AdamW's update RMS (about 0.2).

    References: arXiv 2502.16982 (Moonlight, "Muon is Scalable for LLM Training"), §2.2.
    """
    return 0.2 * math.sqrt(max(m, n))


#: The named shape rules; a group's ``scale`` may also be a positive float.
SCALES = {"spectral": scale_spectral, "jordan": scale_jordan, "rms": scale_rms}


def check_scale(who: str, scale: object) -> None:
    """Raise ValueError unless scale is a name in SCALES or a finite float > 0."""
    if isinstance(scale, str) and scale in SCALES:
        return
    if (
        isinstance(scale, (int, float, Real))
        and not isinstance(scale, bool)
        and 0 < float(scale) < math.inf
    ):
        return
    raise ValueError(f"{who}: scale={scale!r} is unknown; use one of {list(SCALES)} or a float > 0")


def scale_factor(scale: str | float, m: int, n: int) -> float:
    """The multiplier of a unit-norm update of an (m, n) matrix under the rule ``scale``."""
    if isinstance(scale, str):
        return SCALES[scale](m, n)
    return float(scale)
