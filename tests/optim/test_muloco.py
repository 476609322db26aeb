"""MuLoCo (single-process simulation of K workers): the H = 1, outer lr 1 reductions, two
Nesterov outer rounds written out, compression with error feedback, errors, finite steps
under extreme gradients, and a short training check."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import steepest
from steepest.optim.family.muloco import MuLoCo

DT = torch.float64


def targets(workers, shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=DT) for _ in range(workers)]


def closures(w, goals):
    """Worker k's loss 0.5 ||A_k w - goal_k||^2 with a fixed A_k (a different batch each)."""
    out = []
    for k, goal in enumerate(goals):
        A = torch.eye(w.shape[0], dtype=DT) * (1 + k)

        def run(A=A, goal=goal):
            loss = 0.5 * (A @ w - goal).square().sum()
            loss.backward()
            return loss

        out.append(run)
    return out


def muon_steps(start, A, goal, steps, **hp):
    """The oracle for one worker: a plain Muon run on its own loss from ``start``."""
    w = nn.Parameter(start.clone())
    opt = steepest.Muon([w], **hp)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * (A @ w - goal).square().sum()).backward()
        opt.step()
    return w.detach(), opt


HP = dict(lr=0.05, backend="svd")


def test_h1_outer_lr1_with_equal_gradients_is_synchronous_muon():
    """Three workers on the same batch, H = 1, outer lr 1, outer momentum 0: four steps equal
    four steps of one Muon (data-parallel Muon with equal gradients). fp64, 1e-12."""
    w = nn.Parameter(torch.ones(5, 4, dtype=DT))
    goal = targets(1, (5, 4), 0)[0]
    opt = MuLoCo([w], workers=3, sync_every=1, outer_lr=1.0, outer_momentum=0.0, **HP)
    for _ in range(4):
        opt.step(closures(w, [goal]) * 3)
    expected, _ = muon_steps(torch.ones(5, 4, dtype=DT), torch.eye(5, dtype=DT), goal, 4, **HP)
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-12)


def test_h1_outer_lr1_is_the_mean_of_the_workers_muon_steps():
    """Different batches, H = 1, outer lr 1, momentum 0: x <- mean_k (x - lr u_k), u_k from
    worker k's own Muon momentum (msign is not linear: not msign of the mean gradient).
    Oracle: K separate Muon optimizers stepped once per round from the shared weights."""
    K, shape = 3, (5, 4)
    goals = targets(K, shape, 1)
    w = nn.Parameter(torch.ones(shape, dtype=DT))
    opt = MuLoCo([w], workers=K, sync_every=1, outer_lr=1.0, outer_momentum=0.0, **HP)
    x = torch.ones(shape, dtype=DT)
    copies = [nn.Parameter(x.clone()) for _ in range(K)]
    inner = [steepest.Muon([c], **HP) for c in copies]
    for _ in range(3):
        opt.step(closures(w, goals))
        results = []
        for k, (c, o) in enumerate(zip(copies, inner, strict=True)):
            with torch.no_grad():
                c.copy_(x)
            o.zero_grad()
            (0.5 * ((1 + k) * c - goals[k]).square().sum()).backward()
            o.step()
            results.append(c.detach().clone())
        x = torch.stack(results).mean(0)
    torch.testing.assert_close(w.detach(), x, rtol=0, atol=1e-12)
    plain_mean = muon_steps(torch.ones(shape, dtype=DT), torch.eye(5, dtype=DT), goals[0], 3, **HP)
    assert (w.detach() - plain_mean[0]).abs().max() > 1e-3  # a real multi-worker run


def test_two_nesterov_rounds_match_the_outer_loop_written_out():
    """K = 2, H = 3, outer lr 0.7, Nesterov 0.9: Delta = mean_k (x - x_k) after 3 inner Muon
    steps per worker (each keeps its momentum across rounds), b <- 0.9 b + Delta (b = Delta
    at first), x <- x - 0.7 (Delta + 0.9 b). fp64, 1e-12."""
    K, shape, H = 2, (4, 6), 3
    goals = targets(K, shape, 2)
    w = nn.Parameter(torch.zeros(shape, dtype=DT))
    opt = MuLoCo([w], workers=K, sync_every=H, outer_lr=0.7, outer_momentum=0.9, **HP)
    x, b = torch.zeros(shape, dtype=DT), None
    copies = [nn.Parameter(x.clone()) for _ in range(K)]
    inner = [steepest.Muon([c], **HP) for c in copies]
    A = [torch.eye(4, dtype=DT) * (1 + k) for k in range(K)]
    for _ in range(2):
        for _ in range(H):
            opt.step(closures(w, goals))
        for k in range(K):
            with torch.no_grad():
                copies[k].copy_(x)
            for _ in range(H):
                inner[k].zero_grad()
                (0.5 * (A[k] @ copies[k] - goals[k]).square().sum()).backward()
                inner[k].step()
        delta = torch.stack([x - c.detach() for c in copies]).mean(0)
        b = delta if b is None else 0.9 * b + delta
        x = x - 0.7 * (delta + 0.9 * b)
    torch.testing.assert_close(w.detach(), x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("compression", ["topk", "int8"])
def test_compression_keeps_what_it_did_not_send(compression):
    """After a round each worker's error buffer plus what it sent is its whole delta (error
    feedback); topk sends ceil(0.25 numel) entries; with topk_fraction=1 nothing is lost."""
    K, shape = 2, (6, 5)
    goals = targets(K, shape, 3)
    w = nn.Parameter(torch.zeros(shape, dtype=DT))
    opt = MuLoCo([w], workers=K, sync_every=2, compression=compression, topk_fraction=0.25, **HP)
    for _ in range(2):
        opt.step(closures(w, goals))
    sent_total = torch.zeros(shape, dtype=DT)
    x0 = torch.zeros(shape, dtype=DT)
    for k in range(K):
        # replay: the worker's delta is x0 - x_k; the sent part is delta - error
        x_k, _ = muon_steps(x0, torch.eye(6, dtype=DT) * (1 + k), goals[k], 2, **HP)
        delta = x0 - x_k
        sent = delta - opt.errors[k][0]
        if compression == "topk":
            assert int((sent != 0).sum()) == math.ceil(0.25 * 30)
        else:
            assert (opt.errors[k][0].abs() <= delta.abs().max() / 127).all()
        sent_total += sent
    assert all(e.abs().max() > 0 for errors in opt.errors for e in errors)
    full = MuLoCo(
        [nn.Parameter(torch.zeros(shape, dtype=DT))],
        workers=K,
        sync_every=2,
        compression="topk",
        topk_fraction=1.0,
        **HP,
    )
    assert all(e.abs().max() == 0 for errors in full.errors for e in errors)


def test_errors_name_the_parameter():
    w = [nn.Parameter(torch.zeros(3, 3))]
    with pytest.raises(ValueError, match=r"workers=0 must be an int >= 1"):
        MuLoCo(w, workers=0)
    with pytest.raises(ValueError, match=r"sync_every=1.5 must be an int >= 1"):
        MuLoCo(w, workers=2, sync_every=1.5)
    with pytest.raises(ValueError, match=r"outer_momentum=1.0 not in \[0, 1\)"):
        MuLoCo(w, workers=2, outer_momentum=1.0)
    with pytest.raises(ValueError, match=r"compression='fp8' is unknown"):
        MuLoCo(w, workers=2, compression="fp8")
    with pytest.raises(ValueError, match=r"topk_fraction=0 must be in \(0, 1\]"):
        MuLoCo(w, workers=2, topk_fraction=0)
    opt = MuLoCo(w, workers=2)
    with pytest.raises(ValueError, match=r"step got 1 closures; need one per worker \(2\)"):
        opt.step([lambda: None])


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]),
    exponent=st.integers(-30, 30),
    compression=st.sampled_from([None, "topk", "int8"]),
    rows=st.integers(1, 9),
)
def test_finite_in_finite_out(dtype, exponent, compression, rows):
    """The fuzz suite's property for MuLoCo: finite weights and gradients of scale 1e-30 ..
    the dtype's limit / 100 give finite weights over two rounds (K = 2, H = 2)."""
    exponent = min(exponent, int(math.log10(torch.finfo(dtype).max)) - 2)
    w = nn.Parameter(torch.randn(rows, 5, dtype=DT).to(dtype))
    b = nn.Parameter(torch.zeros(5, dtype=dtype))
    opt = MuLoCo([w, b], workers=2, sync_every=2, compression=compression)
    gen = torch.Generator().manual_seed(exponent + 31)

    def closure():
        w.grad = (torch.randn(w.shape, generator=gen, dtype=DT) * 10.0**exponent).to(dtype)
        b.grad = (torch.randn(5, generator=gen, dtype=DT) * 10.0**exponent).to(dtype)

    for _ in range(4):
        opt.step([closure, closure])
    assert w.isfinite().all() and b.isfinite().all()


def test_two_workers_train_a_small_regression():
    """Defaults (H = 30, outer lr 0.7, Nesterov 0.9, inner Muon lr 0.02), two workers with
    their own batches of one linear regression, 90 steps: the global weights' loss on both
    batches falls below half its untrained value (measured: 2.25 -> 0.68)."""
    torch.manual_seed(0)
    W_true = torch.randn(6, 10) / math.sqrt(10)
    batches = [torch.randn(64, 10) for _ in range(2)]
    model = nn.Linear(10, 6, bias=False)
    opt = MuLoCo(model.parameters(), workers=2)

    def loss(x):
        return (model(x) - x @ W_true.T).square().mean()

    def make(x):
        def run():
            value = loss(x)
            value.backward()
            return value

        return run

    start = sum(loss(x).item() for x in batches)
    for _ in range(90):
        opt.step([make(x) for x in batches])
    end = sum(loss(x).item() for x in batches)
    assert end < 0.5 * start, (start, end)
