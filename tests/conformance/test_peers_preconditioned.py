"""Shampoo against pytorch-optimizer (float64), SOAP against the published order (a reference
written here from the paper's equations, float64) and against pytorch-optimizer's SOAP while
both keep their first basis (float64)."""

import pytest
import torch
from conformance_helpers import FLOAT64, gap, peer, run, start, stream

import steepest

SQUARE = [(12, 12), (20, 20)]  # L and R full rank from the first gradient (see SOAP below)


def test_shampoo_pytorch_optimizer_float64():
    """pytorch_optimizer.Shampoo(momentum=0): L = eps I + sum G G^T, R likewise, update
    L^(-1/4) G R^(-1/4) refreshed every step; steepest adds eps at the root, the same matrix."""
    po = peer("pytorch_optimizer", "pytorch-optimizer")
    shapes = [(12, 20), (20, 12), (16, 16)]
    w0, grads = start(shapes), stream(shapes, 6)
    theirs = run(lambda ps: po.Shampoo(ps, lr=0.1, matrix_eps=1e-6), w0, grads, torch.float64)
    ours = run(
        lambda ps: steepest.Shampoo(ps, lr=0.1, epsilon=1e-6, scale=1.0), w0, grads, torch.float64
    )
    assert gap(w0, ours, theirs) < FLOAT64


def _soap_reference(w0, grads, lr, betas, eps, every):
    """SOAP (Vyas et al., arXiv 2409.11321, Alg. 3) in the order of the authors' code, float64:
    call 0 fits L, R and the eigenbases; each later call t: M, V (G rotated with the previous
    basis), N = Q_L [(Q_L^T M Q_R / (1 - b1^t)) / (sqrt(V / (1 - b2^t)) + eps)] Q_R^T, W -= lr N,
    then L, R and (when t % every == 0) the bases by eigendecomposition."""
    b1, b2 = betas
    out = []
    for i, w in enumerate(w0):
        W = w.clone()
        m, n = W.shape
        L, R = torch.zeros(m, m, dtype=W.dtype), torch.zeros(n, n, dtype=W.dtype)
        M, V = torch.zeros_like(W), torch.zeros_like(W)
        QL = QR = torch.eye(m, dtype=W.dtype)  # replaced at call 0, before any use
        for t, step in enumerate(grads):
            G = step[i]
            if t > 0:
                M = b1 * M + (1 - b1) * G
                V = b2 * V + (1 - b2) * (QL.T @ G @ QR) ** 2
                N = QL @ ((QL.T @ M @ QR / (1 - b1**t)) / ((V / (1 - b2**t)).sqrt() + eps)) @ QR.T
                W = W - lr * N
            L, R = b2 * L + (1 - b2) * G @ G.T, b2 * R + (1 - b2) * G.T @ G
            if t % every == 0:
                QL, QR = torch.linalg.eigh(L).eigenvectors, torch.linalg.eigh(R).eigenvectors
        out.append(W)
    return out


@pytest.mark.parametrize("every", [1, 3])
def test_soap_published_order_float64(every):
    w0, grads = start(SQUARE), stream(SQUARE, 7)
    hp = dict(lr=0.01, betas=(0.9, 0.95), eps=1e-8)
    reference = _soap_reference(w0, grads, hp["lr"], hp["betas"], hp["eps"], every)
    ours = run(
        lambda ps: steepest.SOAP(ps, **hp, precondition_every=every), w0, grads, torch.float64
    )
    assert gap(w0, ours, reference) < FLOAT64


def test_soap_pytorch_optimizer_float64_first_basis():
    """pytorch_optimizer.SOAP skips its first step and rotates with the previous basis, like
    steepest; it refreshes the basis by one power iteration and a QR (steepest: eigh), so the
    runs are compared while both keep the first basis (precondition_frequency beyond the
    stream). Its eps is added to sqrt(V) before the bias corrections (steepest's after): eps=0
    here. weight_decay=0: it decays after the update (steepest before)."""
    po = peer("pytorch_optimizer", "pytorch-optimizer")
    w0, grads = start(SQUARE), stream(SQUARE, 6)
    theirs = run(
        lambda ps: po.SOAP(
            ps,
            lr=0.01,
            betas=(0.9, 0.95),
            eps=0.0,
            weight_decay=0.0,
            precondition_frequency=100,
        ),
        w0,
        grads,
        torch.float64,
    )
    ours = run(
        lambda ps: steepest.SOAP(ps, lr=0.01, betas=(0.9, 0.95), eps=0.0, precondition_every=100),
        w0,
        grads,
        torch.float64,
    )
    assert gap(w0, ours, theirs) < FLOAT64
