"""``steepest reproduce``: each target through ``main``, its JSON against independent oracles."""

import json
import math
import statistics

import numpy as np
import pytest

from steepest.experiments.cli import main

PNG = b"\x89PNG\r\n\x1a\n"
COMMON = {"target", "seeds", "verdicts", "command", "torch_version", "device", "wall_time_s"}


def _reproduce(name, tmp_path, *options):
    out = tmp_path / name
    argv = ["reproduce", name, "--out", str(out), "--threads", "1", "--no-progress"]
    for opt in options:
        argv += ["--option", opt]
    assert main(argv) == 0
    assert (out / f"{name}.png").read_bytes()[:8] == PNG
    record = json.loads((out / f"{name}.json").read_text())
    assert COMMON <= set(record) and record["target"] == name
    assert len(record["seeds"]) >= 3 or name == "imbalance"
    for verdict in record["verdicts"]:
        assert set(verdict) == {"claim", "criterion", "outcome", "evidence"}
        assert verdict["outcome"] in ("agrees", "disagrees", "inconclusive")
    return record


def test_schatten_p_matches_closed_form(tmp_path, capsys):
    """sigma_i(dualize_p(G)) = r_i^(q-1) / ||r||_q^(q-1) (Prop. 4), in numpy fp64: its spread
    std/mean and stable rank; the GPT family is present with p = inf giving spread 0."""
    record = _reproduce(
        "schatten-p", tmp_path, "m=12", "n=8", "seeds=3", "gpt_steps=1", "gpt_width=16",
        "gpt_layers=1",
    )  # fmt: skip
    from steepest.experiments.reproduce import CRITERIA, _spectra

    assert CRITERIA["schatten-p"] in capsys.readouterr().out  # the criterion is printed
    assert set(record) >= {"p", "families", "gpt"}
    for seed in range(3):
        for name, G in _spectra(12, 8, seed).items():
            entry = record["families"][name]
            sigma = np.linalg.svd(G.numpy(), compute_uv=False)
            for i, p in enumerate(record["p"]):
                if p is None:  # p = inf is written as null: U V^T
                    assert entry["spread"][seed][i] == pytest.approx(0, abs=1e-9)
                    assert entry["stable_rank_fraction"][seed][i] == pytest.approx(1, rel=1e-9)
                    continue
                q = p / (p - 1)
                r = sigma / sigma.max()
                dual = r ** (q - 1) / np.linalg.norm(r, q) ** (q - 1)
                assert entry["spread"][seed][i] == pytest.approx(dual.std() / dual.mean(), rel=1e-6)
                srank = (dual**2).sum() / dual.max() ** 2
                assert entry["stable_rank_fraction"][seed][i] == pytest.approx(srank / 8, rel=1e-6)
    gpt = record["families"]["gpt gradients"]
    assert len(gpt["spread"]) == 3 and gpt["spread"][0][-1] == pytest.approx(0, abs=1e-6)
    assert all(v > 0 for row in gpt["relative_size"] for v in row)


def test_low_rank_gd_steps_match_the_eigen_closed_form(tmp_path):
    """GD at 1/L multiplies the eigen-component i of W - W* by (1 - lambda_i) per step, so
    f_t / f_0 = sum lambda_i (1 - lambda_i)^(2t) c_i / sum lambda_i c_i, c_i = ||(U^T W*)_i||^2;
    the Eq. 7 ratio at W0 is nuclear_rank(Q W*) lambda_max / (sum of the n largest lambda)."""
    record = _reproduce(
        "low-rank", tmp_path, "m=8", "n=4", "ks=1,4", "tail=0.05", "threshold=0.1",
        "max_steps=200", "seeds=3",
    )  # fmt: skip
    from steepest.experiments.reproduce import _concentrated_problem

    proto = record["protocols"]["seed"]
    for ki, k in enumerate((1, 4)):
        for seed in range(3):
            Q, w_star, lam = _concentrated_problem(8, 4, k, 0.05, seed)
            evals, vecs = np.linalg.eigh(Q.numpy())
            c = ((vecs.T @ w_star.numpy()) ** 2).sum(axis=1)
            f0 = (evals * c).sum()
            t = next(
                t for t in range(1, 201) if (evals * (1 - evals) ** (2 * t) * c).sum() <= 0.1 * f0
            )
            assert proto["gd_steps"][ki][seed] == t and proto["gd_lr"][ki][seed] == 0.5
            s = np.linalg.svd(Q.numpy() @ w_star.numpy(), compute_uv=False)
            ratio = s.sum() ** 2 / (s**2).sum() * evals.max() / np.sort(evals)[::-1][:4].sum()
            assert record["muon_advantage_ratio"][ki][seed] == pytest.approx(ratio, rel=1e-9)
            # The tuned GD is at least as fast as GD at 1/L; Muon's steps are its tuned best.
            assert record["protocols"]["both tuned"]["gd_steps"][ki][seed] <= t
            assert 1 <= proto["muon_steps"][ki][seed] <= 201


def test_nds_taylor_terms_and_matched_arm(tmp_path):
    record = _reproduce(
        "nds", tmp_path, "steps=4", "measure_every=2", "layers=1", "width=8", "heads=2",
        "context=8", "batch_size=2", "seeds=3",
    )  # fmt: skip
    arms = record["arms"]
    assert set(arms) == {"task lrs", "matched update norm", "matched update norm, AdamW up"}
    for seed in range(3):
        base = arms["task lrs"]
        for name in ("adamw", "muon"):
            curve = base[name]["curves"][seed]
            assert curve["step"] == [0, 2, 3]
            assert curve["train_loss"][0] == pytest.approx(math.log(65), abs=0.05)
            for g, pen, pred, norm, nds in zip(
                curve["gain"], curve["penalty"], curve["predicted"], curve["update_norm"],
                curve["nds"], strict=True,
            ):  # fmt: skip
                assert pred == pytest.approx(-g + pen, rel=1e-9, abs=1e-12)
                assert nds == pytest.approx(2 * pen / norm**2, rel=1e-6)
            assert base[name]["median_nds"][seed] == statistics.median(curve["nds"])
        scale = statistics.median(base["adamw"]["curves"][seed]["update_norm"]) / statistics.median(
            base["muon"]["curves"][seed]["update_norm"]
        )
        matched_lr = arms["matched update norm"]["muon"]["lr"][seed]
        assert matched_lr == pytest.approx(record["lrs"]["muon"][0] * scale, rel=1e-12)
        up = arms["matched update norm, AdamW up"]
        assert up["adamw"]["lr"][seed] == pytest.approx(record["lrs"]["adamw"][0] / scale)
        assert up["muon"]["curves"][seed] == base["muon"]["curves"][seed]


def test_nds_on_zipf_pcfg(tmp_path):
    record = _reproduce(
        "nds", tmp_path, "task=zipf-pcfg", "exponent=0", "steps=2", "measure_every=1",
        "layers=1", "width=8", "heads=2", "context=8", "batch_size=2", "seeds=3",
    )  # fmt: skip
    assert record["task"] == "zipf-pcfg" and record["task_options"]["exponent"] == 0
    for entry in record["arms"]["task lrs"].values():
        curve = entry["curves"][0]
        assert curve["step"] == [0, 1] and all(math.isfinite(v) for v in curve["nds"])
        assert curve["train_loss"][0] == pytest.approx(math.log(65), abs=0.05)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["reproduce", "nope"], "nope"),
        (["reproduce", "low-rank", "--option", "depth=2"], "depth"),
        (["reproduce", "low-rank", "--option", "max_steps=x"], "max_steps=x"),
        (["reproduce", "low-rank", "--option", "max_steps=0"], "max_steps=0"),
        (["reproduce", "nds", "--option", "task=mnist-mlp"], "task=mnist-mlp"),
        (["reproduce"], "--all"),
        (["reproduce", "nds", "--all"], "--all"),
    ],
)
def test_bad_reproduce_arguments_fail_before_writing(argv, needle, tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as err:
        main([*argv, "--out", str(out)])
    assert err.value.code == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_imbalance_tuned_curves(tmp_path):
    record = _reproduce(
        "imbalance", tmp_path, "steps=10", "seeds=3", "classes=3", "dim=4", "train_size=60",
        "hidden=8", "ratios=1,8", "optimizers=adamw,muon", "component_steps=80",
    )  # fmt: skip
    assert record["ratios"] == [1.0, 8.0] and record["tuning_seed"] == 3
    part = record["components"]  # the learning order: every ratio, 3 data draws, 4 arms
    assert part["steps"] == 80 and part["dominant_step"] == 2 and part["fraction"] == 0.5
    assert part["optimizers"] == ["sgd", "adamw", "muon", "specgd"]
    assert len(part["draws"]) == 2 and all(len(per_ratio) == 3 for per_ratio in part["draws"])
    for draw in part["draws"][-1]:
        assert len(draw["sigma"]) == 3 and draw["sigma"] == sorted(draw["sigma"], reverse=True)
        for run in draw["runs"].values():
            assert set(run) >= {"lr", "times", "order", "rate_index", "step", "progress"}
            times = [t or 80 for t in run["times"]]
            assert run["order"] == pytest.approx(math.log(times[-1] / times[0]))
    assert [v["criterion"][:14] for v in record["verdicts"][2:]] == [
        "[GD vs SpecGD,",
        "[GD vs Muon, r",
    ]
    for name in ("adamw", "muon"):
        search = record["tuning"][name]
        assert search["best"] == record["lr"][name]
        assert search["scores"][search["grid"].index(search["best"])] == min(search["scores"])
        runs = record["curves"][name]
        assert len(runs) == 2 and all(len(r) == 3 for r in runs)
        for run in runs[-1]:
            assert run["step"] == list(range(0, 11))
            bal, minority = run["balanced_accuracy"], run[record["minority"]]
            assert all(0 <= b <= 1 and 0 <= m <= 1 for b, m in zip(bal, minority, strict=True))
            # the balanced accuracy is the mean of 3 class accuracies, one of them the minority's
            assert all(b >= m / 3 - 1e-9 for b, m in zip(bal, minority, strict=True))


def test_max_margins_by_hand():
    """Two points +-e1 of two classes: the best W is [[a, 0], [-a, 0]] (margin 2a): Frobenius
    norm sqrt(2) a and spectral norm sqrt(2) a give sqrt(2); the max-entry bound a <= 1 gives 2."""
    pytest.importorskip("cvxpy", reason="the exact max-margins need the optional cvxpy")
    from steepest.experiments.reproduce import max_margins

    x = np.array([[1.0, 0.0], [-1.0, 0.0]])
    best = max_margins(x, np.array([0, 1]), 2)
    assert best["l2_margin"] == pytest.approx(math.sqrt(2), rel=1e-6)
    assert best["spectral_margin"] == pytest.approx(math.sqrt(2), rel=1e-6)
    assert best["max_norm_margin"] == pytest.approx(2, rel=1e-6)


def test_implicit_bias_ratios_never_exceed_the_maximum(tmp_path):
    pytest.importorskip("cvxpy", reason="the exact max-margins need the optional cvxpy")
    record = _reproduce(
        "implicit-bias", tmp_path, "steps=200", "eval_every=100", "n=12", "dim=4", "classes=3",
        "rank=2", "seeds=3",
    )  # fmt: skip
    assert record["norms"] == {
        "l2_margin": "ngd", "spectral_margin": "specgd", "max_norm_margin": "signgd"
    }  # fmt: skip
    for draw in record["draws"]:
        for curve in draw["curves"].values():
            assert curve["step"] == [0, 100, 200]
            for key in record["norms"]:
                assert curve[key][0] == 0  # W0 = 0
                assert all(v <= 1 + 1e-6 for v in curve[key])  # the maximum is the maximum
