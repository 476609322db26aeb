"""Hugging Face GPT-2 stores its linear layers as ``Conv1D`` weights (d_in, d_out), the
transpose of nn.Linear. ``steepest.param_groups`` reads them through the "transposed" matrix
view, so Muon sees the (d_out, d_in) matrix and applies the shape rule of (d_out, d_in).

Oracle: the same model with every Conv1D replaced by an nn.Linear holding W^T (the forward
pass is the same function, checked); one optimizer step on each must give W_conv = W_linear^T
for every such weight and equal values for all the other parameters. (This needs
steepest/optim/batching.py's map_matrices to pass the view to join_matrices.)
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import steepest

transformers = pytest.importorskip("transformers")  # installed by .ci/run (the "integration" extra)

CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
CONV1D_SUFFIXES = tuple(f"{c}.weight" for c in CONV1D)


def tiny_gpt2() -> nn.Module:
    config = transformers.GPT2Config(
        vocab_size=40,
        n_positions=8,
        n_embd=12,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


def with_linears(model: nn.Module) -> nn.Module:
    """A copy of model whose Conv1D modules are nn.Linear layers with weight W^T."""
    twin = transformers.GPT2LMHeadModel(model.config)
    twin.load_state_dict(model.state_dict())
    for name, module in list(twin.named_modules()):
        if type(module).__name__ != "Conv1D":
            continue
        d_in, d_out = module.weight.shape
        linear = nn.Linear(d_in, d_out)
        with torch.no_grad():
            linear.weight.copy_(module.weight.T)
            linear.bias.copy_(module.bias)
        parent, _, child = name.rpartition(".")
        setattr(twin.get_submodule(parent), child, linear)
    return twin


def conv1d_names(model: nn.Module) -> list[str]:
    return [
        f"{name}.weight"
        for name, module in model.named_modules()
        if type(module).__name__ == "Conv1D"
    ]


def test_routing_report_reads_conv1d_weights_transposed():
    model = tiny_gpt2()
    groups, report = steepest.param_groups(model)
    names = conv1d_names(model)
    assert len(names) == 2 * len(CONV1D) and all(n.endswith(CONV1D_SUFFIXES) for n in names)
    views = {n: g["matrix_view"] for g in groups for n in g["param_names"] if "matrix_view" in g}
    for route in report:
        if route.name not in names:
            continue
        d_in, d_out = route.shape
        assert route.algorithm == "muon" and views[route.name] == "transposed"
        parts = 3 if route.name.endswith("attn.c_attn.weight") else 1  # fused QKV: split
        assert route.matrices == ((d_out // parts, d_in),) * parts
        assert route.lr_multiplier == pytest.approx(math.sqrt(d_out / parts / d_in))  # spectral
        assert "Conv1D" in route.reason
    text = str(report)
    assert "transformer.h.0.mlp.c_fc.weight" in text and "48x12" in text  # (d_out, d_in)


@pytest.mark.parametrize("name", ["muon", "normuon", "shampoo", "soap"])
def test_one_step_equals_the_nn_linear_model_transposed(name):
    model = tiny_gpt2()
    twin = with_linears(model)
    ids = torch.randint(0, 40, (3, 8), generator=torch.Generator().manual_seed(1))
    losses = []
    for m in (model, twin):
        loss = m(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-6, atol=1e-6)  # same function
    for m in (model, twin):
        # the twin's c_attn is a plain Linear: split it as the Conv1D's known layout is
        groups, _ = steepest.param_groups(m, blocks={"*.c_attn.weight": [12] * 3})
        steepest.optimizer(name, groups, lr=0.05).step()
    conv = set(conv1d_names(model))
    twin_params = dict(twin.named_parameters())
    for pname, p in model.named_parameters():
        expected = twin_params[pname].detach()
        got = p.detach().T if pname in conv else p.detach()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=pname)
