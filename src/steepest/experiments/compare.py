"""``steepest compare``: tune (optionally), train every optimizer on every seed, summarize.

Fairness: every optimizer starts from the same initialization and sees the same batches for a
given seed (both depend on the seed only), and all of them train the embeddings, head and vectors
with the same AdamW (see :mod:`steepest.experiments.optimizers`). Tuning runs on a seed that the
final runs do not use (``max(seeds) + 1``) and scores a learning rate by its best validation loss.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch

from steepest.experiments.optimizers import OPTIMIZERS, default_lrs, split_parameters
from steepest.experiments.runner import RunResult, train
from steepest.experiments.tasks.base import Task
from steepest.experiments.tune import GridSearch, tune_lr

__all__ = ["compare", "reach", "summarize"]


def compare(
    task: Task,
    optimizers: Sequence[str],
    *,
    steps: int,
    seeds: Sequence[int],
    device: torch.device,
    eval_every: int,
    tune: bool = False,
    lrs: dict[str, tuple[float, float]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the comparison and return its record (JSON-ready apart from ``runs``).

    Args:
        task: the task (``setup`` is called here).
        optimizers: names from :data:`~steepest.experiments.optimizers.OPTIMIZERS`; the
            reference is ``"adamw"`` if present, else the first.
        steps, seeds, device, eval_every: of every run.
        tune: tune ``lr`` then ``adamw_lr`` of each optimizer first (see :func:`tune_lr`).
        lrs: per optimizer ``(lr, adamw_lr)`` overriding the defaults (and the grid centre);
            the defaults are :func:`~steepest.experiments.optimizers.default_lrs` of the task's.
        progress: show tqdm bars.

    Returns:
        ``{"reference", "hyperparameters", "tuning", "runs": [RunResult], "summary"}``.
    """
    for name in optimizers:
        if name not in OPTIMIZERS:
            raise ValueError(
                f"optimizer={name!r} is unknown; choose one of {', '.join(OPTIMIZERS)}"
            )
    task.setup(device)
    chosen = {
        name: (lrs or {}).get(name) or default_lrs(name, task.default_lrs) for name in optimizers
    }
    tuning: dict[str, dict[str, GridSearch]] = {}
    if tune:
        tune_seed = max(seeds) + 1
        for name in optimizers:
            chosen[name], tuning[name] = _tune_one(
                task, name, chosen[name], steps, tune_seed, device, eval_every, progress
            )
    runs = [
        train(
            task,
            name,
            *chosen[name],
            steps=steps,
            seed=seed,
            eval_every=eval_every,
            device=device,
            progress=progress,
        )
        for seed in seeds
        for name in optimizers
    ]
    reference = "adamw" if "adamw" in optimizers else optimizers[0]
    return {
        "reference": reference,
        "hyperparameters": {n: {"lr": a, "adamw_lr": b} for n, (a, b) in chosen.items()},
        "tuning": tuning,
        "runs": runs,
        "summary": summarize(runs, reference, task.metrics),
    }


def _tune_one(
    task: Task,
    name: str,
    start: tuple[float, float],
    steps: int,
    seed: int,
    device: torch.device,
    eval_every: int,
    progress: bool,
) -> tuple[tuple[float, float], dict[str, GridSearch]]:
    """Tune ``lr`` at the default ``adamw_lr``, then ``adamw_lr`` at the best ``lr``."""

    def run(lr: float, adamw_lr: float) -> float:
        result = train(
            task,
            name,
            lr,
            adamw_lr,
            steps=steps,
            seed=seed,
            eval_every=eval_every,
            device=device,
            progress=progress,
        )
        return math.inf if result.diverged else result.best_val_loss

    lr, adamw_lr = start
    searches = {"lr": tune_lr(lambda x: run(x, adamw_lr), lr)}
    lr = searches["lr"].best
    torch.manual_seed(seed)
    model = task.build_model()
    if split_parameters(model, task.routing())[1]:  # the model has AdamW groups
        searches["adamw_lr"] = tune_lr(lambda x: run(lr, x), adamw_lr)
        adamw_lr = searches["adamw_lr"].best
    return (lr, adamw_lr), searches


def reach(run: RunResult, target: float) -> tuple[int | None, float | None]:
    """First evaluated step (and training time) at which ``run``'s val loss is <= ``target``."""
    for step, time_s, loss in zip(
        run.curve["step"], run.curve["time_s"], run.curve["val_loss"], strict=True
    ):
        if loss <= target:
            return int(step), time_s
    return None, None


def _stats(values: list[float | None]) -> dict[str, Any]:
    done = [v for v in values if v is not None and math.isfinite(v)]
    return {
        "mean": statistics.fmean(done) if done else None,
        "std": statistics.stdev(done) if len(done) > 1 else 0.0 if done else None,
        "n": len(done),
    }


def summarize(runs: list[RunResult], reference: str, metrics: Sequence[str] = ()) -> dict[str, Any]:
    """Per optimizer, mean / std / n over seeds of: best val loss, metrics at the best step,
    steps and training time to reach the reference's best val loss of the same seed, their ratios
    to the reference's own, and the step times. Runs that never reach it count in ``reached``."""
    ref = {r.seed: r for r in runs if r.optimizer == reference}
    rows: dict[str, dict[str, list[Any]]] = {}
    for r in runs:
        row = rows.setdefault(r.optimizer, {})
        target = ref[r.seed].best_val_loss
        steps, time_s = reach(r, target)
        ref_steps, ref_time = reach(ref[r.seed], target)
        best_index = r.curve["val_loss"].index(r.best_val_loss) if r.curve["val_loss"] else 0
        values = {
            "best_val_loss": r.best_val_loss,
            **{f"{m}_at_best": r.curve[m][best_index] for m in metrics},
            "steps_to_reference_best": steps,
            "time_to_reference_best_s": time_s,
            "steps_ratio": steps / ref_steps if steps is not None and ref_steps else None,
            "time_ratio": time_s / ref_time if time_s is not None and ref_time else None,
            "mean_step_time_ms": r.mean_step_time_ms,
            "mean_opt_step_time_ms": r.mean_opt_step_time_ms,
        }
        for key, value in values.items():
            row.setdefault(key, []).append(value)
    return {
        name: {
            **{k: _stats(v) for k, v in row.items()},
            "reached": sum(s is not None for s in row["steps_to_reference_best"]),
            "seeds": len(row["best_val_loss"]),
        }
        for name, row in rows.items()
    }
