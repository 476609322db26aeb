"""torch.optim behaviours users rely on: copies, add_param_group, presets on routed groups,
schedulers' momentum keys and lr ratios, weight decay exclusions, atomic failing steps, errors."""

import copy
import pickle
import warnings

import pytest
import torch
from torch import nn

import steepest
from steepest.optim.compat import peak_lrs


class TinyLM(nn.Module):
    def __init__(self, vocab=11, d=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.fc = nn.Linear(d, 2 * d)
        self.norm = nn.LayerNorm(2 * d)
        self.head = nn.Linear(2 * d, vocab)

    def forward(self, idx):
        return self.head(self.norm(torch.relu(self.fc(self.emb(idx)))))


def loss_of(model, seed):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 11, (4, 5), generator=g)
    return nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten())


def train(model, opt, seeds):
    for seed in seeds:
        opt.zero_grad()
        loss_of(model, seed).backward()
        opt.step()


def make(name="muon", **kw):
    torch.manual_seed(0)
    model = TinyLM()
    groups, _ = steepest.param_groups(model)
    return model, steepest.optimizer(name, groups, **kw)


def snapshot(model, opt):
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = {
        (i, k): v.clone()
        for i, s in enumerate(opt.state.values())
        for k, v in s.items()
        if torch.is_tensor(v)
    }
    return weights, state


def assert_same(model, opt, snap):
    weights, state = snap
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    for i, s in enumerate(opt.state.values()):
        for k, v in s.items():
            if torch.is_tensor(v):
                assert torch.equal(v, state[(i, k)]), (i, k)


@pytest.mark.parametrize("name", steepest.available())
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copy_steps_like_the_original(name, how):
    """A copy of a preset after 2 steps takes the same next 2 steps as the original."""
    model, opt = make(name)
    train(model, opt, [0, 1])
    if how == "deepcopy":
        twin_model, twin = copy.deepcopy((model, opt))
    else:
        twin_model, twin = pickle.loads(pickle.dumps((model, opt)))
    assert type(twin) is type(opt) and twin.nonfinite == opt.nonfinite
    train(model, opt, [2, 3])
    train(twin_model, twin, [2, 3])
    pairs = zip(model.state_dict().items(), twin_model.state_dict().values(), strict=True)
    for (k, a), b in pairs:
        assert torch.equal(a, b), k
    mine, theirs = opt.state_dict(), twin.state_dict()
    assert mine["skipped_steps"] == theirs["skipped_steps"]
    assert mine["param_groups"] == theirs["param_groups"]
    for i, s in mine["state"].items():
        for k, v in s.items():
            assert torch.equal(v, theirs["state"][i][k]) if torch.is_tensor(v) else True


def test_add_param_group_to_named_groups_and_mixed_groups():
    """Unnamed groups join named ones (names generated), named ones join unnamed ones, and a
    matrix with its bias is split by ndim as the constructor splits plain tensors."""
    model, opt = make()
    extra = nn.Linear(4, 6)
    opt.add_param_group({"params": list(extra.parameters()), "lr": 0.05})
    assert [g["algorithm"] for g in opt.param_groups[-2:]] == ["muon", "adamw"]
    assert opt.param_groups[-2]["params"] == [extra.weight]
    assert opt.param_groups[-1]["params"] == [extra.bias]
    assert opt.param_groups[-2]["lr"] == opt.param_groups[-1]["lr"] == 0.05
    assert len(opt.param_groups[-2]["param_names"]) == 1
    new_part = TinyLM(vocab=7, d=4)  # routed by param_groups' rules, then added group by group
    for group in steepest.param_groups(new_part)[0]:
        opt.add_param_group(group)
    routed = {n: g["algorithm"] for g in opt.param_groups for n in g.get("param_names", [])}
    assert routed["fc.weight"] == "muon" and routed["emb.weight"] == "adamw"
    assert sum(1 for g in opt.param_groups for p in g["params"] if p is new_part.head.weight) == 1
    plain = steepest.Muon([nn.Parameter(torch.randn(3, 3))])
    named = dict(steepest.param_groups(nn.Linear(2, 3))[0][0])
    plain.add_param_group(named)
    assert "param_names" not in plain.param_groups[-1]
    # the added groups train: the extra weight moves by lr * spectral scale * msign
    extra.weight.grad = torch.randn(6, 4)
    before = extra.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, extra.weight)


@pytest.mark.parametrize("name", steepest.available())
def test_every_preset_takes_param_groups_output(name):
    """steepest.optimizer(name, param_groups(model)[0]): the matrix groups run the preset's
    algorithm (AdamW for the adamw preset), the others stay on AdamW."""
    model, opt = make(name)
    algorithms = {g["algorithm"] for g in opt.param_groups}
    expected = getattr(steepest.optim.PRESETS[name], "algorithm", "muon")
    assert algorithms == {expected, "adamw"}
    train(model, opt, [0])


@pytest.mark.parametrize("scheduler", ["onecycle", "cyclic"])
def test_scheduler_momentum_keys_and_lr_ratio(scheduler):
    """Per-group max_lr lists (peak_lrs) keep Muon:AdamW; the cycled momentum reaches Muon's
    "momentum" and AdamW's betas[0], and no group keeps the other's key after a step."""
    model, opt = make(lr=0.02, adamw_lr=3e-4)
    ratio = {g["algorithm"]: g["lr"] for g in opt.param_groups}
    assert ratio == {"muon": 0.02, "adamw": 3e-4}
    peaks = peak_lrs(opt, 2.0)
    if scheduler == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peaks, total_steps=6)
    else:
        bases = peak_lrs(opt, 0.1)
        sched = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=bases, max_lr=peaks, step_size_up=2)
    betas1 = []
    for seed in range(4):
        train(model, opt, [seed])
        for g in opt.param_groups:
            if g["algorithm"] == "adamw":
                assert "momentum" not in g  # moved into betas by the step
            else:
                assert "betas" not in g
        sched.step()
        by = {g["algorithm"]: g for g in opt.param_groups}
        assert by["muon"]["lr"] / by["adamw"]["lr"] == pytest.approx(0.02 / 3e-4)
        betas1.append(by["adamw"].get("momentum", by["adamw"]["betas"][0]))
        # the same cycled value reaches both groups' own keys
        assert by["muon"]["momentum"] == pytest.approx(betas1[-1])
    assert len(set(betas1)) > 1 and all(0.8 <= b <= 0.95 for b in betas1)
    train(model, opt, [9])
    adamw = next(g for g in opt.param_groups if g["algorithm"] == "adamw")
    assert adamw["betas"][0] == pytest.approx(betas1[-1]) and "momentum" not in adamw


def test_scalar_max_lr_warns_once():
    model, opt = make(lr=0.02, adamw_lr=3e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=5)
    with pytest.warns(UserWarning, match=r"max_lr=0.01.*erases the ratio.*peak_lrs"):
        train(model, opt, [0])
    sched.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(model, opt, [1])
    with pytest.raises(ValueError, match="factor=0"):
        peak_lrs(opt, 0)


def test_dtype_change_mid_training_fails_cleanly():
    """After model.to(bfloat16) the step names the parameter and the dtypes, changes no weight
    and no state, and the suggested fix (reloading the state) makes the step work."""
    model, opt = make()
    train(model, opt, [0, 1])
    model.to(torch.bfloat16)
    loss_of(model, 2).backward()
    snap = snapshot(model, opt)
    with pytest.raises(
        TypeError, match=r"'fc.weight'.*now torch.bfloat16.*torch.float32.*load_state_dict"
    ):
        opt.step()
    assert_same(model, opt, snap)
    opt.load_state_dict(opt.state_dict())
    opt.step()
    assert all(
        s["momentum_buffer"].dtype == torch.bfloat16
        for s in opt.state.values()
        if "momentum_buffer" in s
    )


def test_unpack_hint_and_tensor_lr():
    model = TinyLM()
    with pytest.raises(TypeError, match=r"params\[0\].*unpack it, groups, report"):
        steepest.Muon(steepest.param_groups(model))
    with pytest.raises(
        ValueError, match=r"Muon: lr=tensor\(0.0100\) is a tensor; pass a Python float \(lr=0.01"
    ):
        steepest.Muon(model.parameters(), lr=torch.tensor(0.01))
    with pytest.raises(ValueError, match=r"adamw_lr=tensor"):
        steepest.Muon(model.parameters(), adamw_lr=torch.tensor(0.01))


@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled"])
def test_tiny_gradient_moves_in_proportion_below_eps(compile_):
    """A direction D with ||D||_F below eps = 1e-7 steps lr * scale * (||D||_F / eps) U V^T;
    at or above eps the full lr * scale * U V^T (the SVD oracle); eps=0 is scale invariant."""
    torch.manual_seed(0)
    G = torch.randn(6, 4, dtype=torch.float64)
    polar = torch.linalg.svd(G, full_matrices=False)
    UV = polar.U @ polar.Vh
    for size, eps, expected in [(1e-30, 1e-7, 1e-23), (1e-9, 1e-7, 1e-2), (1.0, 1e-7, 1.0)]:
        for eps_, want in [(eps, expected), (0.0, 1.0)]:
            w = nn.Parameter(torch.zeros(6, 4, dtype=torch.float64))
            opt = steepest.Muon(
                [w], lr=1.0, momentum=0.0, backend="svd", scale=1.0, eps=eps_, compile=compile_
            )
            w.grad = G / G.norm() * size
            opt.step()
            torch.testing.assert_close(-w.detach(), want * UV, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match=r"Muon: eps=-1 must be a finite number >= 0"):
        steepest.Muon([w], eps=-1)


def test_tiny_gradient_on_the_fused_compiled_step():
    """The fused step (compile=True, Nesterov momentum 0.5, polar_express) damps as the eager
    one: the direction D = 0.75 G has ||D||_F = 0.75 size, so the step is the full one times
    min(1, 0.75 size / 1e-7): 7.5e-3 of it for size 1e-9, about 7.5e-24 for 1e-30."""
    torch.manual_seed(0)
    G = torch.randn(8, 8)
    for size, ratio in [(1e-30, 7.5e-24), (1e-9, 7.5e-3)]:
        largest = []
        for compile_ in (False, True):
            steps = []
            for s in (size, 1.0):
                w = nn.Parameter(torch.zeros(8, 8))
                opt = steepest.Muon([w], lr=1.0, momentum=0.5, scale=1.0, compile=compile_)
                w.grad = G / G.norm() * s
                opt.step()
                steps.append(w.detach().double())
            # the tiny step is the full one scaled (entries, as the norm underflows in float32)
            torch.testing.assert_close(steps[0], steps[1] * ratio, rtol=1e-2, atol=0)
            largest.append(steps[0].abs().max().item())
        assert largest[0] == pytest.approx(largest[1], rel=1e-3)


def test_tiny_gradient_on_the_prescaled_float16_stack():
    """The fused step's prescaled float16 stack (polar_dtype=float16, also on CPU) knows the
    direction's norm within a factor 2 (its next prescale 2^-e, norm = f 2^e, f in [1/2, 1)):
    for ||D||_F = 7.5e-10 the step is between 7.5e-3 and 1.5e-2 of the full one."""
    torch.manual_seed(0)
    G = torch.randn(8, 8)
    largest = []
    for size in (1e-9, 1.0, 1e-30):
        w = nn.Parameter(torch.zeros(8, 8))
        opt = steepest.Muon(
            [w], lr=1.0, momentum=0.5, scale=1.0, compile=True, polar_dtype=torch.float16
        )
        w.grad = G / G.norm() * size
        opt.step()
        assert opt._fast._prescales  # the prescaled path ran
        largest.append(w.detach().abs().max().item())
    assert 7.5e-3 <= largest[0] / largest[1] <= 1.5e-2
    assert largest[2] <= 2e-23 * largest[1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the GPU fast path)")
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_tiny_gradient_on_the_gpu_fast_path(cuda_graph):
    """The default GPU path (compile, float16 prescaled stacks through the Triton kernels,
    optionally recorded) damps a small direction within the documented factor 2, and a
    1e-30 gradient moves nothing."""
    torch.manual_seed(0)
    G = torch.randn(64, 256, device="cuda")
    largest = []
    for size in (1e-9, 1.0, 1e-30):
        w = nn.Parameter(torch.zeros(64, 256, device="cuda"))
        opt = steepest.Muon(
            [w], lr=1.0, momentum=0.5, scale=1.0, compile=True, cuda_graph=cuda_graph
        )
        for _ in range(3 if cuda_graph else 1):  # a recording replays from its third step
            w.data.zero_()
            for s in opt.state.values():
                s["momentum_buffer"].zero_()
            w.grad = G / G.norm() * size
            opt.step()
        largest.append(w.detach().abs().max().item())
    assert 7.5e-3 <= largest[0] / largest[1] <= 1.5e-2
    assert largest[2] <= 2e-23 * largest[1]
