"""``reproduce kronecker-hessian``: the batched exact Hessian against the diagnostics' one
HVP per entry, the attention blocks against the fused weight's Hessian, each verdict from
synthetic data, and the record of a tiny run."""

import functools
import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from steepest.diagnostics import layer_hessian
from steepest.experiments.cli import main
from steepest.experiments.targets.kronecker_hessian import (
    CRITERIA,
    MATRICES,
    attention_hessians,
    exact_hessian,
    kronecker_hessian_verdicts,
)
from steepest.experiments.tasks import make_task

PNG = b"\x89PNG\r\n\x1a\n"


def test_exact_hessian_of_a_closed_form():
    # f(W) = sum (A W)^3 / 6 on row-major vec(W): H = sum_k (a_k a_k^T) (x) ... checked by
    # torch.autograd.functional.hessian in float64
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    W = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)

    def f(w):
        return ((A @ w) ** 3).sum() / 6

    expected = torch.autograd.functional.hessian(f, W.detach()).reshape(12, 12)
    for chunk in (1, 5, 32):
        H = exact_hessian(functools.partial(f, W), W, chunk=chunk)
        torch.testing.assert_close(H, expected, rtol=1e-12, atol=1e-12)


def test_attention_hessians_are_blocks_of_the_fused_weight():
    task = make_task("zipf-pcfg", layers=1, width=4, heads=2, context=8, batch_size=2)
    task.setup(torch.device("cpu"))
    torch.manual_seed(0)
    model = task.build_model().double()
    batch = next(task.batches(0))
    loss_fn = functools.partial(task.loss, model, batch)
    with sdpa_kernel(SDPBackend.MATH):
        (entry,) = attention_hessians(model, loss_fn, 4)
        block = model.blocks[0]
        qkv = layer_hessian(loss_fn, block.qkv.weight)  # (48, 48), one HVP per entry
        proj = layer_hessian(loss_fn, block.proj.weight)
        (grad,) = torch.autograd.grad(loss_fn(), block.qkv.weight)
    assert set(entry) == set(MATRICES)
    for i, name in enumerate(("W_Q", "W_K", "W_V")):
        H, G = entry[name]
        torch.testing.assert_close(H, qkv[16 * i : 16 * (i + 1), 16 * i : 16 * (i + 1)])
        torch.testing.assert_close(G, grad[4 * i : 4 * (i + 1)])
        torch.testing.assert_close(H, H.T)
    torch.testing.assert_close(entry["W_O"][0], proj)


def _case(energy, nds, nds4):
    return {"energy": energy, "nds": nds, "nds_rank4": nds4}


def _record(energies, gd, muon, model_error):
    """Per seed: rank-4 energy per matrix, exact NDS of G and msign G, relative model error."""
    runs = []
    for s in range(3):
        checkpoint = {
            m: [
                _case(
                    [0.5, 0.6, 0.7, e[s], e[s]],
                    {"gd": gd[s], "muon": muon[s]},
                    {"gd": gd[s] * (1 + model_error[s]), "muon": muon[s] * (1 + model_error[s])},
                )
            ]
            for m, e in energies.items()
        }
        runs.append([checkpoint])
    return {
        "seeds": [0, 1, 2],
        "ranks": [1, 2, 3, 4, 5],
        "matrices": list(energies),
        "runs": {"adamw": runs, "muon": runs},
        "random_symmetric_energy": [[0.1] * 5] * 3,
    }


HIGH, LOW, MIXED = [0.95, 0.96, 0.97], [0.5, 0.55, 0.6], [0.95, 0.5, 0.9]


@pytest.mark.parametrize(
    "energies, gd, muon, error, outcomes",
    [
        (
            {"W_Q": HIGH, "W_K": HIGH, "W_V": HIGH, "W_O": LOW},
            [2.0, 2.1, 1.9], [1.0, 1.0, 1.0], [0.01, 0.02, 0.03],
            ["agrees", "agrees", "agrees"],
        ),
        (
            {"W_Q": LOW, "W_K": LOW, "W_V": HIGH, "W_O": HIGH},
            [1.0, 1.0, 1.0], [2.0, 2.1, 1.9], [0.5, 0.6, 0.7],
            ["disagrees", "disagrees", "disagrees"],
        ),
        (
            {"W_Q": MIXED, "W_K": MIXED, "W_V": HIGH, "W_O": LOW},
            [2.0, 1.0, 1.5], [1.0, 2.0, 1.5], [0.01, 0.5, 0.2],
            ["inconclusive", "inconclusive", "inconclusive"],
        ),
    ],
)  # fmt: skip
def test_each_outcome_from_synthetic_results(energies, gd, muon, error, outcomes):
    verdicts = kronecker_hessian_verdicts(_record(energies, gd, muon, error))
    assert [v.outcome for v in verdicts] == outcomes
    assert [v.criterion for v in verdicts] == [CRITERIA[k] for k in ("energy", "ordering", "model")]


def test_kronecker_hessian_record(tmp_path):
    out = tmp_path / "kronecker-hessian"
    argv = ["reproduce", "kronecker-hessian", "--out", str(out), "--threads", "1", "--no-progress"]
    options = "steps=2 checkpoints=0,1 seeds=3 max_rank=16 layers=1 width=4 heads=2 context=8"
    for opt in [*options.split(), "batch_size=2", "hessian_batch=2"]:
        argv += ["--option", opt]
    assert main(argv) == 0
    assert (out / "kronecker-hessian.png").read_bytes()[:8] == PNG
    record = json.loads((out / "kronecker-hessian.json").read_text())
    assert record["checkpoint_steps"] == [0, 2] and record["ranks"] == list(range(1, 17))
    for name in ("adamw", "muon"):
        for per_seed in record["runs"][name]:
            for checkpoint in per_seed:
                for case in (c for blocks in checkpoint.values() for c in blocks):
                    energy = case["energy"]
                    assert all(b >= a - 1e-12 for a, b in zip(energy, energy[1:], strict=False))
                    # full Kronecker rank (width^2 = 16) reproduces the Hessian exactly
                    assert energy[-1] == pytest.approx(1.0, abs=1e-9)
    verdicts = record["verdicts"]
    assert [v["outcome"] for v in verdicts] == [
        v.outcome for v in kronecker_hessian_verdicts(record)
    ]


def test_bad_max_rank_fails_before_writing(tmp_path):
    with pytest.raises(ValueError, match="max_rank=3"):
        main(["reproduce", "kronecker-hessian", "--out", str(tmp_path), "--option", "max_rank=3"])
    assert not list(tmp_path.iterdir())
