"""What every target module needs: a headless pyplot and the outcome of a signed effect."""

from __future__ import annotations

from types import ModuleType

__all__ = ["OUTCOME_OF_SIGN", "pyplot"]

#: :func:`steepest.experiments.verdicts.sign_of` -> the verdict's outcome
OUTCOME_OF_SIGN = {1: "agrees", -1: "disagrees", 0: "inconclusive"}


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt
