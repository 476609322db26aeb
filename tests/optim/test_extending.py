"""The walk-through of docs/design.md ("Extending") works as written: its code blocks, run in a
fresh interpreter (they register new names), add a norm and a member, and the new norm passes
the checks the generated norm tests make (unit norm, <G, T> = dual norm, no random unit
direction above it) and the new member its declared-norm check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECKS = """
import torch
from steepest import norms
from steepest.optim import ALGORITHMS

assert "col_l1" in norms.available() and "col_l1" in ALGORITHMS
norm = norms.get("col_l1")
G = torch.randn(2, 3, 5, 4, dtype=torch.float64)
T = norm.dualize(G)
torch.testing.assert_close(norm.norm(T), torch.ones(2, 3, dtype=torch.float64))
torch.testing.assert_close(norm.inner(G, T), norm.dual_norm(G))
closed_form = G.abs().amax(dim=-2).sum(dim=-1)  # sum_j max_i |g_ij|
torch.testing.assert_close(norm.dual_norm(G), closed_form)
candidates = torch.randn(256, *G.shape, dtype=torch.float64)
candidates = candidates / norm.norm(candidates)[..., None, None]
assert torch.all(norm.inner(G, candidates) <= norm.dual_norm(G) * (1 + 1e-12))
algorithm = ALGORITHMS["col_l1"]
group = dict(algorithm.defaults)
X = G.reshape(6, 5, 4)
torch.testing.assert_close(algorithm.dualize(X, group), norm.dualize(X), rtol=0, atol=0)
print("ok")
"""


def extending_blocks() -> list[str]:
    text = (ROOT / "docs" / "design.md").read_text()
    section = text[text.index("## Extending\n") : text.index("## References\n")]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1, "the walk-through is one listing: a norm, a member and its test"
    return blocks


def test_the_extending_walk_through_runs_and_its_norm_and_member_check_out(tmp_path):
    script = tmp_path / "walk_through.py"
    script.write_text("\n".join(extending_blocks()) + CHECKS)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
