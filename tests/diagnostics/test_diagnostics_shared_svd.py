"""The shared-SVD paths (batched_singular_values, update_stats, the Monitor's smoothness lines)
against the one-matrix functions and numpy's fp64 SVD."""

import json

import numpy as np
import pytest
import torch

from steepest import diagnostics as dg
from steepest.diagnostics import Monitor

# Equal, transposed and batched shapes, so groups are shared, transposed and padded.
SHAPES = [(5, 3), (3, 5), (5, 3), (4, 4), (2, 3, 6), (1, 7), (6, 1)]


def _svd64(X):
    return np.linalg.svd(X.detach().double().numpy(), compute_uv=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_batched_singular_values_match_numpy(dtype):
    g = torch.Generator().manual_seed(0)
    matrices = [torch.randn(*s, generator=g).to(dtype) for s in SHAPES]
    got = dg.batched_singular_values(matrices)
    # bfloat16 is decomposed in float32: compare with the SVD of the rounded values. A backward
    # stable SVD errs by about eps * sigma_max in every singular value.
    eps = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps
    for X, s in zip(matrices, got, strict=True):
        assert s.shape == X.shape[:-2] + (min(X.shape[-2:]),)
        assert s.dtype == (torch.float32 if dtype == torch.bfloat16 else dtype)
        want = _svd64(X)
        atol = 20 * eps * want.max()
        np.testing.assert_allclose(s.double().numpy(), want, rtol=20 * eps, atol=atol)
        torch.testing.assert_close(s, dg.singular_values(X))
    with pytest.raises(TypeError, match="list of tensors"):
        dg.batched_singular_values(matrices[0])
    with pytest.raises(ValueError, match=r"matrices\[1\]"):
        dg.batched_singular_values([matrices[0], torch.ones(3)])


def _model_and_step(dtype, seed=1):
    """A few same- and different-shape parameters after one SGD step; one has no gradient."""
    torch.manual_seed(seed)
    params = {
        "a": torch.randn(6, 4, dtype=dtype),
        "b": torch.randn(6, 4, dtype=dtype),
        "c": torch.randn(4, 6, dtype=dtype),
        "conv": torch.randn(3, 2, 2, 2, dtype=dtype),
        "bias": torch.randn(5, dtype=dtype),
        "frozen": torch.randn(3, 3, dtype=dtype),
    }
    before = dg.snapshot(params)
    grads = {n: torch.randn_like(p) for n, p in params.items() if n != "frozen"}
    # A rank-one update for "a", an exactly orthogonal one for "c": edge values of the ranks.
    updates = {n: -0.1 * torch.randn_like(p) for n, p in params.items()}
    updates["a"] = torch.outer(torch.arange(1.0, 7.0), torch.ones(4)).to(dtype)
    updates["c"] = torch.linalg.qr(torch.randn(6, 4, dtype=torch.float64))[0].T.to(dtype)
    after = {n: p + updates[n] for n, p in params.items()}
    return after, before, grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_update_stats_equal_the_one_matrix_functions(dtype):
    after, before, grads = _model_and_step(dtype)
    stats = dg.update_stats(after, before, grads=grads)
    rtol = 1e-10 if dtype == torch.float64 else 1e-4
    for name, W in after.items():
        st = stats[name]
        dW64 = (W.double() - before[name].double()).numpy()
        assert st["update_rms"] == pytest.approx(
            np.linalg.norm(dW64) / np.sqrt(W.numel()), rel=rtol
        )
        if W.ndim >= 2:
            dW = dg.matrix_view(W - before[name])
            s = _svd64(dW)
            assert st["update_spectral"] == pytest.approx(s[0], rel=rtol)
            assert st["update_spectral"] == pytest.approx(
                dg.matrix_norm(dW, "spectral").item(), rel=rtol
            )
            assert st["update_stable_rank"] == pytest.approx(np.sum(s**2) / s[0] ** 2, rel=rtol)
            assert st["update_stable_rank"] == pytest.approx(dg.stable_rank(dW).item(), rel=rtol)
            gap = dg.orthogonality_gap(dW, normalize=True).item()
            assert st["update_orthogonality_gap"] == pytest.approx(gap, rel=rtol, abs=rtol)
            assert st["update_orthogonality_gap"] == pytest.approx(1 - s[-1] / s[0], abs=rtol)
        if name not in grads:
            assert "grad_dual_norm" not in st and "grad_stable_rank" not in st
            continue
        G = grads[name]
        if W.ndim < 2:
            assert st["grad_dual_norm"] == pytest.approx(
                np.linalg.norm(G.double().numpy()), rel=rtol
            )
            assert "grad_stable_rank" not in st
            continue
        Gm = dg.matrix_view(G)
        s = _svd64(Gm)
        p = s / s.sum()
        oracle = {
            "grad_dual_norm": (s.sum(), dg.matrix_norm(Gm, "nuclear")),
            "grad_stable_rank": (np.sum(s**2) / s[0] ** 2, dg.stable_rank(Gm)),
            "grad_nuclear_rank": (s.sum() ** 2 / np.sum(s**2), dg.nuclear_rank(Gm)),
            "grad_effective_rank": (np.exp(-np.sum(p * np.log(p))), dg.effective_rank(Gm)),
        }
        for stat, (numpy_value, function_value) in oracle.items():
            assert st[stat] == pytest.approx(numpy_value, rel=rtol), (name, stat)
            assert st[stat] == pytest.approx(function_value.item(), rel=rtol), (name, stat)
    # The edge cases: a rank-one update has stable rank 1, an orthogonal one gap 0.
    assert stats["a"]["update_stable_rank"] == pytest.approx(1.0, rel=rtol)
    assert stats["c"]["update_orthogonality_gap"] == pytest.approx(0.0, abs=10 * rtol)


def _run(metrics, path, threads=1, steps=4):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 7),
        torch.nn.Tanh(),
        torch.nn.Linear(7, 5),
        torch.nn.Tanh(),
        torch.nn.Linear(5, 7),
    ).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 5, dtype=torch.float64, generator=g)
    history, grads = [], []
    with Monitor(model, opt, every=2, metrics=metrics, path=path, threads=threads) as monitor:
        for _ in range(steps):
            history.append({n: p.detach().clone() for n, p in model.named_parameters()})
            model(x).square().mean().backward()
            grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
            opt.step()
            monitor.step()
            opt.zero_grad()
    history.append({n: p.detach().clone() for n, p in model.named_parameters()})
    return [json.loads(line) for line in path.read_text().splitlines()], history, grads


def test_monitor_smoothness_alone_matches_numpy(tmp_path):
    threads = torch.get_num_threads()
    lines, history, grads = _run(("smoothness",), tmp_path / "s.jsonl", threads=1)
    assert torch.get_num_threads() == threads  # restored after each record
    assert [r["step"] for r in lines] == [0, 1, 2, 3]
    assert set(lines[0]) == set(lines[2]) == {"step", "lr/0"}  # recorded steps: lr only
    for rec in lines[1::2]:
        t = rec["step"]
        assert not any(k.endswith("/update_rms") for k in rec)
        for name in ("0.weight", "2.weight", "4.weight"):
            dW = (history[t][name] - history[t - 1][name]).numpy()
            dG = (grads[t][name] - grads[t - 1][name]).numpy()
            L = np.linalg.norm(dG) / np.linalg.norm(dW)
            J = np.linalg.norm(dG, "nuc") / np.linalg.norm(dW, 2)
            G = grads[t - 1][name].numpy()
            advantage = np.linalg.norm(G, "nuc") ** 2 / np.linalg.norm(G) ** 2 * L / J
            assert rec[f"{name}/frobenius_smoothness"] == pytest.approx(L, rel=1e-9)
            assert rec[f"{name}/spectral_smoothness"] == pytest.approx(J, rel=1e-9)
            assert rec[f"{name}/smoothness_ratio"] == pytest.approx(J / L, rel=1e-9)
            assert rec[f"{name}/muon_advantage"] == pytest.approx(advantage, rel=1e-9)
        assert "0.bias/frobenius_smoothness" not in rec
    # threads=None (torch's setting) writes the same values.
    same, _, _ = _run(("smoothness",), tmp_path / "n.jsonl", threads=None)
    for a, b in zip(lines, same, strict=True):
        assert a.keys() == b.keys()
        assert all(a[k] == pytest.approx(b[k], rel=1e-10) for k in a)


def test_monitor_threads_checked(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads="):
            Monitor(model, opt, path=tmp_path / "never.jsonl", threads=bad)
    assert not (tmp_path / "never.jsonl").exists()
