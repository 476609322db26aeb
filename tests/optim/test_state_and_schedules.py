"""Eager state, state_dict round-trip, bit-identical resume, LR schedulers, closures, zero_grad."""

import copy
import io

import pytest
import torch
from torch import nn

import steepest


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))


def batch(t):
    gen = torch.Generator().manual_seed(100 + t)
    return torch.randn(16, 6, generator=gen), torch.randint(0, 3, (16,), generator=gen)


def train(model, optimizer, steps, start=0, scheduler=None):
    for t in range(start, start + steps):
        x, y = batch(t)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def test_state_is_eager_and_round_trips():
    model = make_model()
    opt = steepest.Muon(model.parameters(), weight_decay=0.01)
    keys_before = {i: set(s) for i, s in opt.state_dict()["state"].items()}
    assert len(keys_before) == 6  # every parameter has state before the first step
    train(model, opt, 3)
    saved = opt.state_dict()
    assert {i: set(s) for i, s in saved["state"].items()} == keys_before
    clone = steepest.Muon(make_model().parameters(), weight_decay=0.01)
    clone.load_state_dict(copy.deepcopy(saved))
    again = clone.state_dict()
    for i, state in saved["state"].items():
        for key, value in state.items():
            assert torch.equal(value, again["state"][i][key]), (i, key)
    assert again["param_groups"] == saved["param_groups"]


@pytest.mark.parametrize("backend", ["polar_express", "svd"])
def test_resume_is_bit_identical(backend):
    model, reference = make_model(), None
    opt = steepest.Muon(model.parameters(), backend=backend, weight_decay=0.01, nonfinite="skip")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    train(model, opt, 4, scheduler=sched)
    buffer = io.BytesIO()
    torch.save(
        {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buffer
    )
    train(model, opt, 4, start=4, scheduler=sched)
    reference = [p.detach().clone() for p in model.parameters()]

    buffer.seek(0)
    checkpoint = torch.load(buffer)
    resumed = make_model(seed=123)
    resumed.load_state_dict(checkpoint["model"])
    opt2 = steepest.Muon(resumed.parameters(), backend=backend, weight_decay=0.01, nonfinite="skip")
    sched2 = torch.optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    opt2.load_state_dict(checkpoint["opt"])
    sched2.load_state_dict(checkpoint["sched"])
    train(resumed, opt2, 4, start=4, scheduler=sched2)
    for a, b in zip(resumed.parameters(), reference, strict=True):
        assert torch.equal(a, b)


def _muon_step_size(make_scheduler, steps=4):
    """lr seen in each group and the spectral norm of each muon step (momentum 0, svd
    backend: the step is lr * scale * U V^T, whose spectral norm is lr * scale exactly)."""
    w = nn.Parameter(torch.randn(4, 4))
    bias = nn.Parameter(torch.zeros(4))
    opt = steepest.Muon([w, bias], lr=0.1, momentum=0.0, backend="svd", adamw_lr=0.01)
    sched = make_scheduler(opt)
    seen = []
    for _ in range(steps):
        before = w.detach().clone()
        lrs = [g["lr"] for g in opt.param_groups]
        w.grad, bias.grad = torch.randn(4, 4), torch.randn(4)
        opt.step()
        seen.append((lrs, torch.linalg.matrix_norm(w.detach() - before, ord=2).item()))
        sched.step()
    return opt, seen


@pytest.mark.parametrize(
    "make_scheduler",
    [
        lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 0.5**t),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=3),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=[0.2, 0.02], total_steps=6),
    ],
    ids=["lambda", "cosine", "onecycle"],
)
def test_schedulers_drive_the_step(make_scheduler):
    opt, seen = _muon_step_size(make_scheduler)
    muon_lrs = [lrs[0] for lrs, _ in seen]
    assert len(set(muon_lrs)) > 1  # the schedule changed lr
    for lrs, norm in seen:
        assert norm == pytest.approx(lrs[0], rel=1e-5)  # the step used the scheduled lr
        assert lrs[1] == pytest.approx(0.1 * lrs[0])  # adamw keeps its own base lr (0.01)


def test_onecycle_cycles_muon_momentum():
    opt, _ = _muon_step_size(
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.2, total_steps=6)
    )
    assert opt.defaults["momentum"] == 0.0
    assert 0.85 <= opt.param_groups[0]["momentum"] <= 0.95  # written by OneCycleLR


def test_closure_and_zero_grad():
    model = make_model()
    opt = steepest.Muon(model.parameters())
    x, y = batch(0)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    first = opt.step(closure)
    assert isinstance(first, torch.Tensor)
    for _ in range(5):
        last = opt.step(closure)
    assert last < first
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()  # no gradients: nothing moves
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize("name", ["shampoo", "soap"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_row_block_state_resumes_bit_identically(name, dtype):
    """Per-block statistics ("left/0", ...) are flat state tensors: a bf16 weight's float32
    block statistics come back as float32 and the resumed run matches the uninterrupted one."""
    torch.manual_seed(3)
    weight = torch.randn(9, 4).to(dtype)

    def run(w, opt, steps, start):
        for t in range(start, start + steps):
            w.grad = torch.randn(9, 4, generator=torch.Generator().manual_seed(t)).to(dtype)
            opt.step()

    def build(w):
        group = {"params": [w], "algorithm": name, "blocks": [2, 3, 4]}
        return steepest.optimizer(name, [group], lr=0.01, precondition_every=2)

    w = nn.Parameter(weight.clone())
    opt = build(w)
    run(w, opt, 3, 0)
    assert opt.state[w]["left/2"].shape == (4, 4) and opt.state[w]["left/2"].dtype == torch.float32
    saved, middle = copy.deepcopy(opt.state_dict()), w.detach().clone()
    run(w, opt, 3, 3)
    resumed = nn.Parameter(middle)
    again = build(resumed)
    again.load_state_dict(saved)
    assert again.state[resumed]["left/2"].dtype == torch.float32
    run(resumed, again, 3, 3)
    assert torch.equal(resumed.detach(), w.detach())


@pytest.mark.parametrize("name", ["muon", "shampoo", "soap", "adamw"])
def test_state_stays_with_the_parameters_whatever_the_default_device(name):
    """Step counters live on the CPU (torch's convention) even when the optimizer is built and
    stepped under torch.set_default_device: a run under the "meta" default equals the plain one."""
    plain, shifted = make_model(), make_model()
    train(plain, steepest.optimizer(name, plain.parameters(), lr=0.01), 3)
    torch.set_default_device("meta")
    try:  # state is made at construction
        opt = steepest.optimizer(name, shifted.parameters(), lr=0.01)
    finally:
        torch.set_default_device(None)
    for t in range(3):
        x, y = batch(t)
        opt.zero_grad()
        nn.functional.cross_entropy(shifted(x), y).backward()
        torch.set_default_device("meta")
        try:
            opt.step()
        finally:
            torch.set_default_device(None)
    for a, b in zip(plain.parameters(), shifted.parameters(), strict=True):
        assert torch.equal(a, b)
    steps = [s["step"] for s in opt.state.values() if "step" in s]
    assert all(s.device.type == "cpu" for s in steps)
