"""Grid widening: the best learning rate ends strictly inside the grid."""

import json
import math

import pytest
import torch
from experiments_helpers import tiny_args

from steepest.experiments.cli import main
from steepest.experiments.runner import train
from steepest.experiments.tasks import make_task
from steepest.experiments.tune import tune_lr


def test_widens_up_to_a_known_minimizer():
    # score = (ln lr - ln 0.37)^2 on the grid 1e-3 * 2^k: by hand, k = 9 (0.512) beats k = 8
    # (0.256) since |ln(0.512 / 0.37)| = 0.325 < |ln(0.256 / 0.37)| = 0.368.
    calls = []

    def score(lr):
        calls.append(lr)
        return (math.log(lr) - math.log(0.37)) ** 2

    search = tune_lr(score, 1e-3)
    assert search.best == pytest.approx(0.512)
    assert search.inside and search.grid[0] < search.best < search.grid[-1]
    assert search.grid == sorted(search.grid) and len(calls) == len(set(calls)) == 12
    assert search.scores[search.grid.index(search.best)] == min(search.scores)


def test_widens_down_and_treats_divergence_as_worst():
    # Diverges (nan) above 0.01, else lower is worse: the best is the largest lr <= 0.01 on the
    # grid 1.0 * 2^k, i.e. 2^-7 = 0.0078125.
    search = tune_lr(lambda lr: math.nan if lr > 0.01 else -lr, 1.0)
    assert search.best == pytest.approx(2**-7) and search.inside
    assert search.scores[-1] == math.inf


def test_gives_up_after_max_widen():
    search = tune_lr(lambda lr: -lr, 1.0, max_widen=2)  # always better further up
    assert not search.inside and search.best == search.grid[-1] == 8.0
    assert len(search.grid) == 5


@pytest.mark.parametrize(
    "kwargs, needle",
    [({"center": 0.0}, "center"), ({"factor": 1.0}, "factor"), ({"points": 4}, "points")],
)
def test_rejects_bad_settings(kwargs, needle):
    args = {"center": 1.0, **kwargs}
    with pytest.raises(ValueError, match=needle):
        tune_lr(lambda lr: lr, **args)


def test_cli_tune_on_quadratic_lands_inside_the_grid(tmp_path):
    out = tmp_path / "tune"
    argv = [
        "compare",
        "--task",
        "quadratic",
        "--optimizers",
        "sgd,muon",
        "--tune",
        "--steps",
        "30",
        "--seeds",
        "1",
        "--eval-every",
        "5",
        "--out",
        str(out),
        "--no-progress",
        "--threads",
        "1",
        *tiny_args("quadratic"),
    ]
    assert main(argv) == 0
    record = json.loads((out / "results.json").read_text())
    task = make_task("quadratic", m=12, n=6, rank=3)
    task.setup(torch.device("cpu"))
    for name in ("sgd", "muon"):
        searches = record["tuning"][name]
        assert set(searches) == {"lr", "warmup", "lr_again"}  # no AdamW groups to tune
        search = searches["lr_again"]
        grid, scores, best = search["grid"], search["scores"], search["best"]
        assert search["inside"] and grid[0] < best < grid[-1]
        assert record["hyperparameters"][name]["lr"] == best
        finite = [s for s in scores if s is not None]
        assert scores[grid.index(best)] == min(finite)
        # The tuning seed is max(seeds) + 1 = 1; rerunning the best settings reproduces the score.
        rerun = train(
            task,
            name,
            best,
            1.0,
            steps=30,
            seed=1,
            eval_every=5,
            device=torch.device("cpu"),
            warmup=record["hyperparameters"][name]["warmup"],
            progress=False,
        )
        assert rerun.best_val_loss == pytest.approx(scores[grid.index(best)], rel=1e-6)
    # GD on f with L = 2 (lambda_max(Q) = 1): any step above 2/L = 1 makes the top eigen-
    # direction grow, so the tuned GD step lies below 2 (the grid point after 1).
    assert record["hyperparameters"]["sgd"]["lr"] <= 1.0
