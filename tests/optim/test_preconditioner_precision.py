"""SOAP and Shampoo in float32 against the same runs in float64 (the oracle), and Shampoo's
eigendecomposition fallback.

Tolerances (relative Frobenius distance of the weights): SOAP's first preconditioned step 1e-3
(measured 6e-5; rotating with a basis fitted to the same gradient gave 14.6), after 10 steps
1e-3 (measured 4e-5; before: 0.65). Shampoo: at most twice pytorch-optimizer's float32 distance
(measured 0.1-0.5x of it; with the threshold k * eps32 * lambda_max 1e-3 on wide matrices,
100x pytorch-optimizer's).
"""

import pytest
import torch

import steepest
from steepest.data import load_mnist
from steepest.optim import eigen


def _gradients(shape, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(steps)]


def _run(preset, dtype, grads, **hyperparameters):
    W = torch.nn.Parameter(torch.zeros(grads[0].shape, dtype=dtype))
    opt = preset([W], **hyperparameters)
    trajectory = []
    for G in grads:
        W.grad = G.to(dtype)
        opt.step()
        trajectory.append(W.detach().double().clone())
    return trajectory


def _distance(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def test_soap_first_call_only_initializes_and_float32_follows_float64():
    grads = _gradients((48, 48), 10)
    single = _run(steepest.SOAP, torch.float32, grads, lr=1.0)
    double = _run(steepest.SOAP, torch.float64, grads, lr=1.0)
    assert torch.equal(single[0], torch.zeros(48, 48, dtype=torch.float64))
    assert torch.equal(double[0], torch.zeros(48, 48, dtype=torch.float64))
    assert _distance(single[1], double[1]) < 1e-3  # the first preconditioned step
    assert _distance(single[-1], double[-1]) < 1e-3
    # the first Adam step in the previous basis is an Adam first step: entries +-lr
    rotated = torch.linalg.eigh(grads[0] @ grads[0].T).eigenvectors
    right = torch.linalg.eigh(grads[0].T @ grads[0]).eigenvectors
    inner = rotated.T @ grads[1] @ right
    expected = -(rotated @ (inner / (inner.abs() + 1e-8)) @ right.T)
    torch.testing.assert_close(double[1], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape, steps", [((48, 48), 10), ((32, 64), 10), ((128, 32), 10)])
def test_shampoo_float32_is_as_close_to_float64_as_pytorch_optimizer(shape, steps):
    pytorch_optimizer = pytest.importorskip(
        "pytorch_optimizer", reason="pytorch-optimizer is a test dependency (pyproject [test])"
    )
    grads = _gradients(shape, steps)
    ours = {
        dtype: _run(steepest.Shampoo, dtype, grads, lr=0.1, epsilon=1e-12, scale=1.0)[-1]
        for dtype in (torch.float32, torch.float64)
    }

    def theirs(dtype):
        W = torch.nn.Parameter(torch.zeros(shape, dtype=dtype))
        opt = pytorch_optimizer.Shampoo([W], lr=0.1, matrix_eps=1e-12)
        for G in grads:
            W.grad = G.to(dtype).clone()  # it preconditions the gradient in place
            opt.step()
        return W.detach().double()

    peer = _distance(theirs(torch.float32), theirs(torch.float64))
    assert _distance(ours[torch.float32], ours[torch.float64]) <= 2 * peer


def test_shampoo_defaults_train_an_mnist_mlp_without_raising():
    """784-128-64-10, batch 128, steepest.Shampoo's defaults: the first layer's R (784 x 784,
    many always-zero pixels) made float32 eigh raise "ill-conditioned" on the second step.
    Now 4 steps run and lower the loss on a fixed batch of 1000 images."""
    images, labels = load_mnist()
    X = torch.from_numpy(images.reshape(len(images), -1).astype("float32") / 255.0)
    y = torch.from_numpy(labels.astype("int64"))
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )
    opt = steepest.Shampoo(model.parameters())
    g = torch.Generator().manual_seed(0)

    def held_out_loss():
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(model(X[:1000]), y[:1000]).item()

    before = held_out_loss()
    for _ in range(4):
        batch = torch.randint(1000, len(X), (128,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(X[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert held_out_loss() < before


def test_failed_eigendecompositions_keep_the_previous_root(monkeypatch):
    W = torch.nn.Parameter(torch.zeros(6, 4, dtype=torch.float64))
    opt = steepest.Shampoo([W], lr=0.1, scale=1.0)
    grads = _gradients((6, 4), 2)
    W.grad = grads[0].clone()
    opt.step()
    state = opt.state[W]
    roots = {key: state[key].clone() for key in ("left_root", "right_root")}
    before = W.detach().clone()

    def broken(A, *args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "eigh", broken)
    W.grad = grads[1].clone()
    opt.step()  # no exception
    for key, root in roots.items():
        assert torch.equal(state[key], root)
    expected = before - 0.1 * roots["left_root"] @ grads[1] @ roots["right_root"]
    torch.testing.assert_close(W.detach(), expected, rtol=1e-12, atol=1e-12)


def test_symmetric_eigh_retries_in_float64_with_a_jitter(monkeypatch):
    A = torch.randn(5, 5, dtype=torch.float64)
    A = A @ A.T
    exact = torch.linalg.eigvalsh(A)
    real = torch.linalg.eigh
    calls = []

    def flaky(M, *args, **kwargs):  # fails without a jitter, as on repeated eigenvalues
        calls.append(M.clone())
        if torch.equal(M, A.float()) or torch.equal(M, A):
            raise torch.linalg.LinAlgError("did not converge")
        return real(M, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", flaky)
    lam, Q = eigen.symmetric_eigh(A.float())
    assert lam.dtype == torch.float32 and len(calls) >= 3
    torch.testing.assert_close(lam.double(), exact, rtol=1e-5, atol=1e-5 * exact[-1].item())
    torch.testing.assert_close((Q * lam) @ Q.T, A.float(), rtol=1e-4, atol=1e-4 * exact[-1].item())
    assert eigen.symmetric_eigh(torch.full((3, 3), float("nan"))) is None
