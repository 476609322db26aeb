"""update_stats on steps with known answers (SGD, an exact spectral step), smoothness estimates on
linear gradient maps; oracles are numpy norms and closed forms."""

import math

import numpy as np
import pytest
import torch

from steepest import diagnostics as dg
from steepest.polar import msign


def _model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)
    ).double()


def _backward(model, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 5, dtype=torch.float64, generator=g)
    model(x).square().mean().backward()


def test_sgd_step_stats():
    model = _model(0)
    _backward(model, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = dg.snapshot(model.named_parameters())
    opt.step()
    stats = dg.update_stats(model.named_parameters(), before)
    assert set(stats) == {name for name, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        s, g = stats[name], p.grad.numpy()
        assert s["effective_lr"] == pytest.approx(0.05, rel=1e-12)
        assert s["angle_deg"] == pytest.approx(0.0, abs=1e-5)
        assert s["update_rms"] == pytest.approx(0.05 * np.linalg.norm(g) / math.sqrt(g.size))
        w0 = before[name].numpy()
        assert s["relative_size"] == pytest.approx(0.05 * np.linalg.norm(g) / np.linalg.norm(w0))
        if p.ndim == 2:
            assert s["grad_dual_norm"] == pytest.approx(np.linalg.norm(g, "nuc"), rel=1e-12)
            assert s["update_spectral"] == pytest.approx(0.05 * np.linalg.norm(g, 2), rel=1e-10)
        else:
            assert s["grad_dual_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-12)


def test_spectral_step_stats():
    # W <- W - lr * msign(G), exact SVD polar factor:
    # <G, msign G> = ||G||_* and ||msign G||_F^2 = rank.
    g = torch.Generator().manual_seed(2)
    W = torch.randn(6, 4, dtype=torch.float64, generator=g)
    G = torch.randn(6, 4, dtype=torch.float64, generator=g)
    before = dg.snapshot({"w": W})
    lr = 0.02
    after = {"w": W - lr * msign(G, backend="svd")}
    stats = dg.update_stats(after, before, grads={"w": G})["w"]
    nuc, fro = np.linalg.norm(G.numpy(), "nuc"), np.linalg.norm(G.numpy())
    cosine = nuc / (fro * 2.0)  # sqrt(rank) = 2
    assert stats["cosine"] == pytest.approx(cosine, rel=1e-10)
    assert stats["angle_deg"] == pytest.approx(math.degrees(math.acos(cosine)), rel=1e-10)
    assert stats["effective_lr"] == pytest.approx(lr * 2.0 / fro, rel=1e-10)
    assert stats["update_spectral"] == pytest.approx(lr, rel=1e-10)
    dW = after["w"] - W
    assert dg.orthogonality_gap(dW, normalize=True).item() < 1e-10
    assert stats["update_orthogonality_gap"] < 1e-10
    assert stats["update_stable_rank"] == pytest.approx(4.0, rel=1e-10)
    s = np.linalg.svd(G.numpy(), compute_uv=False)
    assert stats["grad_stable_rank"] == pytest.approx(np.sum(s**2) / s[0] ** 2, rel=1e-10)
    assert stats["grad_nuclear_rank"] == pytest.approx(nuc**2 / fro**2, rel=1e-10)


def test_update_stats_errors():
    W = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="no entry"):
        dg.update_stats({"a": W}, {"b": W})
    with pytest.raises(TypeError, match="snapshot"):
        dg.update_stats({"a": W}, [W])
    with pytest.raises(TypeError, match="wrap one tensor"):
        dg.snapshot(W)
    with pytest.raises(ValueError, match="shape"):
        dg.update_stats({"a": W}, {"a": torch.zeros(3)})


def test_smoothness_estimates_on_linear_gradient_map():
    # grad f(W) = A W for f = 1/2 tr(W^T A W): L = ||A||_2, attained along A's top eigenvector.
    g = torch.Generator().manual_seed(3)
    Z = torch.randn(5, 5, dtype=torch.float64, generator=g)
    A = Z @ Z.T + torch.eye(5, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(A)
    x = torch.randn(3, dtype=torch.float64, generator=g)
    W0 = torch.randn(5, 3, dtype=torch.float64, generator=g)
    W1 = W0 + torch.outer(evecs[:, -1], x)
    est = dg.smoothness_estimates(W0, W1, A @ W0, A @ W1)
    assert est["frobenius_smoothness"].item() == pytest.approx(evals[-1].item(), rel=1e-10)
    assert est["spectral_smoothness"].item() == pytest.approx(evals[-1].item(), rel=1e-10)
    # A generic step, batched: against numpy, and L_est never exceeds ||A||_2.
    W1 = W0 + torch.randn(2, 5, 3, dtype=torch.float64, generator=g)
    est = dg.smoothness_estimates(W0.expand(2, 5, 3), W1, (A @ W0).expand(2, 5, 3), A @ W1)
    for i in range(2):
        dW, dG = (W1[i] - W0).numpy(), (A @ (W1[i] - W0)).numpy()
        L = np.linalg.norm(dG) / np.linalg.norm(dW)
        J = np.linalg.norm(dG, "nuc") / np.linalg.norm(dW, 2)
        assert est["frobenius_smoothness"][i].item() == pytest.approx(L, rel=1e-10)
        assert est["spectral_smoothness"][i].item() == pytest.approx(J, rel=1e-10)
        assert est["ratio"][i].item() == pytest.approx(J / L, rel=1e-10)
        assert L <= evals[-1].item() * (1 + 1e-12)
    G = A @ W1
    ratio = dg.muon_advantage_ratio(G, est["frobenius_smoothness"], est["spectral_smoothness"])
    nuc = np.linalg.norm(G.numpy(), "nuc", axis=(-2, -1))
    fro = np.linalg.norm(G.numpy(), "fro", axis=(-2, -1))
    want = nuc**2 / fro**2 / est["ratio"].numpy()
    np.testing.assert_allclose(ratio.numpy(), want, rtol=1e-10)
    same = dg.smoothness_estimates(W0, W0, W0, W0)
    assert math.isnan(same["frobenius_smoothness"].item())
    with pytest.raises(ValueError, match="shapes differ"):
        dg.smoothness_estimates(W0, W0, W0, W0.T)


def test_stacked_expert_weights_are_read_as_the_optimizers_batch_of_matrices():
    """A 3-D (experts, m, n) weight is a batch of matrices, as the optimizers read it
    (steepest.matrices): the update's spectral norm is the largest over the experts, its
    stable rank that of their block-diagonal matrix (SVD oracle per expert), not of the
    (experts, m n) reshape."""
    import steepest.diagnostics as dg

    gen = torch.Generator().manual_seed(3)
    W = torch.randn(4, 6, 5, dtype=torch.float64, generator=gen)
    before = dg.snapshot({"experts": W})
    W.add_(
        torch.randn(4, 6, 5, dtype=torch.float64, generator=gen)
        * torch.tensor([1.0, 3.0, 0.5, 2.0]).view(4, 1, 1)
    )
    stats = dg.update_stats({"experts": W}, before, grads={"experts": None})["experts"]
    dW = W - before["experts"]
    s = torch.linalg.svdvals(dW).flatten()  # every expert's singular values
    assert stats["update_spectral"] == pytest.approx(s.max().item(), rel=1e-12)
    stable = (s.square().sum() / s.max().square()).item()
    assert stats["update_stable_rank"] == pytest.approx(stable, rel=1e-12)
    flat = torch.linalg.svdvals(dW.reshape(4, -1))  # the reshape read: a different number
    assert abs(flat.max().item() - s.max().item()) > 1e-3
    assert dg.matrix_view(W).shape == (4, 6, 5)
