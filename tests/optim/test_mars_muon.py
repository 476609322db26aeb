"""MARS-M ("mars_muon"): the Muon identity, the papers' equations in fp64, the exact form with
a closure and its errors (training check: test_member_training.py)."""

import math

import pytest
import torch
from torch import nn

import steepest

DT = torch.float64


def gradients(shape, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=DT) * (1 + t) for t in range(steps)]


def run(name, shape, grads, **hp):
    p = nn.Parameter(torch.ones(shape, dtype=DT))
    opt = steepest.optimizer(name, [p], **hp)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


@pytest.mark.parametrize("shape", [(5, 5), (4, 7), (9, 3), (2, 4, 6)])
@pytest.mark.parametrize("nesterov", [False, True])
def test_gamma_zero_without_clipping_is_muon_exactly(shape, nesterov):
    """gamma = 0, clip=None: c_t = g_t, so four steps equal Muon's bit for bit (fp64,
    polar_express, the same momentum and scale)."""
    grads = gradients(shape, 4, seed=1)
    common = dict(lr=0.05, momentum=0.9, nesterov=nesterov, scale="spectral", weight_decay=0.1)
    common.update(polar_dtype=DT)
    mars = run("mars_muon", shape, grads, gamma=0.0, clip=None, **common)
    muon = run("muon", shape, grads, **common)
    assert torch.equal(mars, muon)


def test_first_step_is_muon_whatever_the_clipping():
    """On the first step c_1 = g_1 clipped to norm 1: a positive multiple of g_1, and msign is
    scale invariant, so the step is Muon's first step (svd backend, fp64, 1e-12)."""
    (g,) = gradients((6, 4), 1, seed=2)
    g = g * 100  # ||g|| >> 1: the clip acts
    mars = run("mars_muon", (6, 4), [g], gamma=0.5, backend="svd", scale=1.0, lr=0.1)
    muon = run("muon", (6, 4), [g], nesterov=False, backend="svd", scale=1.0, lr=0.1)
    torch.testing.assert_close(mars, muon, rtol=0, atol=1e-12)


def reference(grads, lr, beta, gamma, clip, wd, shape):
    """The MARS-M equations in fp64 with an exact polar factor (the oracle)."""
    W, M, previous = torch.ones(shape, dtype=DT), torch.zeros(shape, dtype=DT), None
    m, n = shape
    for g in grads:
        c = g if previous is None else g + gamma * beta / (1 - beta) * (g - previous)
        c = c / max(1.0, torch.linalg.norm(c).item() / clip)
        M = beta * M + (1 - beta) * c
        U, _, Vh = torch.linalg.svd(M, full_matrices=False)
        W = (1 - lr * wd) * W - lr * 0.2 * math.sqrt(max(m, n)) * (U @ Vh)
        previous = g
    return W


@pytest.mark.parametrize("clip", [1.0, 1e3])
def test_three_steps_match_the_papers_equations(clip):
    """Approximate form (g_{t-1} = last step's gradient), gamma 0.3, beta 0.9, scale "rms",
    weight decay 0.1: three steps against the equations in fp64. Tolerance 1e-10."""
    shape, lr, beta, gamma, wd = (5, 7), 0.02, 0.9, 0.3, 0.1
    grads = gradients(shape, 3, seed=3)
    got = run(
        "mars_muon",
        shape,
        grads,
        lr=lr,
        momentum=beta,
        gamma=gamma,
        clip=clip,
        weight_decay=wd,
        backend="svd",
    )
    expected = reference(grads, lr, beta, gamma, clip, wd, shape)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    # the correction matters: gamma = 0 gives a different trajectory
    plain = reference(grads, lr, beta, 0.0, clip, wd, shape)
    assert (got - plain).abs().max() > 1e-4


def test_exact_form_evaluates_the_previous_weights_on_the_current_batch():
    """variance_reduction="exact" on a quadratic f(W; A_t) = 0.5 ||A_t W||^2 with a new A_t
    each step: grad = A_t^T A_t W, so g_{t-1} = A_t^T A_t W_{t-1} (the previous weights, the
    current batch). Oracle: the equations with that g_{t-1}, fp64, svd, 1e-10; the closure
    is called twice from the second step on."""
    gen = torch.Generator().manual_seed(4)
    batches = [torch.randn(6, 5, generator=gen, dtype=DT) for _ in range(3)]
    W0 = torch.randn(5, 4, generator=gen, dtype=DT)
    lr, beta, gamma = 0.05, 0.9, 0.5
    p = nn.Parameter(W0.clone())
    opt = steepest.MarsMuon(
        [p],
        lr=lr,
        momentum=beta,
        gamma=gamma,
        clip=1.0,
        backend="svd",
        variance_reduction="exact",
    )
    calls = []
    for A in batches:

        def closure(A=A):
            calls.append(1)
            opt.zero_grad()
            loss = 0.5 * (A @ p).square().sum()
            loss.backward()
            return loss

        opt.step(closure)
    assert len(calls) == 1 + 2 + 2
    W, M, W_prev = W0.clone(), torch.zeros_like(W0), None
    for A in batches:
        H = A.T @ A
        g = H @ W
        c = g if W_prev is None else g + gamma * beta / (1 - beta) * (g - H @ W_prev)
        c = c / max(1.0, torch.linalg.norm(c).item())
        M = beta * M + (1 - beta) * c
        U, _, Vh = torch.linalg.svd(M, full_matrices=False)
        W_prev = W.clone()
        W = W - lr * 0.2 * math.sqrt(5) * (U @ Vh)
    torch.testing.assert_close(p.detach(), W, rtol=0, atol=1e-10)


def test_errors_name_the_parameter_and_leave_nothing_written():
    params = [nn.Parameter(torch.zeros(3, 3))]
    with pytest.raises(ValueError, match=r"gamma=-1 must be a finite number >= 0"):
        steepest.MarsMuon(params, gamma=-1)
    with pytest.raises(ValueError, match=r"clip=0 must be > 0 or None"):
        steepest.MarsMuon(params, clip=0)
    with pytest.raises(ValueError, match=r"variance_reduction='full' is unknown.*'exact'"):
        steepest.MarsMuon(params, variance_reduction="full")
    with pytest.raises(ValueError, match=r"momentum=0 with gamma=0.025"):
        steepest.MarsMuon(params, momentum=0.0)
    p = nn.Parameter(torch.ones(3, 3))
    p.grad = torch.ones(3, 3)
    opt = steepest.MarsMuon([p], variance_reduction="exact")
    before = {k: v.clone() for k, v in opt.state[p].items()}
    with pytest.raises(ValueError, match=r"variance_reduction='exact' needs step\(closure\)"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3, 3))
    assert all(torch.equal(v, opt.state[p][k]) for k, v in before.items())
