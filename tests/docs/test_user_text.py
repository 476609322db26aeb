"""The README, the hand-written docs and the source's docstrings and comments are for users: no
pointers to files they do not have, no work-history narrative, no result-file globs; the README
stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# docs/reference/ is generated from the docstrings (tests/docs/test_generated_docs.py)
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md"] + [
    page for page in sorted((ROOT / "docs").rglob("*.md")) if "reference" not in page.parts
]
SEED_PATH = {"a seed document's path (cite the paper instead)": r"seeds/\d{3}|\b[Ss]eed \d{3}\b"}
DESIGN_NOTES = {"the team's design notes": r"shared/(DESIGN|data)"}
FORBIDDEN = {
    **SEED_PATH,
    **DESIGN_NOTES,
    "a numbered period of work": r"\b[Ss]ession \d+",
    "a result-file glob (name one current file or folder)": r"bench/results/\S*\*",
    "a commit hash": r"\bcommit [0-9a-f]{7,40}\b",
}


# The docstrings and comments of the package and the benchmarks (the whole text of each file
# is searched, so user-facing string literals are covered too), except the files in EXCLUDED.
EXCLUDED = {
    "src/steepest/experiments/reproduce.py",
    "src/steepest/experiments/targets",
    "src/steepest/distributed",
    "src/steepest/optim/fast/sharded_step.py",
    "src/steepest/optim/fast/runner.py",
}
SOURCES = [
    path
    for path in sorted((ROOT / "src" / "steepest").rglob("*.py"))
    + sorted((ROOT / "bench").glob("*.py"))
    + sorted((ROOT / "bench").glob("*.sh"))
    if not any(
        path.relative_to(ROOT).as_posix() == excluded
        or path.relative_to(ROOT).as_posix().startswith(excluded + "/")
        for excluded in EXCLUDED
    )
]
SOURCE_FORBIDDEN = {**SEED_PATH, **DESIGN_NOTES}


def internal_text(text, patterns):
    return [
        f"{what}: {match.group(0)!r} at line {text.count(chr(10), 0, match.start()) + 1}"
        for what, pattern in patterns.items()
        for match in re.finditer(pattern, text)
    ]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_has_no_internal_text(page):
    found = internal_text(page.read_text(), FORBIDDEN)
    assert not found, f"{page.relative_to(ROOT)}: " + "; ".join(found)


def test_sources_cite_papers_not_seed_files():
    assert len(SOURCES) > 50, f"only {len(SOURCES)} source files found under {ROOT}"
    found = [
        f"{path.relative_to(ROOT)}: {entry}"
        for path in SOURCES
        for entry in internal_text(path.read_text(), SOURCE_FORBIDDEN)
    ]
    assert not found, "\n".join(found)


def test_internal_text_patterns_match_what_they_forbid():
    """The patterns catch the forms seen in the wild and leave random-seed prose alone."""
    bad = ["seeds/000_0ff94013880c6450.txt", "Seed 004's ratio", "seed 000 Alg. 2", "shared/data"]
    good = ["the seed's initialization", "seeds=(0, 1, 2)", "seed=1234", "arXiv 2505.23737"]
    assert all(internal_text(text, SOURCE_FORBIDDEN) for text in bad)
    assert not any(internal_text(text, SOURCE_FORBIDDEN) for text in good)


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 160, f"README.md has {lines} lines; keep it to about 150 (details go in docs/)"
