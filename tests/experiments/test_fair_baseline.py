"""The fair baseline of ``steepest compare``: what is tuned, on which seed, the schedule-matched
ratio by hand, and the footer that states every fixed setting."""

import dataclasses
import math

import pytest
import torch
from experiments_helpers import TINY_OPTIONS, tiny_args

from steepest.experiments import compare as compare_module
from steepest.experiments.cli import main
from steepest.experiments.compare import (
    WARMUP_CHOICES,
    Settings,
    compare,
    matched_steps,
    schedule_matched,
    tune_settings,
    tuned_keys,
)
from steepest.experiments.report import format_footer
from steepest.experiments.runner import RunResult
from steepest.experiments.tasks import make_task, parse_options
from steepest.experiments.tune import tune_choice


def test_tune_choice_widens_to_a_best_off_the_first_grid():
    # Allowed 0 .. 0.8; start 0.05 -> first grid {0.02, 0.05, 0.1}, best 0.1 on its edge; the
    # minimum of (v - 0.31)^2 is 0.3, reached only after adding 0.2, 0.3 and 0.4.
    calls = []

    def score(v):
        calls.append(v)
        return (v - 0.31) ** 2

    search = tune_choice(score, WARMUP_CHOICES, 0.05)
    assert search.best == 0.3 and search.inside and not search.limit
    assert search.grid == [0.02, 0.05, 0.1, 0.2, 0.3, 0.4]
    assert sorted(calls) == search.grid  # each value scored once


def test_tune_choice_stops_at_the_allowed_end():
    search = tune_choice(lambda v: v, WARMUP_CHOICES, 0.1)  # smaller is always better
    assert search.best == 0.0 and search.limit and not search.inside
    with pytest.raises(ValueError, match="start=0.07"):
        tune_choice(lambda v: v, WARMUP_CHOICES, 0.07)


def test_tune_settings_finds_a_synthetic_optimum_outside_every_first_grid():
    # A separable bowl with its minimum at lr 0.05 (grid 3e-3 * 2^k: 0.048 nearest), warmup 0.2,
    # beta2 0.99 and adamw_lr 1e-4 (3e-3 * 2^-5 = 9.4e-5 nearest): none is on a first grid.
    def score(s):
        return (
            math.log(s.lr / 0.05) ** 2
            + (s.warmup - 0.2) ** 2
            + 10 * (s.beta2 - 0.99) ** 2
            + math.log(s.adamw_lr / 1e-4) ** 2
        )

    start = Settings(lr=3e-3, adamw_lr=3e-3, warmup=0.05, beta2=0.95)
    best, searches = tune_settings(score, start, ("lr", "warmup", "beta2", "adamw_lr"))
    assert best.lr == pytest.approx(3e-3 * 16) and best.warmup == 0.2 and best.beta2 == 0.99
    assert best.adamw_lr == pytest.approx(3e-3 * 2**-5)
    assert set(searches) == {"lr", "warmup", "beta2", "adamw_lr", "lr_again"}
    assert all(g.inside for g in searches.values())


def test_tuned_keys_per_optimizer():
    assert tuned_keys("adamw", True) == ("lr", "warmup", "beta2", "adamw_lr")
    assert tuned_keys("muon", True) == ("lr", "warmup", "adamw_lr")
    assert tuned_keys("sgd", False) == ("lr", "warmup")


def test_tuning_seed_is_not_a_reported_seed(monkeypatch):
    task = make_task("quadratic", **parse_options("quadratic", TINY_OPTIONS["quadratic"]))
    seen = []
    real = compare_module.train

    def spy(task, name, *args, seed, **kwargs):
        seen.append((name, seed, kwargs["steps"], kwargs["warmup"]))
        return real(task, name, *args, seed=seed, **kwargs)

    monkeypatch.setattr(compare_module, "train", spy)
    record = compare(
        task,
        ["sgd", "muon"],
        steps=8,
        seeds=[0, 1, 2],
        device=torch.device("cpu"),
        eval_every=4,
        tune=True,
        horizons=(1.0,),
        progress=False,
    )
    assert record["tuning_seed"] == 3
    reported = [s for s in seen if s[1] in (0, 1, 2)]
    tuning = [s for s in seen if s[1] not in (0, 1, 2)]
    assert {s[1] for s in tuning} == {3} and len(tuning) >= 2 * 4
    assert len(reported) == 6 and len(seen) == len(reported) + len(tuning)
    assert {s[3] for s in tuning} > {0.0}  # the warmup was searched too
    for name in ("sgd", "muon"):
        hp = record["hyperparameters"][name]
        assert all((name, seed, 8, hp["warmup"]) in reported for seed in (0, 1, 2))


def _run(name, seed, steps, final):
    curve = {
        "step": [0, steps],
        "time_s": [0.0, 1.0],
        "train_loss": [math.nan, final],
        "val_loss": [4.0, final],
    }
    return RunResult(name, seed, 1.0, 1.0, steps, curve, 1.0, 1.0, 0.5, "h", "d", False)


def test_matched_steps_by_hand():
    # Between 200 (1.8) and 400 (1.7), 1.75 is half way in log(steps): 200 * sqrt(2).
    steps, relation = matched_steps([100, 200, 400], [2.0, 1.8, 1.7], 1.75)
    assert relation == "=" and steps == pytest.approx(200 * math.sqrt(2))
    assert matched_steps([100, 200, 400], [2.0, 1.8, 1.7], 1.65) == (None, ">")
    assert matched_steps([100, 200, 400], [2.0, 1.8, 1.7], 2.1) == (None, "<")
    # 1.8 exactly is reached at 200.
    assert matched_steps([100, 200, 400], [2.0, 1.8, 1.7], 1.8)[0] == pytest.approx(200)


def test_schedule_matched_ratio_on_synthetic_curves():
    # Reference finals at 100 / 200 / 400 steps: seed 0: 2.0 / 1.8 / 1.7, seed 1: 2.2 / 2.0 /
    # 1.6. Muon at 100 ends at 1.75 (seed 0: H = 200 sqrt 2) and 2.1 (seed 1: half way between
    # 100 and 200 in log: H = 100 sqrt 2): ratios 100 / (200 sqrt 2) = 0.3536 and 0.7071.
    finals = {0: (2.0, 1.8, 1.7), 1: (2.2, 2.0, 1.6)}
    runs = {
        n: [_run("adamw", s, n, finals[s][i]) for s in (0, 1)]
        for i, n in enumerate((100, 200, 400))
    }
    for n, muon in ((100, (1.75, 2.1)), (200, (1.5, 1.5)), (400, (1.4, 1.4))):
        runs[n] += [_run("muon", s, n, muon[s]) for s in (0, 1)]
    out = schedule_matched(runs, "adamw")["muon"]
    ratios = [100 / (200 * math.sqrt(2)), 100 / (100 * math.sqrt(2))]
    assert out["100"]["ratio"]["mean"] == pytest.approx(sum(ratios) / 2)
    assert out["100"]["ratio"]["std"] == pytest.approx(abs(ratios[0] - ratios[1]) / math.sqrt(2))
    assert out["200"]["ratio"]["n"] == 0 and out["200"]["beyond_longest"] == 2
    assert out["400"]["bounds"] == [1.0, 4.0]


def test_footer_states_every_fixed_setting(tmp_path, capsys):
    out = tmp_path / "fair"
    argv = [
        "compare",
        "--steps",
        "4",
        "--seeds",
        "2",
        "--eval-every",
        "2",
        "--out",
        str(out),
        "--no-progress",
        "--threads",
        "1",
        "--beta2",
        "adamw=0.99",
        *tiny_args("shakespeare-char"),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    for needle in (
        "layers=1",
        "batch_size=4",
        "cosine",
        "beta1=0.9",
        "weight decay 0",
        "momentum=0.95",
        "nesterov=True",
        "eval every 2 steps",
        "seeds 0, 1",
        "beta2 adamw=0.99",
        "horizons 2, 4",
    ):
        assert needle in text, needle
    # Both horizons are rows of the table, with the settings actually used.
    assert text.count("\nadamw ") == 2 and text.count("\nmuon ") == 2
    record = {
        "reference": "adamw",
        "horizons": [4],
        "tune": True,
        "tuned_keys": {"adamw": ["lr", "warmup"]},
        "tuning": {},
        "tuning_seed": 7,
        "seeds": [0, 1],
        "steps": 4,
        "task": "quadratic",
        "task_options": {"m": 12},
        "optimizers": ["adamw"],
        "schedule": "cosine",
        "eval_every": 2,
    }
    footer = "\n".join(format_footer(record))
    assert "tuned on seed 7 (reported seeds 0, 1)" in footer and "adamw: lr, warmup" in footer


def test_default_settings_come_from_the_task(monkeypatch):
    task = make_task("shakespeare-char")
    monkeypatch.setattr(type(task), "tuned_settings", {"adamw": {"warmup": 0.2, "lr": 6e-3}})
    s = compare_module.default_settings(task, "adamw")
    assert dataclasses.astuple(s) == (6e-3, task.default_lrs["adamw"][1], 0.2, 0.95)
    assert compare_module.default_settings(task, "muon").warmup == task.warmup
