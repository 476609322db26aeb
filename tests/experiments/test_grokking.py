"""``reproduce grokking``: steps to generalize by hand, each verdict from synthetic data, the
record of a tiny run against its own curves."""

import json

import pytest

from steepest.experiments.cli import main
from steepest.experiments.targets.grokking import (
    CRITERION,
    grokking,
    grokking_verdicts,
    steps_to_generalize,
)

PNG = b"\x89PNG\r\n\x1a\n"


def test_steps_to_generalize_by_hand():
    curve = {"step": [0, 25, 50, 75], "val_accuracy": [0.01, 0.5, 0.96, 0.99]}
    assert steps_to_generalize(curve, 0.95) == 50
    assert steps_to_generalize(curve, 0.5) == 25
    assert steps_to_generalize(curve, 0.995) is None


def _record(adamw, muon):
    return {"steps": 1000, "steps_to_generalize": {"adamw": adamw, "muon": muon}}


@pytest.mark.parametrize(
    "adamw, muon, outcome",
    [
        ([300, 320, 310], [200, 210, 190], "agrees"),
        ([200, 210, 190], [300, 320, 310], "disagrees"),
        ([300, 200, 310], [200, 300, 190], "inconclusive"),
        # a run that never generalizes counts as the step cap
        ([None, None, None], [200, 210, 190], "agrees"),
        # no seed where either generalizes: no evidence
        ([None, None, None], [None, None, None], "inconclusive"),
    ],
)
def test_each_outcome_from_synthetic_results(adamw, muon, outcome):
    (verdict,) = grokking_verdicts(_record(adamw, muon))
    assert verdict.outcome == outcome
    assert verdict.criterion == CRITERION


def test_never_reached_counts_as_the_cap():
    (verdict,) = grokking_verdicts(_record([None, 500, 500], [250, 250, 250]))
    # ln(1000 / 250), ln 2, ln 2: geometric mean 2^(4/3) = 2.52
    assert "geometric mean 2.52" in verdict.evidence
    assert "adamw steps 500 ± 0 (2/3 reached)" in verdict.evidence


def test_grokking_record(tmp_path):
    out = tmp_path / "grokking"
    argv = ["reproduce", "grokking", "--out", str(out), "--threads", "1", "--no-progress"]
    options = "steps=40 eval_every=10 seeds=3 modulus=7 train_fraction=0.6 width=8 hidden=16"
    for opt in [*options.split(), "batch_size=16", "threshold=0.3"]:
        argv += ["--option", opt]
    assert main(argv) == 0
    assert (out / "grokking.png").read_bytes()[:8] == PNG
    record = json.loads((out / "grokking.json").read_text())
    assert record["seeds"] == [0, 1, 2] and record["tuning_seed"] == 3
    assert record["train_size"] == round(0.6 * 49)
    for name in ("adamw", "muon"):
        assert record["lr"][name] == record["tuning"][name]["best"]
        for curve, reached in zip(
            record["curves"][name], record["steps_to_generalize"][name], strict=True
        ):
            assert curve["step"][0] == 0 and all(
                b - a == 10 for a, b in zip(curve["step"], curve["step"][1:], strict=False)
            )
            assert reached == steps_to_generalize(curve, 0.3)
            # a run stops at its first evaluation at or above the threshold
            assert reached is None or curve["step"][-1] == reached
        fits = [
            next((s for s, v in zip(c["step"], c["train_accuracy"], strict=True) if v >= 0.3), None)
            for c in record["curves"][name]
        ]
        assert record["steps_to_fit"][name] == fits
    # Muon's AdamW groups run at AdamW's tuned lr
    assert record["adamw_lr"]["muon"] == record["lr"]["adamw"]
    arm = record["task_lrs"]
    assert arm["lr"] == {"adamw": 1e-3, "muon": 0.02}
    for name in ("adamw", "muon"):
        assert arm["steps_to_generalize"][name] == [
            steps_to_generalize(c, 0.3) for c in arm["curves"][name]
        ]
    tuned, default = record["verdicts"]
    assert default["criterion"].startswith("[task lrs] ")
    assert [tuned["outcome"], default["outcome"]] == [v.outcome for v in grokking_verdicts(record)]


def test_bad_threshold_fails_before_writing(tmp_path):
    with pytest.raises(ValueError, match="threshold=1.5"):
        grokking(tmp_path, threshold=1.5)
    assert not list(tmp_path.iterdir())


def test_the_task_lrs_arm_has_its_own_verdict():
    record = _record([300, 320, 310], [200, 210, 190])
    record["task_lrs"] = {"steps_to_generalize": {"adamw": [100, 90, 95], "muon": [200, 210, 190]}}
    tuned, default = grokking_verdicts(record)
    assert (tuned.outcome, default.outcome) == ("agrees", "disagrees")
    assert default.criterion == "[task lrs] " + CRITERION
