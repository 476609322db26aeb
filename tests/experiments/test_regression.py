"""``steepest reproduce regression``: GD and Muon step counts against a re-run in the original
basis with f* from least squares (float64), the Eq. 7 ratio from its definition, and each
verdict from synthetic records."""

import json

import numpy as np
import pytest

from steepest.data import load_mnist
from steepest.experiments.cli import main
from steepest.experiments.targets import regression as target


def _numpy_problem(features, samples, seed):
    """X (d x B) and Y (c x B) of the draw, rebuilt independently of ``make_problem``."""
    import torch

    images, labels = load_mnist()
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=gen)[:samples].numpy()
    x = images.reshape(len(images), -1)[idx].astype(np.float64).T / 255.0
    if features == "gaussian":
        x = torch.randn(x.shape, generator=gen, dtype=torch.float64).numpy()
    y = np.eye(10)[labels[idx]].T
    return x, y


def _oracle_steps(x, y, rule, lr, threshold, max_steps, momentum=0.9):
    """Steps of GD / Muon (momentum, exact msign) from W = 0 until the relative gap <= threshold,
    in the original basis, f* from least squares (float64)."""
    import torch

    b = x.shape[1]
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    w_star = torch.linalg.lstsq(x.T, y.T, driver="gelsd").solution.T
    f_star = ((w_star @ x - y) ** 2).sum().item() / (2 * b)
    w = torch.zeros(10, x.shape[0], dtype=torch.float64)
    m, f0 = torch.zeros_like(w), (y**2).sum().item() / (2 * b) - f_star
    for step in range(1, max_steps + 1):
        r = w @ x - y
        if step > 1 and ((r**2).sum().item() / (2 * b) - f_star) / f0 <= threshold:
            return step - 1
        g = r @ x.T / b
        if rule == "gd":
            w = w - lr * g
        else:
            m = momentum * m + g
            u, _, vh = torch.linalg.svd(m, full_matrices=False)
            w = w - lr * u @ vh
    r = w @ x - y
    return max_steps if ((r**2).sum().item() / (2 * b) - f_star) / f0 <= threshold else None


def test_regression_matches_a_rerun_in_the_original_basis(tmp_path, one_thread):
    out = tmp_path / "regression"
    argv = ["reproduce", "regression", "--out", str(out), "--threads", "1", "--no-progress"]
    for opt in ("samples=300", "threshold=0.2", "max_steps=200", "seeds=3"):
        argv += ["--option", opt]
    assert main(argv) == 0
    record = json.loads((out / "regression.json").read_text())
    assert (out / "regression.png").read_bytes()[:4] == b"\x89PNG"
    assert record["target"] == "regression" and record["seeds"] == [0, 1, 2]
    assert [v["outcome"] in ("agrees", "disagrees", "inconclusive") for v in record["verdicts"]]
    import torch

    for features, seeds in (("mnist", (0, 2)), ("gaussian", (1,))):  # 3 of the 6 draws
        entry = record["features"][features]
        for seed in seeds:
            x, y = _numpy_problem(features, 300, seed)
            a = x @ x.T / 300
            lam = torch.linalg.eigvalsh(torch.from_numpy(a)).numpy()[::-1]
            assert entry["gd_lr"][seed] == pytest.approx(1 / lam[0], rel=1e-9)
            steps = _oracle_steps(x, y, "gd", 1 / lam[0], 0.2, 200)
            assert entry["gd_steps"][seed] == (
                steps if steps is not None else pytest.approx(200, abs=1)
            )
            muon = _oracle_steps(x, y, "muon", entry["muon_lr"][seed], 0.2, 200)
            assert muon == entry["muon_steps"][seed]
            s = torch.linalg.svdvals(torch.from_numpy(y @ x.T / 300)).numpy()
            ratio = s.sum() ** 2 / (s**2).sum() * lam[0] / lam[:10].sum()
            assert entry["eq7_ratio"][seed] == pytest.approx(ratio, rel=1e-8)
            assert entry["top_c_share"][seed] == pytest.approx(
                lam[:10].sum() / np.trace(a), rel=1e-8
            )
            assert entry["gd_tuned_steps"][seed] <= entry["gd_steps"][seed]


def _record(mnist_gd, gaussian_gd, muon=(10.0, 10.0, 10.0)):
    def entry(gd):
        return {
            "gd_steps": list(gd),
            "gd_tuned_steps": list(gd),
            "muon_steps": list(muon),
            "eq7_ratio": [1.0] * 3,
            "top_c_share": [0.5] * 3,
        }

    return {
        "max_steps": 100,
        "features": {"mnist": entry(mnist_gd), "gaussian": entry(gaussian_gd)},
    }


@pytest.mark.parametrize(
    "record, outcome",
    [
        (_record([100.5, 90.0, 80.0], [10.0, 11.0, 12.0]), "agrees"),  # GD short on MNIST: a bound
        (_record([10.0, 11.0, 12.0], [50.0, 60.0, 70.0]), "disagrees"),
        (_record([50.0, 10.0, 20.0], [10.0, 50.0, 20.0]), "inconclusive"),
        (_record([90.0, 90.0, 90.0], [10.0] * 3, muon=[100.2, 100.3, 10.0]), "inconclusive"),
    ],
)
def test_regression_verdicts_from_synthetic_records(record, outcome):
    verdicts = target.verdicts(record)
    assert [v.outcome for v in verdicts] == [outcome, outcome]
    assert all(target.CRITERION in v.criterion for v in verdicts)
