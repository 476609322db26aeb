"""``steepest reproduce``: each target through ``main``, its JSON against independent oracles."""

import json
import math

import numpy as np
import pytest
import torch

from steepest.experiments.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def _reproduce(name, tmp_path, *options):
    out = tmp_path / name
    argv = ["reproduce", name, "--out", str(out), "--threads", "1", "--no-progress"]
    for opt in options:
        argv += ["--option", opt]
    assert main(argv) == 0
    assert (out / f"{name}.png").read_bytes()[:8] == PNG
    return json.loads((out / f"{name}.json").read_text())


def test_schatten_p_matches_closed_form(tmp_path):
    """sigma_i(dualize_p(G)) = r_i^(q-1) / ||r||_q^(q-1) (seed 000, Prop. 4), in numpy fp64."""
    record = _reproduce("schatten-p", tmp_path, "m=12", "n=8", "seed=3")
    from steepest.experiments.reproduce import _spectra

    mats = _spectra(12, 8, 3)
    assert set(record["spectra"]) == set(mats)
    for name, G in mats.items():
        sigma = np.linalg.svd(G.numpy(), compute_uv=False)
        for i, p in enumerate(record["p"]):
            entry = record["spectra"][name]
            if p is None:  # p = inf is written as null: U V^T, variance 0, stable rank min(m, n)
                assert entry["variance"][i] == pytest.approx(0, abs=1e-12)
                assert entry["stable_rank"][i] == pytest.approx(8, rel=1e-9)
                continue
            q = p / (p - 1)
            r = sigma / sigma.max()
            dual = r ** (q - 1) / np.linalg.norm(r, q) ** (q - 1)
            assert entry["variance"][i] == pytest.approx(dual.var(), rel=1e-6, abs=1e-14)
            srank = (dual**2).sum() / dual.max() ** 2
            assert entry["stable_rank"][i] == pytest.approx(srank, rel=1e-6)
        finite = entry["variance"][:-1]
        monotone = all(b <= a + 1e-15 for a, b in zip(finite, finite[1:], strict=False))
        assert entry["variance_monotone_decreasing"] == monotone


def test_low_rank_rank_one_is_solved_by_gd(tmp_path):
    """GD with step 1/L on a rank-1 Q (lambda = 1) converges in one step: f(W1) = 0."""
    record = _reproduce("low-rank", tmp_path, "m=8", "n=4", "steps=6", "seeds=1")
    assert record["ranks"] == [8, 4, 2, 1]
    for name in ("sgd", "muon"):
        values = record["relative_final_loss"][name]
        assert len(values) == 4 and all(math.isfinite(v) and 0 <= v <= 1 for v in values)
    assert record["relative_final_loss"]["sgd"][-1] < 1e-10
    ratio = record["relative_final_loss"]["muon"][0] / record["relative_final_loss"]["sgd"][0]
    assert record["muon_over_gd"][0] == pytest.approx(ratio)


def test_nds_curves_and_hessian_oracle(tmp_path):
    record = _reproduce(
        "nds",
        tmp_path,
        "steps=4",
        "measure_every=2",
        "layers=1",
        "width=8",
        "heads=2",
        "context=8",
        "batch_size=2",
    )
    for name in ("adamw", "muon"):
        curve = record["curves"][name]
        assert curve["step"] == [0, 2, 3]
        assert all(math.isfinite(v) for v in curve["nds"])
        assert all(v > 0 and math.isfinite(v) for v in curve["update_norm"])
        assert curve["train_loss"][0] == pytest.approx(math.log(65), abs=0.05)


def test_nds_on_zipf_pcfg(tmp_path):
    record = _reproduce(
        "nds", tmp_path, "task=zipf-pcfg", "exponent=0", "steps=2", "measure_every=1",
        "layers=1", "width=8", "heads=2", "context=8", "batch_size=2",
    )  # fmt: skip
    assert record["task"] == "zipf-pcfg" and record["task_options"]["exponent"] == 0
    for curve in record["curves"].values():
        assert curve["step"] == [0, 1] and all(math.isfinite(v) for v in curve["nds"])
        # untrained GPT: near-uniform predictions over 64 terminals + the end token
        assert curve["train_loss"][0] == pytest.approx(math.log(65), abs=0.05)


def test_nds_of_quadratic_is_rayleigh_quotient():
    """On f(x) = x^T A x / 2 the NDS along u is u^T A u / u^T u (the oracle the target uses)."""
    from steepest.diagnostics import directional_sharpness

    a = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    x = torch.ones(2, dtype=torch.float64, requires_grad=True)
    u = torch.tensor([1.0, -2.0], dtype=torch.float64)
    nds = directional_sharpness(lambda: x @ a @ x / 2, [x], [u], normalized=True)
    assert nds == pytest.approx((u @ a @ u / (u @ u)).item())


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["reproduce", "nope"], "nope"),
        (["reproduce", "low-rank", "--option", "depth=2"], "depth"),
        (["reproduce", "low-rank", "--option", "steps=x"], "steps=x"),
        (["reproduce", "low-rank", "--option", "steps=0"], "steps=0"),
        (["reproduce", "nds", "--option", "task=mnist-mlp"], "task=mnist-mlp"),
    ],
)
def test_bad_reproduce_arguments_fail_before_writing(argv, needle, tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as err:
        main([*argv, "--out", str(out)])
    assert err.value.code == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_imbalance_accuracies(tmp_path):
    record = _reproduce(
        "imbalance",
        tmp_path,
        "steps=3",
        "seeds=1",
        "classes=3",
        "dim=4",
        "train_size=60",
        "hidden=8",
    )
    assert record["ratios"] == [1.0, 4.0, 16.0, 64.0, 256.0]
    for name in ("adamw", "muon"):
        balanced = record["balanced_accuracy"][name]
        minority = record["minority_accuracy"][name]
        assert len(balanced) == len(minority) == 5
        assert all(0 <= b <= 1 and 0 <= m <= 1 for b, m in zip(balanced, minority, strict=True))
        # the balanced accuracy is the mean of 3 class accuracies, one of them the minority's
        assert all(b >= m / 3 - 1e-9 for b, m in zip(balanced, minority, strict=True))


def test_implicit_bias_margins_obey_norm_inequalities(tmp_path):
    record = _reproduce(
        "implicit-bias", tmp_path, "steps=300", "eval_every=100", "n=20", "dim=4", "classes=3"
    )
    assert set(record["curves"]) == {"sgd", "adamw", "muon"}
    for curve in record["curves"].values():
        assert curve["step"] == [0, 100, 200, 300]
        assert [curve[k][0] for k in ("l2_margin", "spectral_margin", "max_norm_margin")] == [0] * 3
        # ||W||_max <= ||W||_2 <= ||W||_F: for a positive margin, l2 <= spectral <= max-norm
        for l2, sp, mx in zip(
            curve["l2_margin"], curve["spectral_margin"], curve["max_norm_margin"], strict=True
        ):
            if l2 > 0:
                assert l2 <= sp + 1e-9 and sp <= mx + 1e-9
            else:
                assert l2 >= sp - 1e-9 and sp >= mx - 1e-9
    assert record["final"]["muon"]["l2_margin"] == record["curves"]["muon"]["l2_margin"][-1]
