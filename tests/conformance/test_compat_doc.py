"""Every row of docs/compat.md names a conformance test, and every named test exists."""

import ast
import re
from pathlib import Path

HERE = Path(__file__).parent
COMPAT = HERE.parents[1] / "docs" / "compat.md"
REFERENCE = re.compile(r"`(test_\w+\.py)::(test_\w+)`")


def _table_rows(text):
    """Body rows of every markdown table: each block of "|" lines without its header and
    separator lines."""
    rows, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        rows.extend(block[2:])
        block = []
    return rows


def _test_functions(path):
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_compat_row_names_an_existing_conformance_test():
    rows = _table_rows(COMPAT.read_text())
    assert len(rows) >= 20  # both tables
    for row in rows:
        references = REFERENCE.findall(row)
        assert references, f"docs/compat.md row names no test: {row[:80]}"
        for filename, function in references:
            path = HERE / filename
            assert path.is_file(), f"{filename} (named in docs/compat.md) does not exist"
            assert function in _test_functions(path), f"{filename}::{function} does not exist"
