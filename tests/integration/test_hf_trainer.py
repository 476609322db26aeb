"""Hugging Face transformers' Trainer driving steepest.Muon on a tiny random GPT-2, with a
checkpoint saved and resumed.

Oracle: an uninterrupted 4-step run. A second run resumed from the step-2 checkpoint (fresh
model and fresh optimizer, state loaded by the Trainer) must end on the same weights, and the
optimizer state must have been restored (its momentum buffers equal the first run's).
"""

from __future__ import annotations

import pytest
import torch

import steepest

transformers = pytest.importorskip("transformers")  # installed by .ci/run (the "integration" extra)


def tiny_gpt2():
    config = transformers.GPT2Config(
        vocab_size=64,
        n_positions=16,
        n_embd=32,
        n_layer=1,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


def dataset(count: int = 32):
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 64, (count, 16), generator=gen)
    return [{"input_ids": row, "labels": row} for row in ids]


def trainer_for(model, out_dir, max_steps):
    groups, _ = steepest.param_groups(model)
    opt = steepest.Muon(groups, lr=0.02, adamw_lr=1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    args = transformers.TrainingArguments(
        output_dir=str(out_dir),
        max_steps=max_steps,
        per_device_train_batch_size=8,
        save_strategy="steps",
        save_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )
    return transformers.Trainer(
        model=model, args=args, train_dataset=dataset(), optimizers=(opt, schedule)
    ), opt


def test_trainer_runs_muon_and_resumes_from_checkpoint(tmp_path):
    model = tiny_gpt2()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer, opt = trainer_for(model, tmp_path / "full", 4)
    trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 4 and losses[-1] < losses[0]
    # "learning_rate" is Muon's (param_groups puts the muon groups first), not AdamW's 1e-3
    logged = [r["learning_rate"] for r in trainer.state.log_history if "learning_rate" in r]
    assert logged and all(
        any(lr == pytest.approx(0.02 / (1 + s)) for s in range(5)) for lr in logged
    )
    hidden = "transformer.h.0.mlp.c_fc.weight"
    assert not torch.equal(dict(model.named_parameters())[hidden], initial[hidden])
    assert (tmp_path / "full" / "checkpoint-2").is_dir()

    resumed_model = tiny_gpt2()
    resumed, resumed_opt = trainer_for(resumed_model, tmp_path / "resumed", 4)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    for (name, p), q in zip(model.named_parameters(), resumed_model.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-6, rtol=1e-5, msg=f"{name} differs")
    for p, q in zip(model.parameters(), resumed_model.parameters(), strict=True):
        for key, value in opt.state[p].items():
            torch.testing.assert_close(resumed_opt.state[q][key], value, atol=1e-6, rtol=1e-5)
