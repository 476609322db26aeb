"""Fair starts (same init, same data), the schedule, the summary and the optimizer factory."""

import itertools
import math

import pytest
import torch
from experiments_helpers import TINY_OPTIONS, write_tiny_shards

import steepest
from steepest.experiments.compare import reach, summarize
from steepest.experiments.optimizers import build_optimizer, split_parameters
from steepest.experiments.runner import RunResult, lr_factor, parameter_hash, train
from steepest.experiments.tasks import TASKS, make_task, parse_options

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    train_files, val_files = write_tiny_shards(tmp_path_factory.mktemp("shards"))
    extra = {"tokens-bin": [f"train_files={train_files}", f"val_files={val_files}"]}
    built = {
        name: make_task(name, **parse_options(name, TINY_OPTIONS[name] + extra.get(name, [])))
        for name in TASKS
    }
    for task in built.values():
        task.setup(CPU)
    return built


def _concat(batches):
    """All tensors of some batches, flattened into one float64 vector."""
    parts = [b if isinstance(b, (tuple, list)) else [b] for b in batches]
    return torch.cat([t.flatten().double() for part in parts for t in part])


@pytest.mark.parametrize("name", sorted(TASKS))
def test_initialization_is_bit_identical_for_every_optimizer(name, tasks):
    task = tasks[name]
    states = []
    for optimizer in ("adamw", "muon", "sgd"):
        torch.manual_seed(3)
        model = task.build_model()
        lr, adamw_lr = task.default_lrs[optimizer]
        build_optimizer(optimizer, model, lr, adamw_lr, routing=task.routing())
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    for other in states[1:]:
        assert all(torch.equal(states[0][k], other[k]) for k in states[0])


@pytest.mark.parametrize(
    "name",
    [
        "shakespeare-char",
        "mnist-mlp",
        "modular-addition",
        "imbalanced-gmm",
        "tokens-bin",
        "zipf-pcfg",
    ],
)
def test_data_order_depends_on_the_seed_only(name, tasks):
    task = tasks[name]
    first = _concat(itertools.islice(task.batches(5), 3))
    torch.manual_seed(123)
    torch.rand(1000)  # whatever an optimizer or model does with the global RNG
    again = _concat(itertools.islice(task.batches(5), 3))
    other = _concat(itertools.islice(task.batches(6), 3))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_runs_of_different_optimizers_share_start_and_batches(tasks):
    task = tasks["shakespeare-char"]
    runs = [
        train(
            task,
            opt,
            *task.default_lrs[opt],
            steps=3,
            seed=0,
            eval_every=3,
            device=CPU,
            progress=False,
        )
        for opt in ("adamw", "muon")
    ]
    assert runs[0].init_hash == runs[1].init_hash and runs[0].data_hash == runs[1].data_hash
    assert runs[0].curve["val_loss"][0] == runs[1].curve["val_loss"][0]
    assert runs[0].curve["val_loss"][-1] != runs[1].curve["val_loss"][-1]  # they did differ
    torch.manual_seed(0)
    assert parameter_hash(task.build_model()) == runs[0].init_hash


def test_lr_factor_against_hand_values():
    assert [lr_factor(s, 10, 0.2, "cosine") for s in (0, 1)] == [0.5, 1.0]
    assert lr_factor(2, 10, 0.2, "cosine") == 1.0
    assert lr_factor(6, 10, 0.2, "cosine") == pytest.approx(0.5)  # half way through decay
    assert lr_factor(6, 10, 0.2, "linear") == pytest.approx(0.5)
    assert lr_factor(9, 10, 0.0, "linear") == pytest.approx(0.1)
    assert lr_factor(7, 10, 0.0, "constant") == 1.0
    with pytest.raises(ValueError, match="schedule='step'"):
        lr_factor(0, 10, 0.0, "step")


def _run(name, losses, times, seed=0):
    curve = {
        "step": [0, 10, 20, 30],
        "time_s": times,
        "train_loss": [math.nan] * 4,
        "val_loss": losses,
    }
    return RunResult(name, seed, 1.0, 1.0, 30, curve, times[-1], 1.0, 0.5, "h", "d", False)


def test_summary_ratios_by_hand():
    runs = [
        _run("adamw", [4.0, 3.0, 2.5, 2.4], [0.0, 1.0, 2.0, 3.0]),
        _run("muon", [4.0, 2.6, 2.3, 2.2], [0.0, 2.0, 4.0, 6.0]),  # reaches 2.4 at step 20
        _run("sgd", [4.0, 3.5, 3.0, 2.9], [0.0, 0.5, 1.0, 1.5]),  # never reaches 2.4
    ]
    assert reach(runs[1], 2.4) == (20, 4.0) and reach(runs[2], 2.4) == (None, None)
    summary = summarize(runs, "adamw")
    assert summary["muon"]["steps_ratio"]["mean"] == pytest.approx(20 / 30)
    assert summary["muon"]["time_ratio"]["mean"] == pytest.approx(4.0 / 3.0)
    assert summary["muon"]["best_val_loss"]["mean"] == 2.2
    assert summary["sgd"]["reached"] == 0 and summary["sgd"]["steps_ratio"]["mean"] is None


def test_factory_routes_hidden_matrices_and_shares_adamw(tasks):
    task = tasks["shakespeare-char"]
    model = task.build_model()
    matrices, rest = split_parameters(model, task.routing())
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)].split(".")[-2] for p in matrices) == ["fc", "out", "proj", "qkv"]
    assert {names[id(p)] for p in rest} >= {"tok_emb.weight", "pos_emb.weight", "lm_head.weight"}
    muon, rest_adamw = build_optimizer("muon", model, 0.03, 0.004, routing=task.routing())
    assert isinstance(muon, steepest.Muon) and isinstance(rest_adamw, torch.optim.AdamW)
    assert {id(p) for g in muon.param_groups for p in g["params"]} == {id(p) for p in matrices}
    assert [g["lr"] for g in rest_adamw.param_groups] == [0.004]
    (adamw,) = build_optimizer("adamw", model, 0.002, 0.004, routing=task.routing())
    lrs = {id(p): g["lr"] for g in adamw.param_groups for p in g["params"]}
    assert {lrs[id(p)] for p in matrices} == {0.002} and {lrs[id(p)] for p in rest} == {0.004}
    with pytest.raises(ValueError, match="optimizer='adafactor'"):
        build_optimizer("adafactor", model, 0.1, 0.1)
    with pytest.raises(ValueError, match="adamw_lr=0"):
        build_optimizer("adamw", model, 0.1, 0)
