"""One training run: seed, build, train with a schedule, evaluate along the way, time it.

The loop reads top to bottom (nanoGPT-style): evaluate, set the learning rates, draw a batch,
forward and backward, optimizer step (timed alone), zero the gradients.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from steepest.experiments.optimizers import ADAMW_BETAS, build_optimizer
from steepest.experiments.tasks.base import Task

__all__ = ["RunResult", "lr_factor", "parameter_hash", "train"]

SCHEDULES = ("cosine", "linear", "constant")


@dataclasses.dataclass
class RunResult:
    """The record of one run; ``curve`` maps ``step``, ``time_s`` and metric names to lists.

    ``time_s`` is training time (forward, backward, optimizer step) accumulated up to each
    evaluation, without the time spent evaluating. ``diverged`` is set when a loss was not
    finite, in which case the run stopped there.
    """

    optimizer: str
    seed: int
    lr: float
    adamw_lr: float
    steps: int
    curve: dict[str, list[float]]
    train_time_s: float
    mean_step_time_ms: float
    mean_opt_step_time_ms: float
    init_hash: str
    data_hash: str
    diverged: bool

    @property
    def best_val_loss(self) -> float:
        """Smallest finite validation loss along the run (``inf`` if there is none)."""
        return min((v for v in self.curve["val_loss"] if math.isfinite(v)), default=math.inf)


def lr_factor(step: int, steps: int, warmup: float, schedule: str) -> float:
    """Multiplier of the base learning rates at ``step`` of ``steps``.

    Linear warmup over ``round(warmup * steps)`` steps, then ``schedule``: ``cosine`` (to 0 at
    ``steps``), ``linear`` (to 0) or ``constant``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} is unknown; choose one of {', '.join(SCHEDULES)}")
    warm = round(warmup * steps)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    return 1.0


def scale_lrs(
    optimizers: Sequence[torch.optim.Optimizer], base: Sequence[Sequence[float]], factor: float
) -> None:
    """Set every group's lr to its base lr (``base[i][j]`` for optimizer i, group j) times
    ``factor``."""
    for opt, lrs in zip(optimizers, base, strict=True):
        for group, lr in zip(opt.param_groups, lrs, strict=True):
            group["lr"] = lr * factor


def parameter_hash(model: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes, in order: equal hashes mean bit-identical weights."""
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _hash_batch(digest: Any, batch: Any) -> None:
    """Feed the bytes of every tensor in ``batch`` (nested tuples / lists) to ``digest``."""
    if isinstance(batch, torch.Tensor):
        digest.update(batch.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(batch, (tuple, list)):
        for item in batch:
            _hash_batch(digest, item)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(
    task: Task,
    optimizer: str,
    lr: float,
    adamw_lr: float,
    *,
    steps: int,
    seed: int,
    eval_every: int,
    device: torch.device,
    warmup: float | None = None,
    schedule: str | None = None,
    beta2: float | None = None,
    progress: bool = True,
) -> RunResult:
    """Train ``task``'s model with ``optimizer`` from the seed's initialization and data order.

    Args:
        task: a task on which ``setup(device)`` was called.
        optimizer: a name of :data:`steepest.experiments.optimizers.OPTIMIZERS`.
        lr, adamw_lr: base learning rates of the matrix rule and of the AdamW groups.
        steps: training steps; evaluations at 0, every ``eval_every`` and at ``steps``.
        seed: seeds the initialization (``torch.manual_seed``) and the data order.
        eval_every: evaluation interval in steps.
        device: where to train.
        warmup, schedule: override the task's defaults (see :func:`lr_factor`).
        beta2: the AdamW second-moment factor (default that of
            :data:`~steepest.experiments.optimizers.ADAMW_BETAS`).
        progress: show a tqdm bar.

    Returns:
        The :class:`RunResult`.
    """
    warmup = task.warmup if warmup is None else warmup
    schedule = task.schedule if schedule is None else schedule
    torch.manual_seed(seed)
    model = task.build_model()
    init_hash = parameter_hash(model)
    betas = ADAMW_BETAS if beta2 is None else (ADAMW_BETAS[0], beta2)
    optimizers = build_optimizer(
        optimizer, model, lr, adamw_lr, adamw_betas=betas, routing=task.routing()
    )
    base_lrs = [[g["lr"] for g in opt.param_groups] for opt in optimizers]
    batches = task.batches(seed)
    data_digest = hashlib.sha256()
    curve: dict[str, list[float]] = {"step": [], "time_s": [], "train_loss": [], "val_loss": []}
    curve.update({m: [] for m in task.metrics})
    train_time = opt_time = 0.0
    train_loss = math.nan
    diverged = False
    bar = tqdm(total=steps, desc=f"{optimizer} seed {seed}", leave=False, disable=not progress)
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps or diverged:
            model.eval()
            metrics = task.evaluate(model)
            model.train()
            curve["step"].append(step)
            curve["time_s"].append(train_time)
            curve["train_loss"].append(train_loss)
            for name, value in metrics.items():
                curve[name].append(value)
            bar.set_postfix(val_loss=f"{metrics['val_loss']:.4f}")
            diverged = diverged or not math.isfinite(metrics["val_loss"])
        if step == steps or diverged:
            break
        scale_lrs(optimizers, base_lrs, lr_factor(step, steps, warmup, schedule))
        batch = next(batches)
        _hash_batch(data_digest, batch)
        _sync(device)
        t0 = time.perf_counter()
        loss = task.loss(model, batch)
        torch.autograd.backward(loss)
        _sync(device)
        t1 = time.perf_counter()
        for opt in optimizers:
            opt.step()
        _sync(device)
        t2 = time.perf_counter()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        train_time += time.perf_counter() - t0
        opt_time += t2 - t1
        train_loss = loss.item()
        diverged = not math.isfinite(train_loss)
        bar.update(1)
    bar.close()
    done = max(1, curve["step"][-1])
    return RunResult(
        optimizer=optimizer,
        seed=seed,
        lr=lr,
        adamw_lr=adamw_lr,
        steps=steps,
        curve=curve,
        train_time_s=train_time,
        mean_step_time_ms=1e3 * train_time / done,
        mean_opt_step_time_ms=1e3 * opt_time / done,
        init_hash=init_hash,
        data_hash=data_digest.hexdigest(),
        diverged=diverged,
    )
