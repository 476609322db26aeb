"""The README's examples print what their comments say (checked against independent oracles)."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def run_block(containing: str) -> dict:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (code,) = [block for block in blocks if containing in block]
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


def test_quick_start_routes_and_trains(capsys):
    ns = run_block("steepest.param_groups(model)")
    printed = capsys.readouterr().out
    assert ns["report"].names("muon") == ["0.weight", "2.weight"]  # hidden matrices
    assert "4.weight" in ns["report"].names("adamw")  # the head
    assert "muon" in printed and "output head" in printed
    first = torch.nn.functional.cross_entropy(torch.zeros(1, 10), torch.zeros(1, dtype=torch.long))
    assert ns["loss"].item() < 0.5 * first.item()  # from log(10) = 2.30 at chance


def test_building_blocks_agree_with_svd():
    ns = run_block("steepest.polar.msign(x)")
    x, o, t = ns["x"], ns["o"], ns["t"]
    singular = torch.linalg.svdvals(o.double())  # Polar Express, 5 steps: within [0.85, 1.13]
    assert singular.min() > 0.8 and singular.max() < 1.2
    U, s, Vh = torch.linalg.svd(x.double(), full_matrices=False)
    direction = U @ torch.diag_embed(s ** (1 / 3)) @ Vh  # Schatten-4 dualizer: s^(q-1), q = 4/3
    unit = direction / direction.norm(dim=(-2, -1), keepdim=True)
    assert torch.allclose(t.double() / t.double().norm(dim=(-2, -1), keepdim=True), unit, atol=1e-5)
    schatten4 = (torch.linalg.svdvals(t.double()) ** 4).sum(-1) ** 0.25
    assert torch.allclose(schatten4, torch.ones(8, dtype=torch.float64), atol=1e-5)
