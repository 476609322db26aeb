"""Dion: the full-rank identity with Muon (exact polar factor), a float64 transcription of
Alg. 1 at low rank, the warm start's amortized convergence, the two orthonormalizers, errors."""

import math

import pytest
import torch
from torch import nn

import steepest
from steepest.optim.family.dion import dion_rank, orthonormalize_columns

DT = torch.float64


def gradients(shape, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=DT) for _ in range(steps)]


def run(name, shape, grads, **hp):
    p = nn.Parameter(torch.ones(shape, dtype=DT))
    opt = steepest.optimizer(name, [p], **hp)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


@pytest.mark.parametrize("shape", [(5, 5), (4, 7), (9, 3), (2, 4, 6)])
def test_full_rank_converged_dion_is_muon_with_an_exact_polar_factor(shape):
    """Settings: rank_fraction 1 (r = min(m, n)), power_iterations 300 (the subspace
    iteration converged to B's singular vectors: P Q^T = U V^T), momentum 0.9, spectral
    scale; against Muon with backend "svd", nesterov=False, momentum 0.9 (Dion's
    B_t = 0.9 B_(t-1) + G_t is Muon's EMA momentum / 0.1, and U V^T is scale invariant).
    Three steps with weight decay 0.1, fp64, 1e-9."""
    grads = gradients(shape, 3, seed=1)
    common = dict(lr=0.05, momentum=0.9, weight_decay=0.1, scale="spectral")
    dion = run("dion", shape, grads, rank_fraction=1.0, power_iterations=300, **common)
    muon = run("muon", shape, grads, backend="svd", nesterov=False, **common)
    torch.testing.assert_close(dion, muon, rtol=0, atol=1e-9)


def orthonormal_columns(P):
    return torch.linalg.qr(P).Q


@pytest.mark.parametrize("shape", [(6, 5), (4, 7)])
def test_low_rank_steps_match_algorithm_1(shape):
    """Rank 2, one power iteration, momentum 0.9: three steps against Alg. 1 written out in
    fp64 (B = M + G, P = orth(B Q), R = B^T P, M = B - (1 - mu) P R^T, Q = R / ||R||_col,
    W -= lr sqrt(m/n) P Q^T) from the optimizer's initial Q. 1e-10."""
    m, n = shape
    lr, mu, r = 0.05, 0.9, 2
    grads = gradients(shape, 3, seed=2)
    p = nn.Parameter(torch.ones(shape, dtype=DT))
    opt = steepest.Dion([p], lr=lr, momentum=mu, rank=r)
    Q = opt.state[p]["right_factor"].clone()
    assert Q.shape == (n, r)
    W, M = torch.ones(shape, dtype=DT), torch.zeros(shape, dtype=DT)
    for g in grads:
        p.grad = g.clone()
        opt.step()
        B = M + g
        P = orthonormal_columns(B @ Q)
        R = B.T @ P
        M = B - (1 - mu) * P @ R.T
        Q = R / torch.linalg.norm(R, dim=0, keepdim=True)
        W = W - lr * math.sqrt(m / n) * P @ Q.T
        # the low-rank error feedback keeps what the rank-r update left out
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], M, rtol=0, atol=1e-10)
    torch.testing.assert_close(p.detach(), W, rtol=0, atol=1e-10)


def test_one_power_iteration_amortizes_to_the_polar_factor():
    """Full rank, one power iteration per step, a constant gradient: the warm-started Q
    converges, so the step direction tends to U V^T of G (B_t is a multiple of G). The
    distance (spectral norm) falls below 1e-6 within 60 steps and by 1e4x from step 1."""
    (g,) = gradients((8, 6), 1, seed=3)
    U, _, Vh = torch.linalg.svd(g, full_matrices=False)
    p = nn.Parameter(torch.zeros(8, 6, dtype=DT))
    opt = steepest.Dion([p], lr=1.0, scale=1.0, momentum=0.5)
    errors = []
    for _ in range(60):
        before = p.detach().clone()
        p.grad = g.clone()
        opt.step()
        errors.append(torch.linalg.matrix_norm(before - p.detach() - U @ Vh, ord=2).item())
    assert errors[-1] < 1e-6 and errors[-1] < 1e-4 * errors[0], errors[::10]


def test_randomized_cholesky_qr_equals_qr_up_to_column_signs():
    """orthonormalize_columns: "cholesky_qr" spans the same space with orthonormal columns
    (float32, columns scaled over 1e4: ||Z^T Z - I|| <= 1e-5, projector error <= 1e-5), and
    Dion steps with it equal steps with "qr" (P Q^T does not see column signs), fp64 1e-10."""
    gen = torch.Generator().manual_seed(4)
    P = torch.randn(3, 40, 8, generator=gen) * torch.logspace(0, 4, 8)
    Z = orthonormalize_columns(P, "cholesky_qr", seed=0)
    Qr = orthonormalize_columns(P, "qr")
    eye = torch.eye(8).expand(3, 8, 8)
    assert (Z.mT @ Z - eye).abs().max() < 1e-5
    assert (Z @ Z.mT - Qr @ Qr.mT).abs().max() < 1e-5
    grads = gradients((7, 5), 3, seed=5)
    a = run("dion", (7, 5), grads, rank=3, orthonormalize="cholesky_qr")
    b = run("dion", (7, 5), grads, rank=3, orthonormalize="qr")
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_rank_rules():
    assert dion_rank(8, 6, None, 1.0) == 6
    assert dion_rank(8, 6, None, 0.25) == 2  # ceil(1.5)
    assert dion_rank(8, 6, None, 0.01) == 1
    assert dion_rank(8, 6, 4, 0.25) == 4
    assert dion_rank(8, 6, 100, 1.0) == 6


def test_errors_name_the_parameter():
    params = [nn.Parameter(torch.zeros(3, 3))]
    with pytest.raises(ValueError, match=r"rank=0 must be None or an int >= 1"):
        steepest.Dion(params, rank=0)
    with pytest.raises(ValueError, match=r"rank_fraction=1.5 must be in \(0, 1\]"):
        steepest.Dion(params, rank_fraction=1.5)
    with pytest.raises(ValueError, match=r"orthonormalize='svd' is unknown.*'cholesky_qr'"):
        steepest.Dion(params, orthonormalize="svd")
    with pytest.raises(ValueError, match=r"power_iterations=0 must be an int >= 1"):
        steepest.Dion(params, power_iterations=0)
    with pytest.raises(ValueError, match=r"momentum=1.0 not in \[0, 1\)"):
        steepest.Dion(params, momentum=1.0)
    with pytest.raises(ValueError, match=r"sync_factors='yes'"):
        steepest.Dion(params, sync_factors="yes")


def test_sync_factors_without_a_process_group_raises_and_leaves_the_step_undone():
    """sync_factors averages factors over ranks: one process with no process group is an
    error at step time (naming the option), and neither the weight nor M nor Q changes."""
    p = nn.Parameter(torch.ones(4, 3))
    opt = steepest.Dion([p], sync_factors=True, rank=2)
    state = {k: v.clone() for k, v in opt.state[p].items()}
    p.grad = torch.randn(4, 3)
    with pytest.raises(RuntimeError, match="sync_factors=True needs an initialized"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(4, 3))
    for key, value in state.items():
        assert torch.equal(opt.state[p][key], value), key
