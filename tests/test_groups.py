"""param_groups routes hidden matrices to Muon and embeddings, heads and vectors to AdamW."""

import math

import pytest
import torch
from torch import nn

import steepest
from steepest.groups import param_groups


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)


class TinyGPT(nn.Module):
    def __init__(self, vocab=40, d=8, layers=2, tied=True):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(6, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        if tied:
            self.head.weight = self.tok.weight


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv1d(4, 6, 3)
        self.fc = nn.Linear(6, 5)


class TinyMoE(nn.Module):
    def __init__(self, d=6, h=10, experts=4):
        super().__init__()
        self.embed = nn.Embedding(20, d)
        self.router = nn.Linear(d, experts, bias=False)
        self.w_in = nn.Parameter(torch.randn(experts, h, d))
        self.w_out = nn.Parameter(torch.randn(experts, d, h))
        self.head = nn.Linear(d, 20)


def test_gpt_routing_tied_head():
    groups, report = param_groups(TinyGPT(tied=True))
    assert report.algorithm_of("tok.weight") == "adamw"  # the tied head appears once
    assert "head.weight" not in [r.name for r in report]
    assert report.algorithm_of("pos.weight") == "adamw"
    for name in ("qkv", "proj", "fc", "out"):
        assert report.algorithm_of(f"blocks.1.{name}.weight") == "muon"
        assert report.algorithm_of(f"blocks.1.{name}.bias") == "adamw"
    assert report.algorithm_of("ln.weight") == "adamw"
    assert len(report.names("muon")) == 8
    assert "embedding (tied to head)" in str(report)


def test_gpt_routing_untied_head_qkv_blocks_and_heads():
    model = TinyGPT(tied=False)
    groups, report = param_groups(
        model, blocks={"*.qkv.weight": [8, 8, 8]}, heads={"*.qkv.weight": 2}, scale="rms"
    )
    assert report.algorithm_of("head.weight") == "adamw"  # out_features == vocab
    qkv = next(r for r in report if r.name == "blocks.0.qkv.weight")
    assert qkv.matrices == ((4, 8),) * 6
    assert qkv.lr_multiplier == pytest.approx(0.2 * math.sqrt(8))
    fc = next(r for r in report if r.name == "blocks.0.fc.weight")
    assert fc.matrices == ((32, 8),) and fc.lr_multiplier == pytest.approx(0.2 * math.sqrt(32))
    qkv_group = next(g for g in groups if "blocks.0.qkv.weight" in g["param_names"])
    assert qkv_group["blocks"] == [4] * 6 and qkv_group["scale"] == "rms"
    text = str(report)
    assert "4x8 + 4x8" in text and "output head" in text
    # the optimizer dualizes each head on its own: every 4x8 block of the step is orthogonal
    opt = steepest.Muon(groups, backend="svd", momentum=0.0)  # the groups' scale="rms" wins
    w = model.blocks[0].qkv.weight
    before = w.detach().clone()
    w.grad = torch.randn_like(w)
    opt.step()
    step = (before - w.detach()) / (0.02 * 0.2 * math.sqrt(8))
    for block in step.split(4):
        torch.testing.assert_close(block @ block.T, torch.eye(4), atol=1e-5, rtol=0)


def test_cnn_routing():
    groups, report = param_groups(TinyCNN())
    assert report.algorithm_of("conv1.weight") == "muon"
    assert report.algorithm_of("conv2.weight") == "muon"
    assert report.algorithm_of("bn.weight") == "adamw"
    assert report.algorithm_of("conv1.bias") == "adamw"
    assert report.algorithm_of("fc.weight") == "adamw"  # last Linear: the classifier head
    conv2 = next(r for r in report if r.name == "conv2.weight")
    assert conv2.matrices == ((6, 12),)  # Conv1d (6, 4, 3) read as (out, in * k), not a batch
    assert next(r for r in report if r.name == "conv1.weight").matrices == ((4, 9),)
    conv_group = next(g for g in groups if "conv2.weight" in g["param_names"])
    assert conv_group["matrix_view"] == "flatten"


LAYOUTS = {"w_in": "out_in", "w_out": "out_in"}


def test_moe_routing_and_overrides():
    _, report = param_groups(TinyMoE())  # bare 3-D parameters: no layout, no Muon
    assert report.algorithm_of("w_in") == "adamw" and "layouts=" in report.route_of("w_in").reason
    groups, report = param_groups(TinyMoE(), layouts=LAYOUTS)
    assert report.algorithm_of("w_in") == "muon"
    assert next(r for r in report if r.name == "w_in").matrices == ((4, 10, 6),)
    assert report.algorithm_of("router.weight") == "muon"
    assert report.algorithm_of("head.weight") == "adamw"  # the last nn.Linear
    assert report.algorithm_of("embed.weight") == "adamw"
    _, report = param_groups(TinyMoE(), overrides={"router.*": "adamw", "head.weight": "muon"})
    assert report.algorithm_of("router.weight") == "adamw"
    assert report.algorithm_of("head.weight") == "muon"
    with pytest.raises(ValueError, match=r"overrides\['x'\]='sgd'"):
        param_groups(TinyMoE(), overrides={"x": "sgd"})
    with pytest.raises(ValueError, match=r"heads\['\*qkv\*'\]=5"):
        param_groups(TinyGPT(), heads={"*qkv*": 5})


def test_groups_train_through_muon():
    model = TinyMoE()
    groups, _ = param_groups(model, layouts=LAYOUTS)
    opt = steepest.Muon(groups)
    x = torch.randint(0, 20, (5,))
    before = [p.detach().clone() for p in model.parameters()]
    h = model.embed(x)
    h = torch.einsum("bd,ehd->beh", h, model.w_in).relu()
    h = torch.einsum("beh,edh->bd", h, model.w_out) + model.router(model.embed(x)).sum()
    model.head(h).logsumexp(-1).sum().backward()
    opt.step()
    moved = [not torch.equal(a, b) for a, b in zip(model.parameters(), before, strict=True)]
    assert all(moved)


class Conv1D(nn.Module):
    """Stand-in for transformers' Conv1D (same class name and attributes): y = x W + b with
    W stored (d_in, d_out)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


def test_conv1d_weights_use_the_transposed_view_and_blocks_split_its_rows():
    """A Conv1D (class name + nf, transformers not imported) weight (d_in, d_out) is routed to
    Muon with matrix_view "transposed": its matrix is (d_out, d_in), the spectral lr
    multiplier is sqrt(d_out / d_in), and blocks split d_out (fused QKV: 3 x (d, d))."""
    model = nn.Sequential(nn.Embedding(10, 4), Conv1D(12, 4), Conv1D(4, 12), nn.Linear(4, 10))
    groups, report = param_groups(model, blocks={"1.weight": [4, 4, 4]})
    views = {n: (g.get("matrix_view"), g.get("blocks")) for g in groups for n in g["param_names"]}
    assert views["1.weight"] == ("transposed", [4, 4, 4])
    assert views["2.weight"] == ("transposed", None)
    routes = {r.name: r for r in report}
    assert routes["1.weight"].matrices == ((4, 4),) * 3
    assert routes["2.weight"].matrices == ((4, 12),)
    assert routes["2.weight"].lr_multiplier == pytest.approx(math.sqrt(4 / 12))
    assert routes["1.bias"].algorithm == "adamw" and routes["3.weight"].reason.startswith(
        "output head"
    )


def test_transposed_view_reads_and_writes_the_transpose():
    """views.py: the matrices of a (d_in, d_out) tensor under "transposed" are W^T (a view,
    no copy), split into row blocks of W^T, and join_matrices gives W back."""
    from steepest.matrices.views import join_matrices, matrix_shape, split_matrices

    W = torch.randn(2, 5, 3)  # a batch of two (5, 3) stored matrices
    assert matrix_shape(W.shape, "transposed") == (2, 3, 5)
    (X,) = split_matrices(W, "transposed")
    assert torch.equal(X, W.mT) and X.data_ptr() == W.data_ptr()
    pieces = split_matrices(W, "transposed", [1, 2])
    assert torch.equal(torch.cat(pieces, dim=-2), W.mT)
    assert torch.equal(join_matrices([p.clone() for p in pieces], W.shape, "transposed"), W)
