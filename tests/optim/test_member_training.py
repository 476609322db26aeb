"""Each newer member trains with its defaults: 60 full-batch steps of a small tanh MLP on a
fixed 3-class problem cut the cross-entropy by at least 10% (a stated margin; the measured
end losses from 1.109 are in MEASURED, with muon's 0.706 and adamw's 1.048 for scale)."""

import pytest
import torch
from torch import nn

import steepest

#: member -> the loss after 60 steps measured on this problem (CPU, float32)
MEASURED = {"mars_muon": 0.892, "adamuon": 0.963, "dion": 0.713, "psgd_kron": 0.832}


def problem():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)
    )
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(128, 10, generator=gen), torch.randint(0, 3, (128,), generator=gen)
    return model, lambda: nn.functional.cross_entropy(model(x), y)


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_defaults_cut_the_loss_by_ten_percent(name):
    model, loss_fn = problem()
    opt = steepest.optimizer(name, model.parameters())
    start = loss_fn().item()
    for _ in range(60):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    end = loss_fn().item()
    assert end < 0.9 * start, (start, end)
