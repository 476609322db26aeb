"""Curvature by HVPs on quadratics f(w) = 1/2 w^T H w + <b, w> with H a sum of SPD Kronecker
products: every quantity against its closed form (fp64), the Taylor check exact."""

import pytest
import torch
from diag_helpers import kronecker_spd, quadratic, random_spd

from steepest import diagnostics as dg

TOL = 1e-6


def _problem(seed, m=3, n=4, terms=2):
    g = torch.Generator().manual_seed(seed)
    H, As, Bs = kronecker_spd(m, n, terms, g)
    b = torch.randn(m * n, dtype=torch.float64, generator=g)
    W = torch.randn(m, n, dtype=torch.float64, generator=g).requires_grad_()
    U = torch.randn(m, n, dtype=torch.float64, generator=g)
    return H, As, Bs, b, W, U


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sharpness_and_nds_closed_form(seed):
    H, _, _, b, W, U = _problem(seed)
    loss_fn = quadratic(H, b, [W])
    u = U.reshape(-1)
    uHu = (u @ H @ u).item()
    assert dg.directional_sharpness(loss_fn, [W], [U]) == pytest.approx(uHu, rel=TOL)
    nds = dg.directional_sharpness(loss_fn, [W], [U], normalized=True)
    assert nds == pytest.approx(uHu / (u @ u).item(), rel=TOL)
    (hv,) = dg.hessian_vector_product(loss_fn, [W], [U])
    torch.testing.assert_close(hv.reshape(-1), H @ u, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("lr", [1e-3, 0.1, 2.0])
def test_taylor_check_is_exact_on_quadratic_and_restores(lr):
    H, _, _, b, W, U = _problem(3)
    loss_fn = quadratic(H, b, [W])
    before = W.detach().clone()
    w, u = before.reshape(-1), U.reshape(-1)
    out = dg.taylor_check(loss_fn, [W], [U], lr)
    grad = H @ w + b
    assert out["first_order"] == pytest.approx((grad @ u).item(), rel=TOL)
    assert out["curvature"] == pytest.approx((u @ H @ u).item(), rel=TOL)
    want = -lr * (grad @ u).item() + 0.5 * lr**2 * (u @ H @ u).item()
    assert out["predicted"] == pytest.approx(want, rel=TOL)
    f = lambda x: (0.5 * x @ H @ x + b @ x).item()  # noqa: E731
    assert out["actual"] == pytest.approx(f(w - lr * u) - f(w), rel=TOL)
    # f is quadratic: the second-order prediction is the actual change up to rounding.
    assert abs(out["gap"]) <= 1e-10 * max(1.0, abs(out["actual"]))
    assert torch.equal(W.detach(), before)  # bit-exact restore


def test_taylor_check_restores_when_loss_fn_raises():
    H, _, _, b, W, U = _problem(4)
    inner = quadratic(H, b, [W])
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 2:  # the evaluation at the stepped point
            raise RuntimeError("boom")
        return inner()

    before = W.detach().clone()
    with pytest.raises(RuntimeError, match="boom"):
        dg.taylor_check(flaky, [W], [U], 0.3)
    assert torch.equal(W.detach(), before)


def test_taylor_check_sees_higher_order_terms():
    # f = sum w^4 is not quadratic: the gap must be the (known) third- and fourth-order terms.
    w0 = torch.tensor([0.5, -1.0], dtype=torch.float64)
    W = w0.clone().requires_grad_()
    u = torch.tensor([1.0, 2.0], dtype=torch.float64)
    lr = 0.1
    out = dg.taylor_check(lambda: (W**4).sum(), [W], [u], lr)
    # f(w - t u) = sum (w - t u)^4; third- and fourth-order terms of the expansion in t = lr:
    t = lr
    third = (-4 * w0 * u**3 * t**3).sum().item()
    fourth = (u**4 * t**4).sum().item()
    assert out["gap"] == pytest.approx(third + fourth, rel=1e-9)


def test_layer_split_two_blocks_closed_form():
    g = torch.Generator().manual_seed(5)
    # Two blocks W1 (2 x 3) and W2 (3 x 2); H on the 12 joined entries is a Kronecker sum.
    H = torch.kron(random_spd(3, g), random_spd(4, g)) + torch.kron(
        random_spd(2, g), random_spd(6, g)
    )
    b = torch.randn(12, dtype=torch.float64, generator=g)
    W1 = torch.randn(2, 3, dtype=torch.float64, generator=g).requires_grad_()
    W2 = torch.randn(3, 2, dtype=torch.float64, generator=g).requires_grad_()
    U1 = torch.randn(2, 3, dtype=torch.float64, generator=g)
    U2 = torch.randn(3, 2, dtype=torch.float64, generator=g)
    out = dg.layer_split(quadratic(H, b, [W1, W2]), [W1, W2], [U1, U2])
    u1, u2 = U1.reshape(-1), U2.reshape(-1)
    H11, H12, H22 = H[:6, :6], H[:6, 6:], H[6:, 6:]
    assert out["blocks"][0] == pytest.approx((u1 @ H11 @ u1).item(), rel=TOL)
    assert out["blocks"][1] == pytest.approx((u2 @ H22 @ u2).item(), rel=TOL)
    assert out["cross"] == pytest.approx(2 * (u1 @ H12 @ u2).item(), rel=TOL)
    u = torch.cat([u1, u2])
    assert out["total"] == pytest.approx((u @ H @ u).item(), rel=TOL)
    assert out["within"] + out["cross"] == pytest.approx(out["total"], rel=1e-12)
    # One block holding both tensors: everything is within, nothing is cross.
    merged = dg.layer_split(quadratic(H, b, [W1, W2]), [W1, W2], [U1, U2], blocks=[[0, 1]])
    assert merged["within"] == pytest.approx(out["total"], rel=TOL)
    assert abs(merged["cross"]) <= 1e-10 * abs(out["total"])


def test_layer_hessian_recovers_kronecker_factors():
    H, As, Bs, b, W, _ = _problem(6, m=3, n=2, terms=2)
    Hx = dg.layer_hessian(quadratic(H, b, [W]), W)
    torch.testing.assert_close(Hx, H, rtol=1e-10, atol=1e-10)
    approx = dg.kronecker_approx(Hx, (3, 3), (2, 2), rank=2)
    assert approx.energy[-1].item() == pytest.approx(1.0, abs=1e-10)
    torch.testing.assert_close(dg.kronecker_sum(approx.A, approx.B), H, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="max_numel"):
        dg.layer_hessian(quadratic(H, b, [W]), W, max_numel=5)


def test_bad_inputs_raise():
    H, _, _, b, W, U = _problem(7)
    loss_fn = quadratic(H, b, [W])
    with pytest.raises(ValueError, match=r"direction\[0\] has shape"):
        dg.directional_sharpness(loss_fn, [W], [U.T])
    with pytest.raises(ValueError, match="direction has 2 tensors"):
        dg.directional_sharpness(loss_fn, [W], [U, U])
    with pytest.raises(TypeError, match="list of tensors"):
        dg.directional_sharpness(loss_fn, W, U)
    with pytest.raises(ValueError, match="lr=nan"):
        dg.taylor_check(loss_fn, [W], [U], float("nan"))
    with pytest.raises(ValueError, match="blocks="):
        dg.layer_split(loss_fn, [W], [U], blocks=[[0], [0]])
    with pytest.raises(ValueError, match="does not require grad"):
        dg.directional_sharpness(loss_fn, [W.detach()], [U])
