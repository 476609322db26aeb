"""Routing rules on small hand-built models, each checked against an independent oracle."""

import math
import warnings

import pytest
import torch
from routing_models import available, gpt_oss
from torch import nn

import steepest


def polar(G):
    """U V^T of G in float64 (the SVD oracle)."""
    U, _, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    return U @ Vh


def one_step(model, groups, lr=0.1):
    """One Muon step (no momentum, exact SVD) on random gradients: (before, grads)."""
    opt = steepest.Muon(groups, lr=lr, momentum=0.0, backend="svd")
    torch.manual_seed(1)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    return before, grads


class TinyViT(nn.Module):
    """timm's ViT layout: cls_token (1, 1, d), pos_embed (1, 1 + patches, d), a conv patch
    embedding, a fused ``qkv`` Linear and a Linear ``head``."""

    def __init__(self, d=12, patches=4):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, d))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + patches, d))
        self.patch_embed = nn.Conv2d(3, d, 4, stride=4)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 5)


def test_tokens_go_to_adamw_and_qkv_is_split():
    groups, report = steepest.param_groups(TinyViT())
    for name in ("cls_token", "pos_embed"):
        route = report.route_of(name)
        assert route.algorithm == "adamw" and route.role == "embedding" and not route.decay
    assert report.route_of("qkv.weight").matrices == ((12, 12),) * 3
    assert report.route_of("head.weight").algorithm == "adamw"  # the last Linear
    assert report.route_of("patch_embed.weight").matrices == ((12, 48),)


@pytest.mark.parametrize("groups_, channels", [(4, 8), (8, 8)], ids=["grouped", "depthwise"])
def test_grouped_conv_is_orthogonalized_per_group(groups_, channels):
    """Each group's (out/g, in/g * k * k) gradient block gets its own polar factor, scaled
    by sqrt(rows / cols) of that block (the SVD oracle per block)."""
    model = nn.Sequential(nn.Conv2d(channels, channels, 3, groups=groups_), nn.Linear(2, 2))
    groups, report = steepest.param_groups(model)
    rows, cols = channels // groups_, (channels // groups_) * 9
    assert report.route_of("0.weight").matrices == ((groups_, rows, cols),)
    before, grads = one_step(model, groups)
    step = (before["0.weight"] - model[0].weight.detach()).reshape(groups_, rows, cols)
    G = grads["0.weight"].reshape(groups_, rows, cols)
    for g in range(groups_):
        want = 0.1 * math.sqrt(rows / cols) * polar(G[g])
        torch.testing.assert_close(step[g].double(), want, atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not available("GPT-OSS (transformers)"), reason="transformers missing")
def test_gpt_oss_experts_step_on_their_stored_transpose():
    """GPT-OSS stores experts (E, d_in, d_out): the update of expert e is
    sqrt(d_out / d_in) * polar(G[e]^T)^T, not the polar factor of the stored (d_in, d_out)."""
    model, _, _ = gpt_oss()
    groups, _ = steepest.param_groups(model)
    before, grads = one_step(model, groups)
    name = "model.layers.0.mlp.experts.down_proj"  # (4, 48, 32): d_in 48, d_out 32
    W = dict(model.named_parameters())[name].detach()
    step = before[name] - W
    for e in range(4):
        want = 0.1 * math.sqrt(32 / 48) * polar(grads[name][e].T).T
        torch.testing.assert_close(step[e].double(), want, atol=1e-5, rtol=1e-4)


def test_declared_layouts_read_bare_stacks():
    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.w_in = nn.Parameter(torch.randn(3, 6, 10))  # (E, in, out)
            self.w_out = nn.Parameter(torch.randn(3, 6, 10))  # (E, out, in)

    _, report = steepest.param_groups(Stack())
    assert report.algorithm_of("w_in") == "adamw"
    assert "layouts=" in report.route_of("w_in").reason
    _, report = steepest.param_groups(Stack(), layouts={"w_in": "in_out", "w_out": "out_in"})
    assert report.route_of("w_in").matrices == ((3, 10, 6),)
    assert report.route_of("w_in").lr_multiplier == pytest.approx(math.sqrt(10 / 6))
    assert report.route_of("w_out").matrices == ((3, 6, 10),)
    with pytest.raises(ValueError, match=r"layouts\['w_in'\]='io' is unknown"):
        steepest.param_groups(Stack(), layouts={"w_in": "io"})


def test_unmatched_patterns_name_the_closest_and_compiled_prefix_matches():
    model = TinyViT()
    with pytest.raises(ValueError, match=r"overrides\['qvk.weight'\] matches no.*'qkv.weight'"):
        steepest.param_groups(model, overrides={"qvk.weight": "adamw"})
    with pytest.raises(ValueError, match=r"blocks\['\*.qkv.weight'\] matches no parameter"):
        steepest.param_groups(model, blocks={"*.qkv.weight": [4, 4, 4]})
    with pytest.raises(ValueError, match=r"heads\['attn'\]"):
        steepest.param_groups(model, heads={"attn": 2})
    compiled = torch.compile(model)  # names gain "_orig_mod."; nothing is compiled here
    _, report = steepest.param_groups(
        compiled, overrides={"proj.weight": "adamw"}, heads={"qkv.weight": 3}
    )
    assert report.algorithm_of("_orig_mod.proj.weight") == "adamw"
    assert report.route_of("_orig_mod.qkv.weight").matrices == ((4, 12),) * 9
    assert report.algorithm_of("_orig_mod.head.weight") == "adamw"


def test_no_weight_decay_on_biases_norms_and_embeddings():
    """With zero gradients AdamW's step is its decay alone: p <- (1 - lr wd) p for decayed
    tensors (the head), p unchanged for biases, norms, embeddings; no_decay=() decays all."""
    model = nn.Sequential(nn.Embedding(9, 4), nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 9))
    for no_decay, kept in [
        (None, {"0.weight", "1.bias", "2.weight", "2.bias", "3.bias"}),
        ((), set()),
    ]:
        kwargs = {} if no_decay is None else {"no_decay": no_decay}
        groups, report = steepest.param_groups(model, **kwargs)
        opt = steepest.Muon(groups, adamw_lr=0.5, adamw_weight_decay=0.1)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt.step()
        for name, p in model.named_parameters():
            if report.algorithm_of(name) != "adamw":
                continue
            factor = 1.0 if name in kept else 1 - 0.5 * 0.1
            torch.testing.assert_close(p.detach(), before[name] * factor, rtol=0, atol=1e-7)
            assert report.route_of(name).decay == (name not in kept)
    with pytest.raises(ValueError, match=r"no_decay=\('biases',\)"):
        steepest.param_groups(model, no_decay=("biases",))


def test_drop_in_warns_once_about_embedding_like_tensors():
    model = nn.Sequential(nn.Embedding(100, 8), nn.Linear(8, 16), nn.Linear(16, 8))
    with pytest.warns(UserWarning, match=r"tensors \(100, 8\) look like embeddings") as seen:
        steepest.Muon(model.parameters())
    assert len([w for w in seen if "look like" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steepest.Muon(steepest.param_groups(model)[0])
        steepest.Muon(list(model.parameters())[1:])


@pytest.mark.parametrize("build", ["gpt2", "llama", "mixtral", "gpt_oss", "bert"])
def test_forward_trace_agrees_with_the_model_api(build):
    """Two independent ways to find the head and the matmul weights agree: the Hugging Face
    API (get_output_embeddings, module types) and one forward pass of a token batch."""
    import routing_models

    if not available("GPT-2 (transformers)"):
        pytest.skip("transformers missing")
    model, _, _ = getattr(routing_models, build)()
    tokens = torch.randint(0, 48, (2, 5), generator=torch.Generator().manual_seed(0))
    _, by_api = steepest.param_groups(model)
    _, by_trace = steepest.param_groups(model, example=tokens)
    assert [(r.name, r.algorithm, r.matrices) for r in by_api] == [
        (r.name, r.algorithm, r.matrices) for r in by_trace
    ]
    assert model.training  # the trace ran in eval mode and restored the mode


def test_recurrent_gates_and_bilinear():
    """LSTM / GRU input and hidden weights are split into their gates (each gate's block
    steps by its own polar factor, the SVD oracle), biases go to AdamW undecayed, nn.Bilinear
    is read (out, in1 * in2)."""

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(6, 8)
            self.gru = nn.GRU(6, 8)
            self.bil = nn.Bilinear(3, 5, 7)

    model = Recurrent()
    groups, report = steepest.param_groups(model)
    assert report.route_of("lstm.weight_ih_l0").matrices == ((8, 6),) * 4
    assert report.route_of("gru.weight_hh_l0").matrices == ((8, 8),) * 3
    assert report.route_of("bil.weight").matrices == ((7, 15),)
    bias = report.route_of("lstm.bias_ih_l0")
    assert (bias.algorithm, bias.role, bias.decay) == ("adamw", "bias", False)
    before, grads = one_step(model, groups)
    name = "lstm.weight_ih_l0"
    step = before[name] - model.lstm.weight_ih_l0.detach()
    for gate in range(4):
        rows = slice(8 * gate, 8 * gate + 8)
        want = 0.1 * math.sqrt(8 / 6) * polar(grads[name][rows])
        torch.testing.assert_close(step[rows].double(), want, atol=1e-5, rtol=1e-4)
