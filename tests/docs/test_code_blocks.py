"""Every ```python block of README.md and docs/ runs on its own, in a fresh namespace.

A block that must not run on CPU in CI (it needs a GPU, or minutes) starts with the line
``# docs: not run: <reason>``; the test reports it as skipped with that reason. ```bash blocks
are not run, except ``steepest ... --help`` lines, which must print the command's usage.
"""

from __future__ import annotations

import linecache
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NOT_RUN = re.compile(r"#\s*docs:\s*not run:\s*(?P<reason>\S.*)")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", flags=re.DOTALL | re.MULTILINE)


def blocks(lang: str) -> list[tuple[str, str]]:
    """(page:line, code) for every ```lang block of the pages."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match["lang"] == lang:
                line = text.count("\n", 0, match.start()) + 2
                found.append((f"{page.relative_to(ROOT)}:{line}", match["body"]))
    return found


PYTHON = blocks("python")


@pytest.mark.parametrize(("where", "code"), PYTHON, ids=[where for where, _ in PYTHON])
def test_python_block_runs_on_its_own(where, code, tmp_path, monkeypatch):
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    marker = NOT_RUN.match(first)
    if marker:
        pytest.skip(f"{where} is marked not run: {marker['reason']}")
    monkeypatch.chdir(tmp_path)  # blocks that write files (runs/, checkpoints) write here
    torch.manual_seed(0)
    linecache.cache[where] = (len(code), None, code.splitlines(keepends=True), where)
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})


def test_blocks_not_run_are_rare():
    skipped = [where for where, code in PYTHON if NOT_RUN.match(code.lstrip())]
    assert len(skipped) <= max(2, len(PYTHON) // 10), f"blocks marked not run: {skipped}"


HELP = [
    (where, line.strip())
    for where, code in blocks("bash")
    for line in code.splitlines()
    if line.strip().startswith("steepest ") and line.strip().endswith("--help")
]


@pytest.mark.parametrize(("where", "line"), HELP, ids=[w for w, _ in HELP])
def test_help_commands_print_usage(where, line, monkeypatch, capsys):
    from steepest.experiments.cli import main

    monkeypatch.setattr(sys, "argv", shlex.split(line))
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0, where
    assert capsys.readouterr().out.startswith("usage: steepest"), where


def test_readme_keeps_the_two_commands_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    main = 'pip install torch==2.13.0 && pip install -e ".[experiments]" && steepest compare'
    tests = (
        'pip install torch==2.13.0 && pip install -e ".[test,experiments,docs,integration,'
        'typecheck]" && python -m pytest -q tests'
    )
    assert f"```bash\n{main}\n```" in readme
    assert f"```bash\n{tests}\n```" in readme
    ci = [
        line.replace("python -m pip", "pip").replace(" --quiet", "").strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    for part in tests.split(" && "):
        assert part in ci, f".ci/run no longer runs {part!r} (the README's test command)"
