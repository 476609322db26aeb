"""Every member of OPTIMIZERS: only the matrix rule differs, the rest gets torch's AdamW."""

import copy
import math

import pytest
import torch
from experiments_helpers import TINY_OPTIONS
from torch import nn

import steepest
from steepest.experiments.optimizers import (
    ADAMW_BETAS,
    DEFAULT_ADAMW_LR,
    OPTIMIZERS,
    build_optimizer,
    default_lrs,
    split_parameters,
)
from steepest.experiments.runner import train
from steepest.experiments.tasks import make_task, parse_options

MAIN_MEMBERS = (
    "adamw muon sgd normuon scion specgd schatten-p4 signum lion shampoo soap polargrad".split()
)


def _model() -> nn.Module:
    """A small MLP with biases: two hidden matrices (8x6, 8x8), a head and vectors."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)
    ).double()


def _grads(model: nn.Module, steps: int) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in model.parameters()]
        for _ in range(steps)
    ]


def _step_all(optimizers, model, grads) -> None:
    for step_grads in grads:
        for p, g in zip(model.parameters(), step_grads, strict=True):
            p.grad = g.clone()
        for opt in optimizers:
            opt.step()


def test_the_main_members_are_there():
    assert set(MAIN_MEMBERS) <= set(OPTIMIZERS)
    for name, member in OPTIMIZERS.items():
        assert member.preset is None or member.preset in steepest.available(), name
        assert member.default_lr > 0 and member.ratio > 0
        assert member.like is None or member.like in OPTIMIZERS


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_rest_gets_exactly_torch_adamw_and_matrices_the_members_rule(name):
    model = _model()
    oracle = copy.deepcopy(model)
    before = copy.deepcopy(model)
    matrices, rest = split_parameters(model)
    m_ids = {id(p) for p in matrices}
    assert len(matrices) == 2 and len(rest) == 4  # two hidden weights; head, three biases
    lr, adamw_lr, wd = 0.01, 0.003, 0.1
    optimizers = build_optimizer(name, model, lr, adamw_lr, weight_decay=wd)
    grads = _grads(model, 3)
    _step_all(optimizers, model, grads)

    # oracle for the rest: torch.optim.AdamW (default implementation) on copies
    o_params = list(oracle.parameters())
    is_matrix = [id(p) in m_ids for p in model.parameters()]
    o_rest = [p for p, m in zip(o_params, is_matrix, strict=True) if not m]
    ref = torch.optim.AdamW(o_rest, lr=adamw_lr, betas=ADAMW_BETAS, weight_decay=wd)
    if name == "adamw":  # the matrices are AdamW's too, with lr
        o_mat = [p for p, m in zip(o_params, is_matrix, strict=True) if m]
        ref.add_param_group({"params": o_mat, "lr": lr})
    _step_all([ref], oracle, grads)
    for p, q, m in zip(model.parameters(), oracle.parameters(), is_matrix, strict=True):
        if not m or name == "adamw":
            torch.testing.assert_close(p, q, rtol=0, atol=1e-14)
    # the matrices moved, and by a rule other than AdamW's (except for adamw itself)
    for p, q, b, m in zip(
        model.parameters(), oracle.parameters(), before.parameters(), is_matrix, strict=True
    ):
        if m:
            assert not torch.equal(p, b)
            if name != "adamw":
                assert (p - q).abs().max() > 1e-6


def _first_step(name: str, lr: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(matrices after one step, their gradients) of member ``name`` without weight decay."""
    model = _model()
    matrices, _rest = split_parameters(model)
    optimizers = build_optimizer(name, model, lr, 1e-3)
    grads = _grads(model, 1)
    _step_all(optimizers, model, grads)
    ids = [id(p) for p in matrices]
    by_id = {id(p): g for p, g in zip(model.parameters(), grads[0], strict=True)}
    return [p.detach().clone() for p in matrices], [by_id[i] for i in ids]


def test_first_steps_against_closed_forms():
    """sgd: W - lr G; specgd: W - lr sqrt(m/n) U V^T (fp64 SVD); lion, signum: W - lr sign G."""
    lr = 0.05
    initial = [p.detach().clone() for p in split_parameters(_model())[0]]
    after, grads = _first_step("sgd", lr)
    for w0, w1, g in zip(initial, after, grads, strict=True):
        torch.testing.assert_close(w1, w0 - lr * g, rtol=0, atol=1e-15)
    after, grads = _first_step("specgd", lr)
    for w0, w1, g in zip(initial, after, grads, strict=True):
        U, _s, Vh = torch.linalg.svd(g, full_matrices=False)
        m, n = g.shape
        torch.testing.assert_close(w1, w0 - lr * math.sqrt(m / n) * U @ Vh, rtol=0, atol=1e-10)
    for name in ("lion", "signum"):
        after, grads = _first_step(name, lr)
        for w0, w1, g in zip(initial, after, grads, strict=True):
            torch.testing.assert_close(w1, w0 - lr * torch.sign(g), rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", [n for n in sorted(OPTIMIZERS) if OPTIMIZERS[n].preset])
def test_matrix_rule_is_the_preset_with_the_members_options(name):
    """Three steps of the factory's matrix optimizer equal the preset built by hand."""
    member = OPTIMIZERS[name]
    model = _model()
    by_hand = copy.deepcopy(model)
    build = build_optimizer(name, model, 0.01, 1e-3)
    grads = _grads(model, 3)
    _step_all(build, model, grads)
    hand_matrices = split_parameters(by_hand)[0]
    hand = steepest.optimizer(
        member.preset, hand_matrices, lr=0.01, **{"weight_decay": 0.0, **member.options}
    )
    ids = {id(p) for p in hand_matrices}
    for step_grads in grads:
        for p, g in zip(by_hand.parameters(), step_grads, strict=True):
            p.grad = g.clone() if id(p) in ids else None
        hand.step()
    for p, q in zip(split_parameters(model)[0], hand_matrices, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-14)


@pytest.fixture(scope="module")
def tiny_mnist():
    task = make_task("mnist-mlp", **parse_options("mnist-mlp", TINY_OPTIONS["mnist-mlp"]))
    task.setup(torch.device("cpu"))
    return task


@pytest.mark.parametrize("name", MAIN_MEMBERS)
def test_every_main_member_trains_a_tiny_task(name, tiny_mnist):
    """From the same start, 30 steps at the member's default lrs lower the held-out loss."""
    lr, adamw_lr = default_lrs(name, tiny_mnist.default_lrs)
    run = train(
        tiny_mnist,
        name,
        lr,
        adamw_lr,
        steps=30,
        seed=0,
        eval_every=30,
        device=torch.device("cpu"),
        progress=False,
    )
    first, last = run.curve["val_loss"]
    assert not run.diverged and last < first - 0.1, (first, last)


def test_default_lrs_by_hand():
    task_lrs = {"adamw": (6e-3, 2e-3), "muon": (0.025, 4e-3), "sgd": (0.8, 2e-3)}
    assert default_lrs("muon", task_lrs) == (0.025, 4e-3)  # the task's own pair
    assert default_lrs("lion", task_lrs) == pytest.approx((0.3 * 6e-3, 2e-3))
    assert default_lrs("schatten-p4", task_lrs) == pytest.approx((3 * 0.025, 2e-3))
    assert default_lrs("polargrad", task_lrs) == pytest.approx((0.02 * 0.8, 2e-3))
    assert default_lrs("soap", {}) == (OPTIMIZERS["soap"].default_lr, DEFAULT_ADAMW_LR)
    with pytest.raises(ValueError, match="optimizer='adam'.*muon"):
        default_lrs("adam", task_lrs)


def test_bad_arguments_raise_before_building():
    model = _model()
    with pytest.raises(ValueError, match="optimizer='adafactor'"):
        build_optimizer("adafactor", model, 0.1, 0.1)
    with pytest.raises(ValueError, match="adamw_lr=0"):
        build_optimizer("muon", model, 0.1, 0)
    with pytest.raises(ValueError, match="lr=nan"):
        build_optimizer("lion", model, math.nan, 0.1)
    with pytest.raises(ValueError, match="weight_decay=-1"):
        build_optimizer("soap", model, 0.1, 0.1, weight_decay=-1)
    with pytest.raises(ValueError, match="lr='0.1'"):
        build_optimizer("sgd", model, "0.1", 0.1)  # type: ignore[arg-type]


def test_every_member_builds_and_steps_on_a_gpt_with_fused_qkv():
    """Q, K, V blocks reach the members that take them; the others see one matrix."""
    task = make_task(
        "shakespeare-char", **parse_options("shakespeare-char", TINY_OPTIONS["shakespeare-char"])
    )
    task.setup(torch.device("cpu"))
    for name, member in OPTIMIZERS.items():
        torch.manual_seed(0)
        model = task.build_model()
        qkv = model.get_parameter("blocks.0.qkv.weight")
        before = qkv.detach().clone()
        optimizers = build_optimizer(name, model, 1e-3, 1e-3, routing=task.routing())
        for _ in range(2 if name == "soap" else 1):  # SOAP's first step only fits its basis
            torch.autograd.backward(task.loss(model, next(task.batches(0))))
            for opt in optimizers:
                opt.step()
                opt.zero_grad()
        assert not torch.equal(qkv, before), name
        if member.preset is not None:
            blocks = [
                g.get("blocks")
                for g in optimizers[0].param_groups
                if any(p is qkv for p in g["params"])
            ]
            assert blocks == [[16, 16, 16] if member.blocks else None], name
