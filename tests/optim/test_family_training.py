"""Every member with its defaults: trains two fixed problems, round-trips its state_dict and
resumes bit-identically; 8-bit momentum memory and trajectory; bad names and values."""

import copy
import io
import math

import pytest
import torch
from torch import nn

import steepest

MEMBERS = steepest.available()


def least_squares():
    """min mean((X W^T + b - Y)^2) over W (8 x 12) and b (8,), Y = X W*^T: a fixed problem."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(32, 12, generator=gen)
    Y = X @ (torch.randn(8, 12, generator=gen) / math.sqrt(12)).T
    W, b = nn.Parameter(torch.zeros(8, 12)), nn.Parameter(torch.zeros(8))
    return [W, b], lambda: ((X @ W.T + b - Y) ** 2).mean()


def make_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )


def batch(t):
    gen = torch.Generator().manual_seed(100 + t)
    return torch.randn(32, 6, generator=gen), torch.randint(0, 3, (32,), generator=gen)


def mlp_problem():
    model = make_mlp()
    x, y = batch(0)
    return list(model.parameters()), lambda: nn.functional.cross_entropy(model(x), y)


@pytest.mark.parametrize("problem", [least_squares, mlp_problem], ids=["lsq", "mlp"])
@pytest.mark.parametrize("name", MEMBERS)
def test_defaults_reduce_the_loss(name, problem):
    """40 full-batch steps with the member's defaults cut the loss by at least 0.5%."""
    params, loss_fn = problem()
    opt = steepest.optimizer(name, params)
    start = loss_fn().item()
    for _ in range(40):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    end = loss_fn().item()
    assert math.isfinite(end) and end < 0.995 * start, (start, end)


def train(model, opt, steps, start=0):
    for t in range(start, start + steps):
        x, y = batch(t)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def build(name, model):
    hp = {} if name == "scion" else {"weight_decay": 0.01}  # scion's decay 1 is its constraint
    return steepest.optimizer(name, model.parameters(), **hp)


@pytest.mark.parametrize("name", MEMBERS)
def test_state_dict_round_trip_and_bit_identical_resume(name):
    """Save after 3 steps, run 3 more; a fresh model + optimizer loaded from the checkpoint
    runs the same 3 steps to bit-identical parameters; state keys are eager and stable."""
    model = make_mlp()
    opt = build(name, model)
    keys = {i: set(s) for i, s in opt.state_dict()["state"].items()}
    train(model, opt, 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    saved = copy.deepcopy(opt.state_dict())
    assert {i: set(s) for i, s in saved["state"].items()} == keys
    train(model, opt, 3, start=3)
    buffer.seek(0)
    checkpoint = torch.load(buffer)
    resumed = make_mlp(seed=123)
    resumed.load_state_dict(checkpoint["model"])
    opt2 = build(name, resumed)
    opt2.load_state_dict(checkpoint["opt"])
    again = opt2.state_dict()
    for i, state in saved["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == again["state"][i][key].dtype, (i, key)
                assert torch.equal(value, again["state"][i][key]), (i, key)
    train(resumed, opt2, 3, start=3)
    for a, b in zip(resumed.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_8bit_momentum_memory_and_resume():
    """8-bit momentum state is <= 30% of the float32 buffers' bytes (measured: 25.4%), and an
    8-bit run resumes bit-identically (int8 codes survive torch's float cast on load)."""

    def momentum_bytes(opt):
        return sum(
            t.numel() * t.element_size()
            for s in opt.state.values()
            for k, t in s.items()
            if k.startswith("momentum")
        )

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
    )
    full = steepest.Muon(model.parameters())
    small = steepest.Muon(model.parameters(), momentum_8bit=True)
    ratio = momentum_bytes(small) / momentum_bytes(full)
    assert ratio <= 0.30, ratio
    mlp = make_mlp()
    opt = steepest.Signum(mlp.parameters(), momentum_8bit=True)
    train(mlp, opt, 2)
    checkpoint = copy.deepcopy({"model": mlp.state_dict(), "opt": opt.state_dict()})
    train(mlp, opt, 2, start=2)
    rewind = make_mlp(seed=123)
    rewind.load_state_dict(checkpoint["model"])
    opt2 = steepest.Signum(rewind.parameters(), momentum_8bit=True)
    opt2.load_state_dict(checkpoint["opt"])
    codes = [s["momentum_codes"] for s in opt2.state.values()]
    assert len(codes) == 6 and all(c.dtype == torch.int8 for c in codes)
    train(rewind, opt2, 2, start=2)
    for a, b in zip(rewind.parameters(), mlp.parameters(), strict=True):
        assert torch.equal(a, b)


def test_block_quantization_error_is_half_a_level():
    """dequantize(quantize(x)) differs from x by at most absmax(block) / 254 per entry (half of
    one of the 127 levels), on 1000 entries (4 blocks, the last one short); zeros stay zero."""
    from steepest.optim.quantize import BLOCK, dequantize, quantize, quantized_zeros

    x = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 1, 1000)
    x[:10] = 0
    q = quantized_zeros(x)
    quantize(x, q["codes"], q["absmax"])
    back = dequantize(q["codes"], q["absmax"], x)
    for b in range(4):
        block = slice(b * BLOCK, (b + 1) * BLOCK)
        bound = x[block].abs().max() / 254 * (1 + 1e-6)
        assert (back[block] - x[block]).abs().max() <= bound
    assert torch.equal(back[:10], torch.zeros(10))


def loss_curve(name, eight, steps=30):
    model = make_mlp()
    opt = steepest.optimizer(name, model.parameters(), momentum_8bit=eight)
    curve = []
    for t in range(steps):
        x, y = batch(t)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        curve.append(loss.item())
    return torch.tensor(curve)


@pytest.mark.parametrize("name", ["muon", "signum", "lion", "normuon"])
def test_8bit_trajectory_stays_close_to_float32(name):
    """30 MLP steps: the 8-bit run's loss curve stays within 1% (relative, every step) of the
    float32 run's. Measured: <= 0.1% for all four. (Parameters drift further for the polar
    members, 40-60% relative to the distance moved: U V^T of a 16 x 6 momentum amplifies the
    int8 noise in its small singular directions, without changing the loss.)"""
    full, small = loss_curve(name, False), loss_curve(name, True)
    assert ((small - full).abs() / full).max() <= 0.01


def test_scion_groups_follow_the_recommendation():
    """image: Spectral -> Spectral -> Sign; onehot: ColNorm (of the transposed embedding) ->
    Spectral -> Sign; vectors RMS; the groups train (loss drops)."""
    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 10))
    onehot = steepest.scion_groups(model, kind="onehot")
    assert [g["norm"] for g in onehot] == ["colnorm", "spectral", "sign", "rms"]
    assert onehot[0]["transpose"] is True and onehot[2]["radius"] == pytest.approx(1 / 8)
    image = steepest.scion_groups(make_mlp(), kind="image")
    assert [g["norm"] for g in image] == ["spectral", "spectral", "sign", "rms"]
    tokens = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(0))
    opt = steepest.Scion(onehot, lr=0.05)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(tokens), (tokens + 1) % 10)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_presets_are_classes_and_param_groups_work():
    """Every name maps to an importable class; steepest.param_groups' "muon" groups take the
    preset's algorithm and "adamw" groups stay AdamW."""
    for name in MEMBERS:
        assert isinstance(steepest.optimizer(name, make_mlp().parameters()), steepest.Steepest)
    assert (
        steepest.optimizer("specgd", [nn.Parameter(torch.zeros(2, 2))]).__class__ is steepest.SpecGD
    )
    groups, _ = steepest.param_groups(make_mlp())
    opt = steepest.Shampoo(groups)
    assert {g["algorithm"] for g in opt.param_groups} == {"shampoo", "adamw"}


def test_bad_names_and_values_raise_before_anything_is_written():
    params = [nn.Parameter(torch.zeros(3, 3))]
    with pytest.raises(ValueError, match=r"name='sgdd' is unknown.*'adamw'.*'uscion'"):
        steepest.optimizer("sgdd", params)
    with pytest.raises(ValueError, match=r"unknown schatten hyperparameters \['q'\]"):
        steepest.Schatten(params, q=3)
    with pytest.raises(ValueError, match=r"p=0.5 must be a number in \[1, inf\]"):
        steepest.Schatten(params, p=0.5)
    with pytest.raises(ValueError, match=r"rank=None; backend='randomized_svd' needs"):
        steepest.Muon(params, backend="randomized_svd")
    with pytest.raises(ValueError, match=r"rank=3 applies only to backend='randomized_svd'"):
        steepest.Muon(params, rank=3)
    with pytest.raises(ValueError, match=r"lr \* weight_decay = 1.5 must be <= 1"):
        steepest.Scion(params, lr=1.5)
    with pytest.raises(ValueError, match=r"norm='l2' is unknown.*spectral"):
        steepest.UScion(params, norm="l2")
    with pytest.raises(ValueError, match=r"precondition_every=0"):
        steepest.Shampoo(params, precondition_every=0)
    with pytest.raises(ValueError, match=r"momentum_8bit=1 must be True or False"):
        steepest.Signum(params, momentum_8bit=1)
