"""The README and the hand-written docs are for users: no pointers to files they do not have,
no work-history narrative, no result-file globs; the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# docs/reference/ is generated from the docstrings (tests/docs/test_generated_docs.py)
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md"] + [
    page for page in sorted((ROOT / "docs").rglob("*.md")) if "reference" not in page.parts
]
FORBIDDEN = {
    "a seed document's path (cite the paper instead)": r"seeds/\d{3}|seed \d{3}\b",
    "the team's design notes": r"shared/DESIGN",
    "a numbered period of work": r"\b[Ss]ession \d+",
    "a result-file glob (name one current file or folder)": r"bench/results/\S*\*",
    "a commit hash": r"\bcommit [0-9a-f]{7,40}\b",
}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_has_no_internal_text(page):
    text = page.read_text()
    found = [
        f"{what}: {match.group(0)!r} at line {text.count(chr(10), 0, match.start()) + 1}"
        for what, pattern in FORBIDDEN.items()
        for match in re.finditer(pattern, text)
    ]
    assert not found, f"{page.relative_to(ROOT)}: " + "; ".join(found)


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 160, f"README.md has {lines} lines; keep it to about 150 (details go in docs/)"
