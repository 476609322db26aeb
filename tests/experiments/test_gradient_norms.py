"""``steepest reproduce gradient-norms``: one measurement redone by hand (SGD step, SVDs in
numpy float64), the per-block matrices of the GPT, and each verdict from synthetic records."""

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from steepest.experiments.cli import main
from steepest.experiments.runner import lr_factor
from steepest.experiments.targets import gradient_norms as target
from steepest.experiments.tasks import make_task


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("gradient-norms")
    argv = ["reproduce", "gradient-norms", "--out", str(out), "--threads", "1", "--no-progress"]
    options = (
        "mlp_steps=2", "gpt_steps=2", "measure_every=1", "gpt_layers=1", "gpt_width=16",
        "gpt_context=8", "gpt_batch=2", "measure_size=256", "seeds=3",
    )  # fmt: skip
    for opt in options:
        argv += ["--option", opt]
    assert main(argv) == 0
    assert (out / "gradient-norms.png").read_bytes()[:4] == b"\x89PNG"
    return json.loads((out / "gradient-norms.json").read_text())


def _by_hand(seed):
    """Step 0 of the mlp's GD run: gradients of the loss on the first 256 training images before
    and after one SGD step on W1, W2 (lr 0.8) and AdamW on the head, as the task trains."""
    task = make_task("mnist-mlp")
    task.setup(torch.device("cpu"))
    torch.manual_seed(seed)
    model = task.build_model()
    hidden = [model[0].weight, model[2].weight]
    x, y = task.train_x[:256], task.train_y[:256]

    def grads():
        return [
            g.double().numpy() for g in torch.autograd.grad(F.cross_entropy(model(x), y), hidden)
        ]

    g0, w0 = grads(), [p.detach().double().numpy().copy() for p in hidden]
    lr, adamw_lr = task.default_lrs["sgd"]
    head = torch.optim.AdamW([model[4].weight], lr=adamw_lr, betas=(0.9, 0.95), weight_decay=0.0)
    task.loss(model, next(task.batches(seed))).backward()
    with torch.no_grad():
        for p in hidden:
            p -= lr * lr_factor(0, 2, task.warmup, task.schedule) * p.grad
    head.step()
    g1, w1 = grads(), [p.detach().double().numpy().copy() for p in hidden]
    # the probe: W_t - (||dW||_F / ||G_t||_F) G_t, in the model's float32, then put back
    with torch.no_grad():
        for p, a0, a1, b0 in zip(hidden, w0, w1, g0, strict=True):
            size = np.linalg.norm(a1 - a0) / np.linalg.norm(b0)
            p.copy_(torch.from_numpy(a0 - size * b0))
    gp, wp = grads(), [p.detach().double().numpy().copy() for p in hidden]
    out = {}
    for name, a0, a1, b0, b1, c0, c1 in zip(
        ("0.weight", "2.weight"), w0, w1, g0, g1, wp, gp, strict=True
    ):
        s0 = np.linalg.svd(b0, compute_uv=False)
        dgp = np.linalg.svd(c1 - b0, compute_uv=False)
        dwp = np.linalg.svd(c0 - a0, compute_uv=False)
        Lp, Jp = np.sqrt((dgp**2).sum() / (dwp**2).sum()), dgp.sum() / dwp[0]
        s = np.linalg.svd(b1, compute_uv=False)
        dg = np.linalg.svd(b1 - b0, compute_uv=False)
        dw = np.linalg.svd(a1 - a0, compute_uv=False)
        L, J = np.sqrt((dg**2).sum() / (dw**2).sum()), dg.sum() / dw[0]
        nf = s.sum() ** 2 / (s**2).sum()
        probe = s0.sum() ** 2 / (s0**2).sum() * Lp / Jp
        out[name] = {"nuclear_frobenius": nf, "frobenius_smoothness": L,
                     "spectral_smoothness": J, "eq7_ratio": nf * L / J,
                     "eq7_ratio_gradient_probe": probe}  # fmt: skip
    return out


def test_one_measurement_matches_a_hand_computation(record):
    runs = record["models"]["mlp"]["runs"]
    assert set(runs) == {"sgd", "muon"} and record["seeds"] == [0, 1, 2]
    for seed in (0, 2):
        curve = runs["sgd"]["curves"][seed]
        assert curve["step"] == [1, 2]
        for name, values in _by_hand(seed).items():
            for quantity, value in values.items():
                got = curve["layers"][name][quantity][0]
                assert got == pytest.approx(value, rel=1e-5), (seed, name, quantity)


def test_gpt_fused_qkv_is_measured_per_block(record):
    gpt = record["models"]["gpt"]
    assert set(gpt["runs"]) == {"adamw", "muon"}
    for run in gpt["runs"].values():
        layers = run["curves"][0]["layers"]
        assert sorted(layers) == sorted(
            ["blocks.0.qkv.weight[0]", "blocks.0.qkv.weight[1]", "blocks.0.qkv.weight[2]",
             "blocks.0.proj.weight", "blocks.0.fc.weight", "blocks.0.out.weight"]
        )  # fmt: skip
        for layer in layers.values():
            # ||G||_*^2 / ||G||_F^2 lies in [1, rank]; a 16 x 16 block has rank <= 16
            assert all(1 - 1e-9 <= v <= 16 + 1e-9 for v in layer["nuclear_frobenius"])
            assert all(v > 0 for v in layer["eq7_ratio"])
    assert [v["outcome"] in ("agrees", "disagrees", "inconclusive") for v in record["verdicts"]]


def _synthetic(muon_ratios):
    """Two models, three seeds; Muon's runs have the given per-seed Eq. 7 ratio (constant over
    steps, the same for both layers); the baselines' are 2."""

    def run(values):
        return {
            "curves": [
                {
                    "layers": {
                        n: {"eq7_ratio": [v] * 4, "nuclear_frobenius": [5.0] * 4}
                        for n in ("a", "b")
                    }
                }
                for v in values
            ]
        }

    model = {
        "baseline": "sgd",
        "muon": "muon",
        "runs": {"sgd": run([2.0] * 3), "muon": run(muon_ratios)},
    }
    return {"models": {"mlp": model, "gpt": model}}


@pytest.mark.parametrize(
    "ratios, outcome",
    [
        ([1.5, 1.6, 1.7], "agrees"),
        ([0.5, 0.4, 0.45], "disagrees"),
        ([1.5, 0.6, 1.1], "inconclusive"),
    ],
)
def test_gradient_norms_verdicts_from_synthetic_records(ratios, outcome):
    verdicts = target.verdicts(_synthetic(ratios))
    assert [v.outcome for v in verdicts] == [outcome, outcome]
    assert all(target.CRITERION in v.criterion for v in verdicts)
