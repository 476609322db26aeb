"""``reproduce layer-split``: the share by hand, each verdict from synthetic data, the layer
grouping of the GPT, and the record of a tiny run (within + cross = NDS, checked against an
independent NDS)."""

import json
import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from steepest.diagnostics import directional_sharpness
from steepest.experiments.cli import main
from steepest.experiments.targets._measured import transformer_blocks
from steepest.experiments.targets.layer_split import (
    CRITERION,
    _split,
    layer_split_verdicts,
    within_share,
)
from steepest.experiments.tasks import make_task

PNG = b"\x89PNG\r\n\x1a\n"


def test_within_share_by_hand():
    assert within_share(3.0, 1.0) == 0.75
    assert within_share(-1.0, 1.0) == -0.5
    assert within_share(2.0, -2.0) == 0.5
    assert math.isnan(within_share(0.0, 0.0))


def _record(gaps_within, gaps_cross):
    """AdamW's late within / cross terms 1 + gap, Muon's 1; early steps carry noise."""

    def curve(within, cross):
        return {
            "step": [0, 10, 20, 30],
            "nds": [99.0] + [within + cross] * 3,
            "within": [99.0] + [within] * 3,
            "cross": [-99.0] + [cross] * 3,
        }

    adamw = [curve(1 + w, 1 + c) for w, c in zip(gaps_within, gaps_cross, strict=True)]
    muon = [curve(1.0, 1.0) for _ in gaps_within]
    return {"steps": 30, "curves": {"adamw": adamw, "muon": muon}}


@pytest.mark.parametrize(
    "within, cross, outcome",
    [
        ([1.0, 1.2, 0.9], [0.1, 0.0, -0.1], "agrees"),  # shares 0.91, 1, 0.9
        ([0.1, 0.0, -0.1], [1.0, 1.2, 0.9], "disagrees"),  # shares 0.09, 0, -0.1
        ([1.0, 0.1, 0.5], [0.1, 1.0, 0.5], "inconclusive"),  # shares 0.91, 0.09, 0.5
    ],
)
def test_each_outcome_from_synthetic_results(within, cross, outcome):
    (verdict,) = layer_split_verdicts(_record(within, cross))
    assert verdict.outcome == outcome
    assert verdict.criterion == CRITERION


def _tiny_gpt(layers=2):
    task = make_task("zipf-pcfg", layers=layers, width=8, heads=2, context=8, batch_size=2)
    task.setup(torch.device("cpu"))
    torch.manual_seed(0)
    return task, task.build_model()


def test_transformer_blocks_partition_the_parameters():
    task, model = _tiny_gpt(layers=3)
    params = list(model.parameters())
    groups = transformer_blocks(model, params)
    assert len(groups) == 3 + 2  # embeddings, three blocks, output
    assert sorted(i for g in groups for i in g) == list(range(len(params)))
    names = [n for n, _ in model.named_parameters()]
    for k, group in enumerate(groups[1:-1]):
        assert all(names[i].startswith(f"blocks.{k}.") for i in group)


def test_split_sums_to_an_independent_nds():
    task, model = _tiny_gpt()
    params = list(model.parameters())
    batch = next(task.batches(0))
    gen = torch.Generator().manual_seed(1)
    u = [torch.randn(p.shape, generator=gen) for p in params]

    def loss_fn():
        return task.loss(model, batch)

    with sdpa_kernel(SDPBackend.MATH):
        terms = _split(model, loss_fn, params, u)
        nds = directional_sharpness(loss_fn, params, u, normalized=True)
    assert terms["within"] + terms["cross"] == pytest.approx(terms["nds"], rel=1e-9)
    assert terms["nds"] == pytest.approx(nds, rel=1e-4)
    assert terms["update_norm_sq"] == pytest.approx(sum(float((v * v).sum()) for v in u))


def test_layer_split_record(tmp_path):
    out = tmp_path / "layer-split"
    argv = ["reproduce", "layer-split", "--out", str(out), "--threads", "1", "--no-progress"]
    options = "steps=4 measure_every=2 seeds=3 layers=2 width=8 heads=2 context=8 batch_size=2"
    for opt in options.split():
        argv += ["--option", opt]
    assert main(argv) == 0
    assert (out / "layer-split.png").read_bytes()[:8] == PNG
    record = json.loads((out / "layer-split.json").read_text())
    assert record["layer_blocks"] == ["embeddings", "block 0", "block 1", "output"]
    for name in ("adamw", "muon"):
        assert len(record["curves"][name]) == 3
        for curve in record["curves"][name]:
            assert curve["step"] == [0, 2, 3]
            for nds, w, c in zip(curve["nds"], curve["within"], curve["cross"], strict=True):
                assert w + c == pytest.approx(nds, rel=1e-6, abs=1e-9)
    (verdict,) = record["verdicts"]
    assert verdict["outcome"] == layer_split_verdicts(record)[0].outcome


def test_layer_split_needs_two_layers(tmp_path):
    with pytest.raises(ValueError, match="layers=1"):
        main(["reproduce", "layer-split", "--out", str(tmp_path), "--option", "layers=1"])
    assert not list(tmp_path.iterdir())
