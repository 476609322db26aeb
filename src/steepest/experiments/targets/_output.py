"""What every target module writes: its JSON record and a matplotlib figure (Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

from steepest.experiments.report import _jsonable

__all__ = ["OUTCOME", "pyplot", "write_record"]

#: :func:`steepest.experiments.verdicts.sign_of` -> the outcome it stands for
OUTCOME = {1: "agrees", -1: "disagrees", 0: "inconclusive"}


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def write_record(record: dict[str, Any], out: Path, name: str) -> None:
    """Write ``record`` as ``<out>/<name>.json`` (NaN and inf refused, as JSON requires)."""
    (out / f"{name}.json").write_text(json.dumps(_jsonable(record), indent=1, allow_nan=False))
