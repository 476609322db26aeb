"""``reproduce amplification``: the slope by hand, each verdict from synthetic data, the record;
the measured run the curvature targets share (measuring leaves training untouched)."""

import json
import math
import statistics

import numpy as np
import pytest
import torch

from steepest.experiments.cli import main
from steepest.experiments.targets._measured import measured_run
from steepest.experiments.targets.amplification import (
    CRITERION,
    amplification_verdicts,
    slope,
)
from steepest.experiments.tasks import make_task

PNG = b"\x89PNG\r\n\x1a\n"


def test_slope_matches_numpy():
    xs, ys = [0.0, 0.5, 1.0, 2.0], [0.1, 0.4, 0.2, 1.3]
    assert slope(xs, ys) == pytest.approx(np.polyfit(xs, ys, 1)[0], rel=1e-12)
    assert math.isnan(slope(xs, [0.1, math.nan, 0.2, 1.3]))


def _record(ratios_per_exponent):
    """NDS Muon 1; AdamW exp(ln ratio) per exponent and seed."""
    muon = [[1.0] * len(r) for r in ratios_per_exponent]
    adamw = [[math.exp(v) for v in r] for r in ratios_per_exponent]
    return {"exponents": [0.0, 1.0, 2.0], "median_nds": {"adamw": adamw, "muon": muon}}


@pytest.mark.parametrize(
    "ratios, outcome",
    [
        ([[0.5] * 5, [1.0, 1.1, 0.9, 1.0, 1.05], [1.5, 1.6, 1.4, 1.5, 1.55]], "agrees"),
        ([[1.5] * 5, [1.0, 1.1, 0.9, 1.0, 1.05], [0.5, 0.6, 0.4, 0.5, 0.55]], "disagrees"),
        ([[1.0] * 5, [1.0, 1.1, 0.9, 1.0, 1.05], [1.5, 0.6, 1.4, 0.5, 1.0]], "inconclusive"),
    ],
)
def test_each_outcome_from_synthetic_results(ratios, outcome):
    (verdict,) = amplification_verdicts(_record(ratios))
    assert verdict.outcome == outcome
    assert verdict.criterion == CRITERION
    assert "slope" in verdict.evidence


def test_measuring_leaves_training_untouched():
    task = make_task("zipf-pcfg", layers=1, width=8, heads=2, context=8, batch_size=2)
    task.setup(torch.device("cpu"))
    seen = []

    def measure(model, loss_fn, params, u):
        seen.append(([p.detach().clone() for p in params], [v.clone() for v in u]))
        return {"loss_again": loss_fn().item()}

    every = measured_run(task, "muon", 0.03, 3e-3, 5, 1, 0, measure)
    sparse = measured_run(task, "muon", 0.03, 3e-3, 5, 4, 0, lambda *a: {})
    assert every["step"] == [0.0, 1.0, 2.0, 3.0, 4.0] and sparse["step"] == [0.0, 4.0]
    # the same trajectory whether or not the steps between were measured
    assert [every["train_loss"][i] for i in (0, 4)] == sparse["train_loss"]
    # the measure sees the parameters before the step and the loss of that step's batch
    assert every["loss_again"] == pytest.approx(every["train_loss"], rel=1e-6)
    # u is the step: before(t + 1) = before(t) - u(t)
    for (before, u), (after, _) in zip(seen, seen[1:], strict=False):
        for b, v, a in zip(before, u, after, strict=True):
            torch.testing.assert_close(b - v, a)


def test_amplification_record(tmp_path):
    out = tmp_path / "amplification"
    argv = ["reproduce", "amplification", "--out", str(out), "--threads", "1", "--no-progress"]
    options = "exponents=0,2 seeds=3 steps=3 measure_every=2 layers=1 width=8 heads=2 context=8"
    for opt in [*options.split(), "batch_size=2", "train_tokens=2000"]:
        argv += ["--option", opt]
    assert main(argv) == 0
    assert (out / "amplification.png").read_bytes()[:8] == PNG
    record = json.loads((out / "amplification.json").read_text())
    assert record["exponents"] == [0.0, 2.0] and record["seeds"] == [0, 1, 2]
    assert {"device", "torch_version", "command"} <= set(record)
    for name in ("adamw", "muon"):
        for row, curves in zip(record["median_nds"][name], record["curves"][name], strict=True):
            assert row == [statistics.median(c["nds"]) for c in curves]
            assert all(c["step"] == [0, 2] for c in curves)
    # a flatter rule distribution spreads the tokens: higher unigram entropy at exponent 0
    low, high = record["unigram_entropy_nats"]
    assert all(a > b for a, b in zip(low, high, strict=True))
    (verdict,) = record["verdicts"]
    assert verdict["outcome"] == amplification_verdicts(record)[0].outcome


def test_amplification_needs_two_exponents(tmp_path, capsys):
    argv = ["reproduce", "amplification", "--out", str(tmp_path), "--option", "exponents=1"]
    with pytest.raises((SystemExit, ValueError), match="exponents"):
        main(argv)
    assert not list(tmp_path.iterdir())
