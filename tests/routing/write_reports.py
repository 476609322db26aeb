"""Write docs/routing-reports.md: steepest.param_groups' report for each model of
tests/routing/routing_models.py (from the repository root: python tests/routing/write_reports.py).

A model whose package does not import here keeps the section already in the page."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

from routing_models import MODELS, available  # noqa: E402

import steepest  # noqa: E402

PAGE = HERE.parents[1] / "docs" / "routing-reports.md"
INTRO = """# Routing reports

What `steepest.param_groups` decides on real models (tiny configs, random init): one line
per parameter with its matrix view (the matrices Muon orthogonalizes, fused QKV and gate|up
split), algorithm, spectral lr multiplier sqrt(m / n), whether AdamW decays it, and why.
The routing test suite checks each line against a hand-written expectation.
"""
MISSING = "Not generated: the package did not import where this page was written.\n"


def section(name: str) -> str:
    """The page's section for MODELS[name] (its routing report in a text block)."""
    model, example, _ = MODELS[name][0]()
    _, report = steepest.param_groups(model, example=example)
    return f"## {name}\n\n```text\n{report}\n```\n"


def sections(text: str) -> dict[str, str]:
    """The page's sections by model name."""
    parts = text.split("\n## ")[1:]
    return {p.split("\n", 1)[0]: "## " + p.rstrip("\n") + "\n" for p in parts}


def page(old: str = "") -> str:
    kept = sections(old)
    body = []
    for name in MODELS:
        if available(name):
            body.append(section(name))
        else:
            body.append(kept.get(name, f"## {name}\n\n{MISSING}"))
    return INTRO + "\n" + "\n".join(body)


if __name__ == "__main__":
    PAGE.write_text(page(PAGE.read_text() if PAGE.exists() else ""))
    print(f"wrote {PAGE}")
