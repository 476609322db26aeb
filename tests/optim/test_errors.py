"""Bad input raises a clear error naming the parameter and value, and nothing is written."""

import math

import pytest
import torch
from torch import nn

import steepest


def make():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    return model


def snapshot(model, opt):
    weights = [p.detach().clone() for p in model.parameters()]
    state = {i: {k: v.clone() for k, v in s.items()} for i, s in opt.state_dict()["state"].items()}
    return weights, state, [dict(g, params=None) for g in opt.param_groups]


def assert_unchanged(model, opt, snap):
    weights, state, groups = snap
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), weights, strict=True))
    now = opt.state_dict()["state"]
    assert now.keys() == state.keys()
    for i, s in state.items():
        assert all(torch.equal(v, now[i][k]) for k, v in s.items()), i
    assert [dict(g, params=None) for g in opt.param_groups] == groups


def backward(model, poison=None):
    model.zero_grad()
    model(torch.randn(3, 4)).square().sum().backward()
    if poison is not None:
        name, value = poison
        dict(model.named_parameters())[name].grad.view(-1)[0] = value


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"lr": -0.1}, ["Muon", "lr=-0.1", ">= 0"]),
        ({"momentum": 1.2}, ["Muon: momentum=1.2 not in [0, 1); try 0.95"]),
        ({"momentum": -0.5}, ["momentum=-0.5", "[0, 1)"]),
        ({"backend": "qr"}, ["backend='qr'", "svd", "newton_schulz", "polar_express"]),
        ({"scale": "spectal"}, ["scale='spectal'", "spectral", "jordan", "rms"]),
        ({"scale": -1.0}, ["scale=-1.0", "float > 0"]),
        ({"adamw_lr": -1.0}, ["adamw_lr=-1.0"]),
        ({"adamw_betas": (0.9, 1.5)}, ["adamw_betas[1]=1.5", "[0, 1)"]),
        ({"weight_decay": math.nan}, ["weight_decay=nan"]),
        ({"nonfinite": "warn"}, ["nonfinite='warn'", "raise", "skip", "ignore"]),
        ({"steps": 0}, ["steps=0"]),
        ({"coefficients": "jordan"}, ["coefficients='jordan'", "newton_schulz"]),
        ({"backend": "newton_schulz", "coefficients": "quartic"}, ["quartic"]),
        ({"polar_dtype": torch.int32}, ["dtype=torch.int32"]),
    ],
)
def test_bad_hyperparameters_raise_before_writing(kwargs, words):
    model = make()
    weights = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError) as info:
        steepest.Muon(model.parameters(), **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), weights, strict=True))


def test_bad_group_is_not_added():
    model = make()
    opt = steepest.Muon(list(model.parameters())[:2])
    snap = snapshot(model, opt)
    rest = list(model.parameters())[2:]
    with pytest.raises(ValueError, match=r"param group 2.*momentum=1.5 not in \[0, 1\)"):
        opt.add_param_group({"params": rest[:1], "algorithm": "muon", "momentum": 1.5})
    with pytest.raises(ValueError, match=r"algorithm='sgd' is unknown.*adamw.*muon"):
        opt.add_param_group({"params": rest[:1], "algorithm": "sgd"})
    with pytest.raises(ValueError, match=r"unknown keys \['momentun'\]"):
        opt.add_param_group({"params": rest[:1], "algorithm": "muon", "momentun": 0.9})
    with pytest.raises(ValueError, match=r"ndim >= 2.*adamw"):
        opt.add_param_group({"params": rest[1:], "algorithm": "muon"})
    with pytest.raises(ValueError, match=r"blocks=\[1, 1, 1\].*2 rows"):
        opt.add_param_group({"params": rest[:1], "algorithm": "muon", "blocks": [1, 1, 1]})
    assert_unchanged(model, opt, snap)
    opt.add_param_group({"params": rest[:1]})  # no algorithm: a matrix goes to muon
    opt.add_param_group({"params": rest[1:], "lr": 0.1})  # a vector to adamw
    assert [g["algorithm"] for g in opt.param_groups] == ["muon", "adamw", "muon", "adamw"]
    assert opt.param_groups[3]["lr"] == 0.1 and opt.param_groups[2]["lr"] == 0.02


def test_complex_parameter_rejected():
    z = nn.Parameter(torch.randn(3, 3, dtype=torch.complex64))
    with pytest.raises(TypeError, match="complex"):
        steepest.Muon([z])


def test_sparse_gradient_rejected_before_writing():
    emb = nn.Embedding(10, 4, sparse=True)
    lin = nn.Linear(4, 4)
    model = nn.Sequential(emb, lin)
    opt = steepest.Muon(
        [
            {"params": [lin.weight], "algorithm": "muon"},
            {"params": [emb.weight], "algorithm": "adamw"},
        ]
    )
    snap = snapshot(model, opt)
    model(torch.tensor([1, 2, 3])).sum().backward()
    with pytest.raises(
        TypeError, match=r"param_groups\[1\]\['params'\]\[0\] \(shape \(10, 4\)\) has a sparse"
    ):
        opt.step()
    assert_unchanged(model, opt, snap)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_nonfinite_gradient_raises_naming_parameter(bad):
    model = make()
    groups, _ = steepest.param_groups(model)
    opt = steepest.Muon(groups)
    backward(model)
    opt.step()  # some state exists now
    snap = snapshot(model, opt)
    backward(model, poison=("2.bias", bad))  # the last group: all others would be written first
    with pytest.raises(
        FloatingPointError, match=r"'2\.bias' \(shape \(2,\)\).*nothing was updated"
    ):
        opt.step()
    assert_unchanged(model, opt, snap)
    assert opt.skipped_steps == 0


def test_nonfinite_skip_counts_and_resumes():
    model = make()
    opt = steepest.Muon(model.parameters(), nonfinite="skip")
    snap = snapshot(model, opt)
    backward(model, poison=("0.weight", math.nan))
    opt.step()
    opt.step()
    assert opt.skipped_steps == 2
    assert_unchanged(model, opt, snap)
    assert opt.state_dict()["skipped_steps"] == 2
    backward(model)
    opt.step()
    assert opt.skipped_steps == 2
    assert not torch.equal(next(model.parameters()), snap[0][0])
