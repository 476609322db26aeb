"""``reproduce nds``: the matched-loss view (interpolation by hand) and its record."""

import json
import math

import pytest

from steepest.experiments.cli import main
from steepest.experiments.reproduce import (
    MATCHED_KEYS,
    _at_loss,
    _matched_loss_verdicts,
    matched_loss_view,
)


def _curve(steps, losses, nds):
    n = len(losses)
    curve = {k: [0.0] * n for k in MATCHED_KEYS}
    curve.update(step=list(steps), val_loss=list(losses), nds=list(nds))
    return curve


def test_matched_loss_view_by_hand():
    # the first measurement (step 0) and those after step 30 are cut
    adamw = _curve([0, 10, 20, 30, 40], [9.0, 4.0, 3.0, 2.0, 1.0], [7.0, 1.0, 3.0, 5.0, 9.0])
    muon = _curve([0, 10, 20, 30, 40], [9.0, 4.5, 2.5, 1.5, 0.5], [7.0, 0.5, 1.0, 2.0, 9.0])
    view = matched_loss_view(adamw, muon, points=3, until=30)
    # floor = max(2.0, 1.5) = 2.0; top = min(4.0, 4.5) = 4.0; levels 2, 3, 4
    assert view["levels"] == pytest.approx([2.0, 3.0, 4.0])
    assert view["adamw"]["nds"] == pytest.approx([5.0, 3.0, 1.0])
    # Muon at 2.0: between 2.5 (1.0) and 1.5 (2.0), t = 0.5 -> 1.5; at 3.0: between 4.5 (0.5)
    # and 2.5 (1.0), t = 0.75 -> 0.875; at 4.0: t = 0.25 -> 0.625
    assert view["muon"]["nds"] == pytest.approx([1.5, 0.875, 0.625])
    assert set(view["adamw"]) == set(MATCHED_KEYS)
    # ranges that do not overlap: no level
    apart = _curve([0, 10, 20], [9.0, 8.0, 7.0], [1.0] * 3)
    assert matched_loss_view(apart, muon, until=30)["levels"] == []


def test_matched_loss_level_never_reached_is_nan():
    curve = _curve([0, 1], [4.0, 3.9], [1.0, 2.0])
    assert math.isnan(_at_loss(curve, 3.0, "nds"))
    assert _at_loss(curve, 3.9, "nds") == 2.0  # reached exactly at the last step
    assert _at_loss(curve, 4.5, "nds") == 1.0  # below the first measured loss: the first value


def test_nds_record_holds_validation_loss_and_the_view(tmp_path):
    out = tmp_path / "nds"
    argv = ["reproduce", "nds", "--out", str(out), "--threads", "1", "--no-progress"]
    for opt in ("steps=6", "measure_every=2", "layers=1", "width=8", "heads=2", "context=8",
                "batch_size=2", "seeds=3"):  # fmt: skip
        argv += ["--option", opt]
    assert main(argv) == 0
    record = json.loads((out / "nds.json").read_text())
    assert len(record["matched_loss"]) == 3
    labels = [v["criterion"].partition("]")[0] for v in record["verdicts"]]
    assert labels[-2:] == ["[matched loss", "[matched loss, mechanism"]
    for seed, view in enumerate(record["matched_loss"]):
        curves = {n: record["arms"]["task lrs"][n]["curves"][seed] for n in ("adamw", "muon")}
        for curve in curves.values():
            assert len(curve["val_loss"]) == len(curve["step"]) == 4  # steps 0, 2, 4, 5
            assert curve["val_loss"][0] == pytest.approx(math.log(65), abs=0.1)
        # the lowest level: the higher of the two runs' lowest validation losses from the
        # second measurement to step 0.8 * 6 (steps 2 and 4)
        floor = max(min(c["val_loss"][1:3]) for c in curves.values())
        top = min(max(c["val_loss"][1:3]) for c in curves.values())
        assert view["levels"] == (
            [] if floor >= top else pytest.approx([floor + (top - floor) * k / 8 for k in range(9)])
        )


def test_no_common_loss_level_decides_nothing():
    empty = {"levels": [], **{n: {k: [] for k in MATCHED_KEYS} for n in ("adamw", "muon")}}
    # JSON's None (a level one run never reached) counts as missing, as nan does
    partial = {
        "levels": [2.0, 3.0],
        "adamw": {k: [None, 2.0] for k in MATCHED_KEYS},
        "muon": {k: [1.0, None] for k in MATCHED_KEYS},
    }
    nds_first, mechanism = _matched_loss_verdicts([empty, empty, partial])
    assert (nds_first.outcome, mechanism.outcome) == ("inconclusive", "inconclusive")
    assert "n=3" in nds_first.evidence
