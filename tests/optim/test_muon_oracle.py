"""One and two Muon steps against a hand-computed update with a float64 numpy SVD as the oracle.

Oracle: M1 = (1 - b) G1, M2 = b M1 + (1 - b) G2, D = (1 - b) G2 + b M2 (Nesterov),
W2 = (1 - lr wd) W1 - lr * scale(m, n) * U V^T per matrix of D's matrix view
(Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and Non-Riemannian
Manifolds" (2025), Alg. 1; Condition 1). Tolerance 1e-5 (float32 storage).
"""

import math

import numpy as np
import pytest
import torch

import steepest
from steepest.optim import Steepest, map_stacked


def polar_np(D):
    """U V^T of each (m, n) matrix of a (k, m, n) float64 array (numpy SVD)."""
    U, _, Vt = np.linalg.svd(D, full_matrices=False)
    return U @ Vt


def oracle_step(w, d, lr, wd, scale_of, view_shape, blocks=None):
    """(1 - lr wd) w - lr * scale * msign of d under a matrix view, all in float64 numpy."""
    X = d.reshape(view_shape)
    X = X.reshape(-1, *X.shape[-2:])
    parts = np.split(X, np.cumsum(blocks)[:-1], axis=1) if blocks else [X]
    out = np.concatenate([scale_of(*P.shape[-2:]) * polar_np(P) for P in parts], axis=1)
    return (1 - lr * wd) * w - lr * out.reshape(w.shape)


CASES = [  # shape, matrix view of the oracle, group keys
    ((6, 4), (6, 4), {}),
    ((3, 8), (3, 8), {}),
    ((4, 3, 2, 2), (4, 12), {}),  # conv: (out, in * kh * kw)
    ((3, 5, 4), (3, 5, 4), {}),  # stacked experts: a batch of (5, 4)
    ((4, 3, 5), (4, 15), {"matrix_view": "flatten"}),  # conv1d
    ((12, 4), (3, 4, 4), {"matrix_view": (3, 4, 4)}),  # per head
]
SCALES = {
    "spectral": lambda m, n: math.sqrt(m / n),
    "jordan": lambda m, n: math.sqrt(max(1.0, m / n)),
    "rms": lambda m, n: 0.2 * math.sqrt(max(m, n)),
    0.7: lambda m, n: 0.7,
}


@pytest.mark.parametrize("shape, view, keys", CASES)
@pytest.mark.parametrize("scale", list(SCALES))
def test_two_steps_match_svd_oracle(shape, view, keys, scale):
    gen = torch.Generator().manual_seed(1)
    w0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    g1, g2 = (torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(2))
    lr, b, wd = 0.05, 0.9, 0.1
    p = torch.nn.Parameter(w0.float())
    group = {"params": [p], "algorithm": "muon", **keys}
    opt = steepest.Muon([group], lr=lr, momentum=b, weight_decay=wd, backend="svd", scale=scale)
    for g in (g1, g2):
        p.grad = g.float()
        opt.step()
    G1, G2, W0 = g1.numpy(), g2.numpy(), w0.numpy()
    W1 = oracle_step(W0, G1 * (1 - b) + b * (1 - b) * G1, lr, wd, SCALES[scale], view)
    M2 = b * (1 - b) * G1 + (1 - b) * G2
    W2 = oracle_step(W1, (1 - b) * G2 + b * M2, lr, wd, SCALES[scale], view)
    np.testing.assert_allclose(p.detach().double().numpy(), W2, atol=1e-5, rtol=0)


def test_blocks_and_stacking_match_oracle():
    """A fused QKV weight split in row blocks and two same-shape matrices in one group (one
    stacked msign call) each get their own polar factor; without momentum, one step."""
    gen = torch.Generator().manual_seed(2)
    qkv = torch.nn.Parameter(torch.randn(9, 4, generator=gen))
    a, b = (torch.nn.Parameter(torch.randn(5, 3, generator=gen)) for _ in range(2))
    groups = [
        {"params": [qkv], "algorithm": "muon", "blocks": [3, 2, 4]},
        {"params": [a, b], "algorithm": "muon"},
    ]
    before = [t.detach().double().numpy().copy() for t in (qkv, a, b)]
    grads = [torch.randn(t.shape, generator=gen) for t in (qkv, a, b)]
    for t, g in zip((qkv, a, b), grads, strict=True):
        t.grad = g
    calls = []

    def counting_svd(X, steps):  # a callable backend sees each stack once
        calls.append(tuple(X.shape))
        return torch.from_numpy(polar_np(X.double().numpy())).to(X.dtype)

    opt = steepest.Muon(groups, lr=0.1, momentum=0.0, backend="svd")
    opt.step()
    rule = SCALES["spectral"]
    expect = [
        oracle_step(before[0], grads[0].double().numpy(), 0.1, 0.0, rule, (9, 4), [3, 2, 4]),
        oracle_step(before[1], grads[1].double().numpy(), 0.1, 0.0, rule, (5, 3)),
        oracle_step(before[2], grads[2].double().numpy(), 0.1, 0.0, rule, (5, 3)),
    ]
    for t, e in zip((qkv, a, b), expect, strict=True):
        np.testing.assert_allclose(t.detach().double().numpy(), e, atol=1e-5, rtol=0)
    # stacking: the two (5, 3) matrices of group 2 reach the backend as one (2, 5, 3) stack
    opt2 = Steepest([{"params": [a, b], "algorithm": "muon"}], {"muon": {"backend": counting_svd}})
    opt2.step()
    assert calls == [(2, 3, 5)]  # msign hands wide (rows <= cols) stacks to a callable


def test_map_stacked_groups_by_shape_dtype():
    mats = [torch.ones(2, 3), torch.ones(4, 2, 3), torch.ones(3, 2), torch.ones(2, 3).double()]
    seen = []
    out = map_stacked(lambda X: seen.append(tuple(X.shape)) or X * 2, mats)
    assert sorted(seen) == [(1, 2, 3), (1, 3, 2), (5, 2, 3)]
    assert all(torch.equal(o, 2 * m) for o, m in zip(out, mats, strict=True))


@pytest.mark.parametrize("fused", [None, True])
def test_adamw_groups_match_torch_adamw_exactly(fused):
    gen = torch.Generator().manual_seed(3)
    w0 = [torch.randn(7, generator=gen), torch.randn((), generator=gen)]
    grads = [[torch.randn(w.shape, generator=gen) for w in w0] for _ in range(4)]
    hp = dict(lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.05)
    ours = [torch.nn.Parameter(w.clone()) for w in w0]
    theirs = [torch.nn.Parameter(w.clone()) for w in w0]
    opt_ours = steepest.Muon(
        ours,
        adamw_lr=0.01,
        adamw_betas=(0.8, 0.9),
        adamw_eps=1e-6,
        adamw_weight_decay=0.05,
        adamw_fused=fused,
    )
    opt_theirs = torch.optim.AdamW(theirs, **hp, fused=fused)
    for gs in grads:
        for o, t, g in zip(ours, theirs, gs, strict=True):
            o.grad, t.grad = g.clone(), g.clone()
        opt_ours.step()
        opt_theirs.step()
    assert all(torch.equal(o, t) for o, t in zip(ours, theirs, strict=True))
    assert (
        all(o.grad is not None for o in ours) and opt_ours.param_groups[0]["algorithm"] == "adamw"
    )
