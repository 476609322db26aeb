"""PyTorch Lightning: a LightningModule whose configure_optimizers returns steepest.Muon (and a
scheduler). Oracle: the same model, data and optimizer stepped by a plain loop; after three
steps the weights must agree.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import steepest

lightning = pytest.importorskip("lightning")  # installed by .ci/run (the "integration" extra)


def data(steps: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(2)
    return [
        (torch.randn(8, 6, generator=gen), torch.randn(8, 3, generator=gen)) for _ in range(steps)
    ]


def make_optimizer(net: nn.Module):
    groups, _ = steepest.param_groups(net)
    opt = steepest.Muon(groups, lr=0.05, weight_decay=0.01, adamw_lr=1e-2)
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)


class Regressor(lightning.LightningModule):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def training_step(self, batch, batch_idx):
        x, y = batch
        return (self.net(x) - y).pow(2).mean()

    def configure_optimizers(self):
        opt, schedule = make_optimizer(self.net)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def test_lightning_configure_optimizers_matches_plain_loop():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    reference = copy.deepcopy(net)
    initial = [p.detach().clone() for p in net.parameters()]
    module = Regressor(net)
    trainer = lightning.Trainer(
        max_steps=3,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = torch.utils.data.DataLoader(data(), batch_size=None)  # each item is a batch
    trainer.fit(module, train_dataloaders=loader)
    assert isinstance(trainer.optimizers[0], steepest.Muon)

    opt, schedule = make_optimizer(reference)
    for x, y in data():
        (reference(x) - y).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        schedule.step()
    for p, q in zip(net.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    assert all(not torch.equal(p, q) for p, q in zip(net.parameters(), initial, strict=True))
