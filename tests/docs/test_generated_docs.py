"""The generated pages (API reference, algorithm table) equal what tools/gen_docs.py writes now,
and every registered algorithm and norm has its row in the docs."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import steepest
from steepest.optim import ALGORITHMS

ROOT = Path(__file__).resolve().parents[2]


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "tools" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_pages_equal_the_generated_ones():
    # a fresh interpreter: other tests may patch classes (e.g. wrap an optimizer's step)
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-3000:]


def table_names(page: Path) -> set[str]:
    """The `name` in the first cell of every table row of a page."""
    return set(re.findall(r"^\| `([\w-]+)` \|", page.read_text(), flags=re.MULTILINE))


def test_every_registered_algorithm_has_a_row_in_the_family_table():
    missing = set(ALGORITHMS) - table_names(ROOT / "docs" / "algorithms.md")
    assert not missing, f"docs/algorithms.md has no row for {sorted(missing)}"


def test_every_algorithm_preset_and_norm_has_a_row_in_the_algorithm_table():
    rows = table_names(ROOT / "docs" / "algorithm-table.md")
    expected = set(ALGORITHMS) | set(steepest.available()) | set(steepest.norms.available())
    assert expected <= rows, f"docs/algorithm-table.md lacks {sorted(expected - rows)}"


def test_every_public_name_is_on_a_reference_page():
    generator = load_generator()
    text = "".join(
        (ROOT / "docs" / "reference" / page).read_text() for _, page, _ in generator.PAGES
    )
    for module_name, _, _ in generator.PAGES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            assert f"### {name}\n" in text or f"[`{name}`]" in text or f"- `{name}`:" in text, (
                f"{module_name}.{name} is public but on no reference page"
            )
