"""``steepest reproduce batch-size``: a steps-to-target run redone by hand (torch AdamW, every
step evaluated), the critical-batch fit against numpy's, each verdict from synthetic records,
the record's schema and the printed criterion."""

import json
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from steepest.experiments.cli import main
from steepest.experiments.reproduce import CRITERIA
from steepest.experiments.targets import batch_size as target
from steepest.experiments.tasks import make_task


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("batch-size")
    argv = ["reproduce", "batch-size", "--out", str(out), "--threads", "1", "--no-progress"]
    for opt in ("batch_sizes=32,128", "target=1.2", "max_steps=30", "seeds=3", "warmups=0,2"):
        argv += ["--option", opt]
    return out, argv


def test_schema_png_and_printed_criterion(run, capsys):
    out, argv = run
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert CRITERIA["batch-size"] == f"{target.CRITERION}; {target.CRITERION_FIT}"
    assert target.CRITERION in printed and target.CRITERION_FIT in printed
    assert (out / "batch-size.png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads((out / "batch-size.json").read_text())
    assert record["batch_sizes"] == [32, 128] and record["seeds"] == [0, 1, 2]
    assert record["tuning_seed"] == 3 and "torch_version" in record and "device" in record
    for name in ("adamw", "muon"):
        entry = record["optimizers"][name]
        assert len(entry["steps"]) == 2 and all(len(row) == 3 for row in entry["steps"])
        assert all(0 < s <= 30 for row in entry["steps"] for s in row if s is not None)
        base = make_task("mnist-mlp").default_lrs[name][0]
        for search, lr, warm in zip(
            entry["tuning"], entry["lr"], entry["warmup_steps"], strict=True
        ):
            assert lr == pytest.approx(base * search["lr_again"]["best"])
            assert warm == search["warmup"]["best"] and warm in (0, 2)
    outcomes = [v["outcome"] for v in record["verdicts"]]
    assert len(outcomes) == 2 and set(outcomes) <= {"agrees", "disagrees", "inconclusive"}


@pytest.mark.parametrize("warmup", [0, 5])
def test_steps_to_target_matches_a_hand_run(one_thread, warmup):
    """torch.optim.AdamW on the task's batches, the loss evaluated every step; the function
    evaluates on a geometric grid and interpolates between the grid points around the target."""
    task = make_task("mnist-mlp", batch_size=256)
    task.setup(torch.device("cpu"))
    target_loss, max_steps = 0.8, 40
    got, best = target.steps_to_target(
        task, "adamw", 6e-3, 3e-3, target=target_loss, max_steps=max_steps, seed=1, warmup=warmup
    )
    torch.manual_seed(1)
    model = task.build_model()
    w = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    opt = torch.optim.AdamW(
        [{"params": w[:2], "lr": 6e-3}, {"params": w[2:], "lr": 3e-3}],
        betas=(0.9, 0.95),
        weight_decay=0.0,
    )
    x, y = task.train_x[:2048], task.train_y[:2048]
    losses, batches = [], task.batches(1)
    for step in range(max_steps + 1):
        with torch.no_grad():
            losses.append(F.cross_entropy(model(x), y).item())
        factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
        for group, base in zip(opt.param_groups, (6e-3, 3e-3), strict=True):
            group["lr"] = base * factor
        bx, by = next(batches)
        F.cross_entropy(model(bx), by).backward()
        opt.step()
        opt.zero_grad()
    grid = sorted({0, max_steps} | {round(1.05**i) for i in range(100) if 1.05**i < max_steps})
    hit = next(i for i, s in enumerate(grid) if losses[s] <= target_loss)
    s0, s1 = grid[hit - 1], grid[hit]
    l0, l1 = losses[s0], losses[s1]
    assert got == pytest.approx(s0 + (s1 - s0) * (l0 - target_loss) / (l0 - l1), rel=1e-4)
    assert best == pytest.approx(min(losses[s] for s in grid[: hit + 1]), rel=1e-4)
    # a target below anything reached in max_steps: None and the best loss on the grid
    missed, low = target.steps_to_target(
        task, "adamw", 6e-3, 3e-3, target=1e-3, max_steps=max_steps, seed=1, warmup=warmup
    )
    assert missed is None and low == pytest.approx(min(losses[s] for s in grid), rel=1e-4)


def test_critical_batch_fits_against_numpy_and_scipy():
    from scipy.optimize import least_squares

    sizes = [16, 64, 256, 1024]
    steps = [300.0 * (1 + 200.0 / b) for b in sizes]
    for fit in (target.critical_batch, target.critical_batch_linear):
        assert fit(sizes, steps) == pytest.approx((300.0, 200.0), rel=1e-6)
    noisy = [s * f for s, f in zip(steps, (1.1, 0.9, 1.05, 0.97), strict=True)]
    slope, intercept = np.polyfit([1 / b for b in sizes], noisy, 1)
    assert target.critical_batch_linear(sizes, noisy) == pytest.approx(
        (intercept, slope / intercept)
    )

    def residuals(p):  # p = (ln S_min, ln B_crit)
        pairs = zip(noisy, sizes, strict=True)
        return [math.log(s) - p[0] - math.log1p(math.exp(p[1]) / b) for s, b in pairs]

    oracle = least_squares(residuals, [math.log(300.0), math.log(100.0)], xtol=1e-14).x
    got = target.critical_batch(sizes, noisy)
    assert got == pytest.approx((math.exp(oracle[0]), math.exp(oracle[1])), rel=1e-5)
    # no fit without every count; B_crit past the searched range is that range's end
    assert math.isnan(target.critical_batch(sizes, [1.0, math.nan, 1.0, 1.0])[1])
    assert math.isnan(target.critical_batch_linear([1, 2], [5.0, 1.0])[1])  # S_min <= 0
    assert target.critical_batch(sizes, [4096.0 / b for b in sizes])[1] == pytest.approx(64 * 1024)


def _synthetic(adamw_crit, muon_crit):
    """S(B) = 100 (1 + B_crit / B) per seed for each optimizer, batch sizes 16 ... 1024."""
    sizes = [16, 64, 256, 1024]

    def steps(crits):
        return [[100.0 * (1 + c / b) for c in crits] for b in sizes]

    return {
        "batch_sizes": sizes,
        "optimizers": {"adamw": {"steps": steps(adamw_crit)}, "muon": {"steps": steps(muon_crit)}},
    }


@pytest.mark.parametrize(
    "adamw_crit, muon_crit, outcome",
    [
        ([100.0, 110.0, 90.0], [400.0, 420.0, 390.0], "agrees"),
        ([400.0, 420.0, 390.0], [100.0, 110.0, 90.0], "disagrees"),
        ([100.0, 400.0, 100.0], [400.0, 100.0, 100.0], "inconclusive"),
    ],
)
def test_batch_size_verdicts_from_synthetic_records(adamw_crit, muon_crit, outcome):
    verdicts = target.verdicts(_synthetic(adamw_crit, muon_crit))
    assert [v.outcome for v in verdicts] == [outcome, outcome]
    assert target.CRITERION in verdicts[0].criterion
    assert target.CRITERION_FIT in verdicts[1].criterion


@pytest.mark.parametrize(
    "option, match",
    [
        ({"batch_sizes": "64"}, "batch_sizes='64'"),
        ({"batch_sizes": "256,64"}, "batch_sizes='256,64'"),
        ({"target": 3.0}, "target=3.0"),
        ({"warmups": "5,0"}, "warmups='5,0'"),
    ],
)
def test_bad_options_are_named(tmp_path, option, match):
    with pytest.raises(ValueError, match=match):
        target.batch_size(tmp_path, progress=False, **option)
