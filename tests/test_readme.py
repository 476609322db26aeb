"""The README's Python examples run as written (in order, one namespace, as a reader would)."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_examples_run(capsys):
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 2, "the README's quick start and building-block examples"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "muon" in printed and "adamw" in printed  # the routing report
    x, o = namespace["x"], namespace["o"]
    assert o.shape == x.shape
    singular = torch.linalg.svdvals(o)  # Polar Express, 5 steps: within [0.85, 1.13]
    assert singular.min() > 0.8 and singular.max() < 1.2
