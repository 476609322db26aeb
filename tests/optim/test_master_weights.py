"""master_weights=True: bf16/fp16 parameters updated through float32 master copies.

Oracle: the same optimizer on float32 parameters that start at the bf16 values and receive the
bf16 gradients cast to float32. The master copies must equal that run exactly, and the 16-bit
parameters its values rounded once.
"""

from __future__ import annotations

import copy

import pytest
import torch

import steepest

SHAPES = [(8, 4), (4, 8), (6,)]


def bf16_and_fp32_twins(dtype=torch.bfloat16):
    torch.manual_seed(0)
    low = [torch.nn.Parameter(torch.randn(*s).to(dtype)) for s in SHAPES]
    ref = [torch.nn.Parameter(p.detach().float()) for p in low]
    return low, ref


def feed(low, ref, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    for p, q in zip(low, ref, strict=True):
        g = (scale * torch.randn(p.shape, generator=gen)).to(p.dtype)
        p.grad, q.grad = g, g.float()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_masters_equal_the_float32_run_and_params_are_its_rounding(dtype):
    low, ref = bf16_and_fp32_twins(dtype)
    kwargs = dict(lr=0.02, weight_decay=0.1, adamw_lr=1e-3)
    opt = steepest.Muon(low, master_weights=True, **kwargs)
    oracle = steepest.Muon(ref, **kwargs)
    for t in range(5):
        feed(low, ref, t)
        opt.step()
        oracle.step()
    for p, q in zip(low, ref, strict=True):
        state = opt.state[p]
        assert torch.equal(state["master_param"], q.detach())
        assert torch.equal(p.detach(), q.detach().to(dtype))
        assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


def test_updates_below_half_an_ulp_accumulate_only_with_master_weights():
    plain_low, _ = bf16_and_fp32_twins()
    low, ref = bf16_and_fp32_twins()
    start = [p.detach().clone() for p in low]
    kwargs = dict(lr=1e-5, adamw_lr=1e-7)  # |update| ~ 1e-5 << bf16 half-ulp at |w| ~ 1
    plain = steepest.Muon(plain_low, **kwargs)
    opt = steepest.Muon(low, master_weights=True, **kwargs)
    oracle = steepest.Muon(ref, **kwargs)
    for t in range(300):
        feed(plain_low, ref, t)
        plain.step()
        feed(low, ref, t)
        opt.step()
        oracle.step()
    moved_plain = sum(int((p.detach() != s).sum()) for p, s in zip(plain_low, start, strict=True))
    moved = sum(int((p.detach() != s).sum()) for p, s in zip(low, start, strict=True))
    assert moved_plain == 0  # every update rounded away
    assert moved > 0
    for p, q in zip(low, ref, strict=True):
        assert torch.equal(p.detach(), q.detach().to(torch.bfloat16))


def test_resume_with_master_weights_is_bit_identical():
    low, ref = bf16_and_fp32_twins()
    opt = steepest.Muon(low, master_weights=True, lr=0.02)
    for t in range(3):
        feed(low, ref, t)
        opt.step()
    saved_params = [p.detach().clone() for p in low]
    saved_state = copy.deepcopy(opt.state_dict())
    for t in range(3, 6):
        feed(low, ref, t)
        opt.step()
    resumed = [torch.nn.Parameter(p.clone()) for p in saved_params]
    opt2 = steepest.Muon(resumed, master_weights=True, lr=0.02)
    opt2.load_state_dict(saved_state)
    for p in resumed:  # torch would have cast the float32 state to bf16; it must stay float32
        assert opt2.state[p]["master_param"].dtype == torch.float32
    for t in range(3, 6):
        feed(resumed, ref, t)
        opt2.step()
    for p, q in zip(low, resumed, strict=True):
        assert torch.equal(p.detach(), q.detach())
        assert torch.equal(opt.state[p]["master_param"], opt2.state[q]["master_param"])


def test_float32_parameters_get_no_master_copy():
    p = torch.nn.Parameter(torch.randn(4, 4))
    opt = steepest.Muon([p], master_weights=True)
    assert "master_param" not in opt.state[p]


def test_bad_master_weights_flag_raises():
    p = torch.nn.Parameter(torch.randn(4, 4, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="master_weights='yes'"):
        steepest.Muon([p], master_weights="yes")


@pytest.mark.parametrize("name", ["normuon", "signum", "lion", "soap"])
def test_presets_take_master_weights(name):
    low, ref = bf16_and_fp32_twins()
    opt = steepest.optimizer(name, low, master_weights=True)
    oracle = steepest.optimizer(name, ref)
    for t in range(3):
        feed(low, ref, t)
        opt.step()
        oracle.step()
    for p, q in zip(low, ref, strict=True):
        assert torch.equal(opt.state[p]["master_param"], q.detach())
