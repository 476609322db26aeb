"""The real CLI entry on every task: JSON schema and values, CSV, plots, fair starts."""

import csv
import json
import math

import pytest
import torch
from experiments_helpers import tiny_args

from steepest.experiments.cli import main
from steepest.experiments.tasks import TASKS, make_task

OPTIMIZERS = {
    "shakespeare-char": "adamw,muon",
    "mnist-mlp": "adamw,muon,sgd",
    "quadratic": "sgd,adamw,muon",
    "modular-addition": "adamw,muon",
    "imbalanced-gmm": "adamw,muon",
    "implicit-bias": "adamw,muon,sgd",
    "tokens-bin": "adamw,muon",
    "zipf-pcfg": "adamw,muon",
}
# Tasks whose default lrs barely move the loss in 4 steps get larger ones here.
EXTRA = {
    "modular-addition": [
        "--lr",
        "adamw=0.02",
        "--adamw-lr",
        "adamw=0.02",
        "--adamw-lr",
        "muon=0.02",
    ],
}


def _run(task, tmp_path, extra=()):
    out = tmp_path / task
    argv = [
        "compare",
        "--task",
        task,
        "--optimizers",
        OPTIMIZERS[task],
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
        *tiny_args(task, tmp_path),
        *EXTRA.get(task, []),
        *extra,
    ]
    assert main(argv) == 0
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("task", sorted(TASKS))
def test_compare_writes_consistent_outputs(task, tmp_path, capsys):
    out, record = _run(task, tmp_path)
    instance = make_task(task, **record["task_options"])
    names = OPTIMIZERS[task].split(",")
    assert record["task"] == task and record["optimizers"] == names
    assert record["torch_version"] == torch.__version__
    assert record["command"].startswith("steepest compare --task " + task)
    assert record["reference"] == "adamw"
    assert len(record["runs"]) == 2 * len(names)
    for run in record["runs"]:
        curve = run["curve"]
        assert curve["step"] == [0, 2, 4]
        assert all(math.isfinite(v) and v >= 0 for v in curve["val_loss"])
        assert curve["time_s"][0] == 0 and curve["time_s"] == sorted(curve["time_s"])
        assert run["best_val_loss"] == min(curve["val_loss"])  # recomputed from the curve
        assert run["mean_opt_step_time_ms"] > 0 and not run["diverged"]
        for metric in record["metrics"]:
            lo, hi = instance.metric_ranges.get(metric, (0, 1))
            assert all(lo <= v <= hi for v in curve[metric])
    # Same initialization and data order for every optimizer of a seed, different across seeds.
    for key in ("init_hash", "data_hash"):
        by_seed = {s: {r[key] for r in record["runs"] if r["seed"] == s} for s in (0, 1)}
        assert len(by_seed[0]) == 1 and len(by_seed[1]) == 1
        if task not in ("quadratic", "implicit-bias"):  # W0 = 0 and no batches
            assert by_seed[0] != by_seed[1]
    # Initial losses (all optimizers share them) against independent values.
    initial = {r["curve"]["val_loss"][0] for r in record["runs"] if r["seed"] == 0}
    assert len(initial) == 1
    summary = record["summary"]
    assert set(summary) == set(names)
    ref = summary["adamw"]
    assert ref["reached"] == 2
    # The ratio is 1, or undefined when the reference's best is its initial loss (step 0).
    at_start = ref["steps_to_reference_best"]["mean"] == 0
    assert ref["steps_ratio"]["mean"] == (None if at_start else 1.0)
    for s in summary.values():
        assert math.isfinite(s["best_val_loss"]["mean"]) and s["best_val_loss"]["std"] >= 0
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert len(rows) == 3 * len(record["runs"])
    assert {r["optimizer"] for r in rows} == set(names)
    first = next(r for r in rows if r["optimizer"] == names[0] and r["seed"] == "0")
    assert float(first["val_loss"]) == pytest.approx(initial.pop())
    for png in ("loss_vs_step.png", "loss_vs_time.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert all(name in table for name in names)


def test_initial_losses_match_closed_forms(tmp_path):
    """Untrained models: near-uniform predictions give ln(vocab) and ln(10); the quadratic
    starts at W = 0, so f(W0) = tr(W*^T Q W*), recomputed here in float64."""
    _, record = _run("shakespeare-char", tmp_path)
    assert record["runs"][0]["curve"]["val_loss"][0] == pytest.approx(math.log(65), abs=0.05)
    _, record = _run("mnist-mlp", tmp_path)
    assert record["runs"][0]["curve"]["val_loss"][0] == pytest.approx(math.log(10), abs=0.05)
    _, record = _run("quadratic", tmp_path)
    task = make_task("quadratic", m=12, n=6, rank=3)
    task.setup(torch.device("cpu"))
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = task.build_model()
        q, w = model.Q.double(), model.W_star.double()
        expected = torch.trace(w.T @ q @ w).item()
        run = next(r for r in record["runs"] if r["seed"] == seed)
        assert run["curve"]["val_loss"][0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--task", "nope"], "nope"),
        (["--optimizers", "adamw,adafactor"], "adamw,adafactor"),
        (["--optimizers", "adamw,adamw"], "distinct"),
        (["--steps", "0"], "'0'"),
        (["--task", "quadratic", "--task-option", "rank=99"], "rank=99"),
        (["--task", "quadratic", "--task-option", "depth=3"], "depth"),
        (["--lr", "muon=-1"], "muon=-1"),
    ],
)
def test_bad_arguments_fail_before_writing(argv, needle, tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as err:
        main(["compare", *argv, "--out", str(out)])
    assert err.value.code == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_no_subcommand_means_compare(tmp_path):
    out = tmp_path / "default"
    argv = [
        "--task",
        "quadratic",
        "--optimizers",
        "sgd",
        "--steps",
        "2",
        "--seeds",
        "1",
        "--out",
        str(out),
        "--no-progress",
        "--threads",
        "1",
        *tiny_args("quadratic"),
    ]
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text())["command"].startswith("steepest --task")


def test_footer_names_the_pre_tuning_only_when_its_settings_are_used(tmp_path, capsys):
    """shakespeare-char's pre-tuned settings: the footer cites their tuning command while
    some optimizer uses them, and not once every setting is given on the command line."""
    task = "shakespeare-char"
    _, record = _run(task, tmp_path / "default")
    assert record["tuned_by"] == make_task(task).tuned_by
    every = [
        f"{flag}={name}={value}"
        for name in OPTIMIZERS[task].split(",")
        for flag, value in (
            ("--lr", 0.01),
            ("--adamw-lr", 0.003),
            ("--warmup", 0.1),
            ("--beta2", 0.95),
        )
    ]
    capsys.readouterr()
    _, record = _run(task, tmp_path / "given", [a for e in every for a in e.split("=", 1)])
    assert record["tuned_by"] is None
    table = capsys.readouterr().out
    assert "pre-tuned by" not in table and "given on the command line" in table
