"""AdaMuon and NorMuon's column mode against float64 transcriptions of the papers' equations
(exact polar factor by SVD), plus the row-block and error contracts."""

import math

import pytest
import torch
from torch import nn

import steepest

DT = torch.float64


def gradients(shape, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=DT) for _ in range(steps)]


def run(name, shape, grads, group=None, **hp):
    p = nn.Parameter(torch.ones(shape, dtype=DT))
    params = [{"params": [p], "algorithm": name, **group}] if group else [p]
    opt = steepest.optimizer(name, params, **hp)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


def polar(X):
    """U V^T of the singular values above max(m, n) eps s_max (numpy's matrix_rank rule): a
    sign matrix of +-1 entries can be exactly rank-deficient, and msign is 0 on its null space."""
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)
    keep = (s > max(X.shape) * torch.finfo(X.dtype).eps * s.max()).to(X.dtype)
    return (U * keep) @ Vh


@pytest.mark.parametrize("sign_momentum", [True, False])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("shape", [(4, 6), (7, 3)])
def test_adamuon_matches_the_paper_equations(sign_momentum, nesterov, shape):
    """Three steps: M = b M + (1 - b) G, D = Nesterov or M, O = polar(sign(D)) (the first
    (4, 6) sign matrix here has rank 3),
    V = b2 V + (1 - b2) O^2, O^ = O / (sqrt V + eps), W -= lr (0.2 sqrt(mn) O^ / ||O^||_F +
    wd W). fp64, svd backend, 1e-10."""
    b, b2, eps, lr, wd = 0.9, 0.95, 1e-8, 0.01, 0.1
    grads = gradients(shape, 3, seed=5)
    got = run(
        "adamuon",
        shape,
        grads,
        lr=lr,
        momentum=b,
        beta2=b2,
        eps=eps,
        nesterov=nesterov,
        sign_momentum=sign_momentum,
        weight_decay=wd,
        backend="svd",
    )
    m, n = shape
    W, M, V = (
        torch.ones(shape, dtype=DT),
        torch.zeros(shape, dtype=DT),
        torch.zeros(shape, dtype=DT),
    )
    for g in grads:
        M = b * M + (1 - b) * g
        D = (1 - b) * g + b * M if nesterov else M
        O = polar(torch.sign(D) if sign_momentum else D)
        V = b2 * V + (1 - b2) * O**2
        O_hat = O / (V.sqrt() + eps)
        W = W - lr * (0.2 * math.sqrt(m * n) * O_hat / torch.linalg.norm(O_hat) + wd * W)
    torch.testing.assert_close(got, W, rtol=0, atol=1e-10)


def test_adamuon_update_rms_is_the_target():
    """One step of a (16, 24) matrix moves W by exactly lr * update_rms in RMS (any gradient)."""
    (g,) = gradients((16, 24), 1, seed=6)
    got = run("adamuon", (16, 24), [g * 1e-6], lr=0.5, update_rms=0.3)
    rms = (got - 1).square().mean().sqrt().item()
    assert abs(rms - 0.5 * 0.3) < 1e-12


def fused_and_separate(name, rows, n, seed, **options):
    torch.manual_seed(seed)
    fused = nn.Parameter(torch.randn(sum(rows), n, dtype=DT))
    parts = [nn.Parameter(p.detach().clone()) for p in fused.detach().split(rows)]
    one = steepest.optimizer(
        name, [{"params": [fused], "algorithm": name, "blocks": rows}], **options
    )
    separate = steepest.optimizer(name, parts, **options)
    for g in gradients((sum(rows), n), 3, seed=seed + 1):
        fused.grad = g.clone()
        for p, piece in zip(parts, g.split(rows), strict=True):
            p.grad = piece.clone()
        one.step()
        separate.step()
    return fused.detach(), torch.cat([p.detach() for p in parts])


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("adamuon", dict(backend="svd")),
        ("normuon", dict(backend="svd", neurons="columns")),
        ("normuon", dict(backend="svd", neurons="auto")),
    ],
)
def test_row_blocks_equal_separate_parameters(name, options):
    """A fused (9, 4) weight with row blocks [2, 3, 4] takes the steps of three separate
    weights (each block its own matrix, own norm and, for NorMuon, own axis by its shape:
    under "auto" the (2, 4) and (3, 4) blocks are wide, the (4, 4) one square). fp64, 1e-12."""
    fused, separate = fused_and_separate(
        name, [2, 3, 4], 4, 11, lr=0.02, weight_decay=0.1, **options
    )
    torch.testing.assert_close(fused, separate, rtol=0, atol=1e-12)


def normuon_reference(grads, shape, axis, lr, b1, b2, eps):
    """NorMuon in fp64 with v over ``axis`` (-1: per row, -2: per column), then the update's
    Frobenius norm restored to ||O||_F and scaled by 0.2 sqrt(max(m, n))."""
    m, n = shape
    W, M = torch.ones(shape, dtype=DT), torch.zeros(shape, dtype=DT)
    v = torch.zeros(m if axis == -1 else n, dtype=DT)
    for g in grads:
        M = b1 * M + (1 - b1) * g
        O = polar(M)
        v = b2 * v + (1 - b2) * (O**2).mean(dim=axis)
        O_hat = O / (v.sqrt() + eps).unsqueeze(axis)
        u = 0.2 * math.sqrt(max(m, n)) * torch.linalg.norm(O) / torch.linalg.norm(O_hat) * O_hat
        W = W - lr * u
    return W


@pytest.mark.parametrize(
    ("neurons", "shape", "axis"),
    [
        ("columns", (4, 6), -2),
        ("columns", (6, 4), -2),
        ("auto", (4, 6), -2),  # wide: per column, as modded-nanogpt / nanochat
        ("auto", (6, 4), -1),  # tall: per row
        ("auto", (5, 5), -1),  # square: per row
        ("rows", (4, 6), -1),
    ],
)
def test_normuon_axes_match_the_equations(neurons, shape, axis):
    """Three steps of NorMuon with ``neurons`` against the fp64 transcription with v over
    the expected axis (svd backend), 1e-10; on a non-square matrix the other axis gives a
    different result."""
    lr, b1, b2, eps = 0.01, 0.9, 0.95, 1e-8
    grads = gradients(shape, 3, seed=7)
    got = run(
        "normuon",
        shape,
        grads,
        lr=lr,
        momentum=b1,
        beta2=b2,
        eps=eps,
        backend="svd",
        neurons=neurons,
    )
    expected = normuon_reference(grads, shape, axis, lr, b1, b2, eps)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    if shape[0] != shape[1]:  # a square O has unit rows and columns: both axes agree
        other = normuon_reference(grads, shape, -3 - axis, lr, b1, b2, eps)
        assert (got - other).abs().max() > 1e-6


def test_errors_name_the_parameter():
    params = [nn.Parameter(torch.zeros(3, 3))]
    with pytest.raises(ValueError, match=r"neurons='cols' is unknown; use one of \['rows'"):
        steepest.NorMuon(params, neurons="cols")
    with pytest.raises(ValueError, match=r"beta2=1.0 not in \[0, 1\)"):
        steepest.AdaMuon(params, beta2=1.0)
    with pytest.raises(ValueError, match=r"update_rms=0 must be > 0"):
        steepest.AdaMuon(params, update_rms=0)
    with pytest.raises(ValueError, match=r"scale='rms'; adamuon sets the update size"):
        steepest.AdaMuon(params, scale="rms")
    with pytest.raises(ValueError, match=r"sign_momentum='yes' must be True or False"):
        steepest.AdaMuon(params, sign_momentum="yes")


@pytest.mark.parametrize("neurons", ["columns", "auto"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("blocks", [None, [1, 2, 4]])
def test_normuon_axes_stay_finite_at_extreme_magnitudes(neurons, dtype, blocks):
    """The fuzz suite's finite-in, finite-out property for the non-default axes: gradients of
    scale 1e-30 .. the dtype's limit / 100 on (7, 3) and (7, 12) weights, three steps."""
    top = int(math.log10(torch.finfo(dtype).max)) - 2
    for cols in (3, 12):
        for exponent in (-30, 0, min(30, top)):
            p = nn.Parameter(torch.randn(7, cols, dtype=DT).to(dtype))
            group = {"params": [p], "algorithm": "normuon", "blocks": blocks}
            opt = steepest.NorMuon([group], neurons=neurons, weight_decay=0.1)
            for g in gradients((7, cols), 3, seed=exponent + 40):
                p.grad = (g * 10.0**exponent).to(dtype)
                opt.step()
            assert p.isfinite().all(), (neurons, dtype, blocks, cols, exponent)
