"""Monitor on a least-squares linear model (quadratic loss, so every value has a closed form)."""

import json

import numpy as np
import pytest
import torch

from steepest import diagnostics as dg
from steepest.diagnostics import Monitor


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(32, 6, dtype=torch.float64, generator=g)
    Y = torch.randn(32, 4, dtype=torch.float64, generator=g)
    torch.manual_seed(seed)
    model = torch.nn.Linear(6, 4, bias=False).double()
    return model, X, Y


def _train(model, X, Y, steps, monitor=None, lr=0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    if monitor is not None:
        monitor = monitor(model, opt)
    history = [model.weight.detach().clone()]
    grads = []

    def loss_fn():
        return 0.5 * (model(X) - Y).square().sum() / X.shape[0]

    for _ in range(steps):
        loss_fn().backward()
        grads.append(model.weight.grad.detach().clone())
        opt.step()
        if monitor is not None:
            monitor.step(loss_fn=loss_fn)
        opt.zero_grad()
        history.append(model.weight.detach().clone())
    if monitor is not None:
        monitor.close()
    return history, grads, loss_fn


def test_monitor_records_closed_forms(tmp_path):
    path = tmp_path / "m.jsonl"
    model, X, Y = _setup()
    make = lambda m, o: Monitor(m, o, every=10, metrics=tuple(dg.METRICS), path=path)  # noqa: E731
    history, grads, _ = _train(model, X, Y, 25, make)
    # The monitor must not perturb training: same iterates as a run without it, bit for bit.
    model2, _, _ = _setup()
    history2, _, _ = _train(model2, X, Y, 25)
    assert all(torch.equal(a, b) for a, b in zip(history, history2, strict=True))

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 1, 10, 11, 20, 21]
    A = (X.T @ X / X.shape[0]).numpy()  # grad W = (W X^T X - Y^T X) / N: H = I (x) A
    for rec in lines:
        t = rec["step"]
        if t % 10 == 0:
            assert rec["lr/0"] == 0.1
            assert rec["weight/effective_lr"] == pytest.approx(0.1, rel=1e-10)
            G = grads[t].numpy()
            assert rec["weight/grad_dual_norm"] == pytest.approx(np.linalg.norm(G, "nuc"))
            s = np.linalg.svd(G, compute_uv=False)
            assert rec["weight/grad_stable_rank"] == pytest.approx(np.sum(s**2) / s[0] ** 2)
            assert rec["weight/grad_nuclear_rank"] == pytest.approx(np.sum(s) ** 2 / np.sum(s**2))
            p = s / s.sum()
            assert rec["weight/grad_effective_rank"] == pytest.approx(
                np.exp(-np.sum(p * np.log(p)))
            )
            su = np.linalg.svd((history[t + 1] - history[t]).numpy(), compute_uv=False)
            assert rec["weight/update_stable_rank"] == pytest.approx(np.sum(su**2) / su[0] ** 2)
            assert rec["weight/update_orthogonality_gap"] == pytest.approx(1 - su[-1] / su[0])
            # Taylor check of W_t -> W_{t+1}: exact on a quadratic; actual from the iterates.
            u = (history[t] - history[t + 1]).numpy()
            uHu = np.sum(u * (u @ A))
            assert rec["taylor/curvature"] == pytest.approx(uHu, rel=1e-8)
            assert rec["taylor/first_order"] == pytest.approx(np.sum(G * u), rel=1e-8)
            assert abs(rec["taylor/gap"]) < 1e-10
            assert rec["curvature/total"] == pytest.approx(uHu, rel=1e-8)
            assert "weight/frobenius_smoothness" not in rec
        else:  # smoothness between W_{t-1} and W_t with their gradients
            dW = (history[t] - history[t - 1]).numpy()
            dG = (grads[t] - grads[t - 1]).numpy()
            np.testing.assert_allclose(dG, dW @ A, atol=1e-12)
            L = np.linalg.norm(dG) / np.linalg.norm(dW)
            J = np.linalg.norm(dG, "nuc") / np.linalg.norm(dW, 2)
            assert rec["weight/frobenius_smoothness"] == pytest.approx(L, rel=1e-8)
            assert rec["weight/spectral_smoothness"] == pytest.approx(J, rel=1e-8)
            assert L <= np.linalg.eigvalsh(A)[-1] * (1 + 1e-10)
            G = grads[t - 1].numpy()  # Shen et al.'s ratio uses the gradient at W_{t-1}
            ratio = np.linalg.norm(G, "nuc") ** 2 / np.linalg.norm(G) ** 2 * L / J
            assert rec["weight/muon_advantage"] == pytest.approx(ratio, rel=1e-8)


def test_monitor_without_loss_fn_and_every_one(tmp_path):
    path = tmp_path / "m.jsonl"
    model, X, Y = _setup(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with Monitor(model, opt, every=1, metrics=("update", "taylor"), path=path) as monitor:
        for _ in range(3):
            (model(X) - Y).square().mean().backward()
            opt.step()
            rec = monitor.step()
            opt.zero_grad()
            assert "taylor/gap" not in rec  # taylor needs loss_fn
    assert len(path.read_text().splitlines()) == 3


def test_monitor_bad_inputs(tmp_path):
    model, _, _ = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "never.jsonl"
    with pytest.raises(ValueError, match="every=0"):
        Monitor(model, opt, every=0, path=path)
    with pytest.raises(ValueError, match="nds"):
        Monitor(model, opt, metrics=("nds",), path=path)
    with pytest.raises(TypeError, match="tuple of names"):
        Monitor(model, opt, metrics="update", path=path)
    other = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="param_groups"):
        Monitor(model, other, path=path)
    assert not path.exists()  # nothing written before the checks pass
