"""Shampoo, CASPR and SOAP at extreme gradient magnitudes (their statistics are quadratic in G).

G G^T overflows float32 for |G| above about 1e19 and underflows below 1e-19; the statistics
are kept divided by s^2, s the running max |G| (steepest/optim/gram.py). Oracles:
* each step is invariant to (G, epsilon) -> (c G, c^2 epsilon) (Shampoo, CASPR: epsilon is
  added to G G^T) or (c G, c eps) (SOAP: eps is added to sqrt(V)), so the step on 2^k G
  (k = +-100: 1.3e30, 7.9e-31) must equal the step on G (powers of two scale exactly);
* over steps whose gradient sizes differ by 1e8, float64 steps equal numpy float64 formulas
  that form G G^T directly (they fit in float64), which checks the rescaling of the stored
  statistics when s grows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import steepest
from steepest.optim.registry import ALGORITHMS


def scaled_epsilon(name: str, c: float) -> dict[str, object]:
    """The default epsilon of `name` for gradients multiplied by c (see the docstring)."""
    if name == "soap":
        return {"eps": 1e-8 * c, "precondition_every": 1}
    return {"epsilon": ALGORITHMS[name].defaults["epsilon"] * c**2}


def steps(name: str, grads: list[torch.Tensor], **hp: object) -> torch.Tensor:
    p = torch.nn.Parameter(torch.ones(grads[0].shape, dtype=grads[0].dtype))
    opt = steepest.optimizer(name, [p], lr=0.1, scale=1.0, **hp)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


@pytest.mark.parametrize("name", ["caspr", "shampoo", "soap"])
@pytest.mark.parametrize("k", [-100, 100])
@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 5)])
def test_step_is_invariant_to_gradient_scale_beyond_gram_range(name, k, shape):
    gen = torch.Generator().manual_seed(7)
    grads = [torch.randn(shape, generator=gen) for _ in range(3)]
    big = [g * 2.0**k for g in grads]
    gram = big[0] @ big[0].mT
    assert bool((gram.isinf() | (gram == 0)).any())  # formed directly, G G^T over/underflows
    reference = steps(name, grads, **scaled_epsilon(name, 1.0))
    got = steps(name, big, **scaled_epsilon(name, 2.0**k))
    assert got.isfinite().all()
    assert not torch.equal(got, torch.ones(shape))
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)


def _root(A: np.ndarray) -> np.ndarray:
    lam, Q = np.linalg.eigh(A)
    keep = lam > lam.max() * 1e-12
    return (Q * np.where(keep, np.clip(lam, 1e-300, None) ** -0.25, 0)) @ Q.T


def test_shampoo_with_growing_gradient_scale_matches_numpy():
    """Three accumulated steps with |G| ~ 1e-4, 1, 1e4: Delta_t = L_t^(-1/4) G_t R_t^(-1/4),
    L_t = sum G G^T formed in numpy float64; tolerance 1e-9."""
    gen = torch.Generator().manual_seed(8)
    grads = [torch.randn(4, 6, generator=gen, dtype=torch.float64) * c for c in (1e-4, 1, 1e4)]
    got = steps("shampoo", grads, epsilon=0.0)
    W, L, R = np.ones((4, 6)), np.zeros((4, 4)), np.zeros((6, 6))
    for g in grads:
        G = g.numpy()
        L, R = L + G @ G.T, R + G.T @ G
        W = W - 0.1 * _root(L) @ G @ _root(R)
    np.testing.assert_allclose(got.numpy(), W, rtol=0, atol=1e-6)


def test_soap_with_growing_gradient_scale_matches_numpy():
    """SOAP (arXiv 2409.11321, Alg. 3, in the order of its authors' implementation: rotate
    with the previous basis, then update L, R and the basis) over |G| ~ 1e-4, 1, 1e4, 1e4 with
    the basis refreshed every step, against numpy float64 with G G^T and V formed directly.
    The first call only fits the statistics; square gradients make L and R full rank from it
    (the basis of a null space is arbitrary). Tolerance 1e-6 on |W| ~ 1."""
    b1, b2, eps, lr = 0.9, 0.95, 1e-3, 0.1
    gen = torch.Generator().manual_seed(9)
    scales = (1e-4, 1, 1e4, 1e4)
    grads = [torch.randn(5, 5, generator=gen, dtype=torch.float64) * c for c in scales]
    got = steps("soap", grads, betas=(b1, b2), eps=eps, precondition_every=1)
    W = np.ones((5, 5))
    L, R, M, V = np.zeros((5, 5)), np.zeros((5, 5)), np.zeros((5, 5)), np.zeros((5, 5))
    QL = QR = None
    for t, g in enumerate(grads):
        G = g.numpy()
        if t > 0:
            M = b1 * M + (1 - b1) * G
            V = b2 * V + (1 - b2) * (QL.T @ G @ QR) ** 2
            step = (QL.T @ M @ QR / (1 - b1**t)) / (np.sqrt(V / (1 - b2**t)) + eps)
            W = W - lr * QL @ step @ QR.T
        L, R = b2 * L + (1 - b2) * G @ G.T, b2 * R + (1 - b2) * G.T @ G
        QL, QR = np.linalg.eigh(L)[1], np.linalg.eigh(R)[1]
    np.testing.assert_allclose(got.numpy(), W, rtol=0, atol=1e-6)
