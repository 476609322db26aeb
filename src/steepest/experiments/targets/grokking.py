"""``grokking``: steps until modular addition generalizes, Muon against AdamW, with weight decay.

The claim (Tveit, Remseth, Skogvold, "Muon optimizer accelerates grokking", arXiv 2504.16041):
on algorithmic tasks Muon reaches generalization (the grokking epoch) about a third sooner than
AdamW. Protocol here: the ``modular-addition`` task ((a + b) mod p from a fraction of the pairs,
an embedding + ReLU MLP), decoupled weight decay on every parameter, constant lr after a short
warmup; a run generalizes at the first evaluated step whose held-out accuracy reaches
``threshold`` (Power et al.'s 95%). Each optimizer's matrix lr is tuned on a coarse log grid
(factor sqrt(10), widened until the best is inside) on a tuning seed not among the reported
ones, by the steps to generalize.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from steepest.experiments.optimizers import build_optimizer
from steepest.experiments.runner import lr_factor, scale_lrs
from steepest.experiments.targets._output import OUTCOME, pyplot, write_record
from steepest.experiments.tasks import Task, make_task
from steepest.experiments.tasks.modular_addition import ModularAddition, first_step_reaching
from steepest.experiments.tune import GridSearch, tune_lr
from steepest.experiments.verdicts import Verdict, fmt, mean_std, sign_of

__all__ = ["CLAIM", "CRITERION", "grokking", "grokking_verdicts", "steps_to_generalize"]

CLAIM = (
    "Tveit et al., arXiv 2504.16041: Muon reaches generalization on algorithmic tasks sooner "
    "than AdamW (mean grokking epoch 102.9 vs 153.1)"
)
CRITERION = (
    "per seed, ln(AdamW steps / Muon steps) to held-out accuracy >= the threshold (each lr "
    "tuned; a run that never reaches it counts as max_steps): clearly > 0 -> agrees, clearly "
    "< 0 -> disagrees, else inconclusive; a seed where neither optimizer reaches it counts as "
    "no evidence"
)


def _run(
    task: Task, name: str, lr: float, adamw_lr: float, weight_decay: float, steps: int,
    eval_every: int, seed: int, stop_at: float,
) -> dict[str, list[float]]:  # fmt: skip
    """Train up to ``steps`` steps; evaluate held-out and training accuracy every
    ``eval_every`` steps; stop at the first evaluation with held-out accuracy >= ``stop_at``."""
    torch.manual_seed(seed)
    model = task.build_model()
    optimizers = build_optimizer(
        name, model, lr, adamw_lr, weight_decay=weight_decay, routing=task.routing()
    )
    base = [[g["lr"] for g in opt.param_groups] for opt in optimizers]
    batches = task.batches(seed)
    curve: dict[str, list[float]] = {"step": [], "val_accuracy": [], "train_accuracy": []}
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            model.eval()
            metrics = task.evaluate(model)
            model.train()
            curve["step"].append(step)
            curve["val_accuracy"].append(metrics["val_accuracy"])
            curve["train_accuracy"].append(metrics["train_accuracy"])
            if not math.isfinite(metrics["val_loss"]) or metrics["val_accuracy"] >= stop_at:
                break
        if step == steps:
            break
        scale_lrs(optimizers, base, lr_factor(step, steps, task.warmup, task.schedule))
        torch.autograd.backward(task.loss(model, next(batches)))
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
    return curve


def steps_to_generalize(curve: dict[str, list[float]], threshold: float) -> int | None:
    """First evaluated step with held-out accuracy >= ``threshold`` (``None`` if never)."""
    return first_step_reaching(curve, "val_accuracy", threshold)


def grokking(
    out: Path,
    *,
    progress: bool = True,
    steps: int = 2000,
    eval_every: int = 5,
    seeds: int = 5,
    threshold: float = 0.95,
    weight_decay: float = 1.0,
    modulus: int = 59,
    train_fraction: float = 0.5,
    width: int = 128,
    hidden: int = 256,
    batch_size: int = 512,
) -> dict[str, Any]:
    """Steps to held-out accuracy >= ``threshold`` of tuned Muon and AdamW on modular addition.

    Per optimizer: the matrix lr tuned (coarse grid, factor sqrt(10)) on seed ``seeds`` by the
    steps to generalize (``steps`` plus one minus the final held-out accuracy when never), then
    ``seeds`` reported seeds (0 .. seeds - 1) at that lr. Both use decoupled ``weight_decay``
    on every parameter; Muon's embedding and head run AdamW at AdamW's tuned lr. A run stops
    at its first evaluation at or above ``threshold``; the first evaluated step with training
    accuracy >= ``threshold`` is recorded too (the grokking delay is the gap). A second arm
    (``task_lrs``) runs the same seeds at the task's default lrs (AdamW 1e-3, Muon 0.02 with
    AdamW 1e-3 on the rest), the conventional setting of grokking studies. Criterion:
    :data:`CRITERION`, per arm.

    References:
        Tveit, Remseth, Skogvold, "Muon optimizer accelerates grokking", arXiv 2504.16041;
        Power et al., "Grokking: generalization beyond overfitting on small algorithmic
        datasets", arXiv 2201.02177 (the task and the 95% criterion).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"grokking: threshold={threshold!r}; need a value in (0, 1]")
    task = make_task(
        "modular-addition",
        modulus=modulus,
        train_fraction=train_fraction,
        width=width,
        hidden=hidden,
        batch_size=batch_size,
    )
    task.setup(torch.device("cpu"))
    assert isinstance(task, ModularAddition)
    names = ("adamw", "muon")

    tuning: dict[str, GridSearch] = {}

    def run(name: str, lr: float, seed: int, adamw_lr: float = 0.0) -> dict[str, list[float]]:
        # AdamW: one lr for every parameter; Muon: the rest on AdamW at AdamW's tuned lr
        adamw_lr = adamw_lr or (lr if name == "adamw" else tuning["adamw"].best)
        return _run(task, name, lr, adamw_lr, weight_decay, steps, eval_every, seed, threshold)

    for name in names:

        def score(lr: float, name: str = name) -> float:
            curve = run(name, lr, seeds)
            reached = steps_to_generalize(curve, threshold)
            return float(reached) if reached is not None else steps + 1 - curve["val_accuracy"][-1]

        tuning[name] = tune_lr(score, task.default_lrs[name][0], factor=math.sqrt(10))
    curves = {name: [run(name, tuning[name].best, seed) for seed in range(seeds)] for name in names}
    reached = {name: [steps_to_generalize(c, threshold) for c in curves[name]] for name in names}
    fitted = {
        name: [first_step_reaching(c, "train_accuracy", threshold) for c in curves[name]]
        for name in names
    }
    defaults = {name: task.default_lrs[name] for name in names}
    default_curves = {
        name: [run(name, defaults[name][0], seed, defaults[name][1]) for seed in range(seeds)]
        for name in names
    }
    default_reached = {
        name: [steps_to_generalize(c, threshold) for c in default_curves[name]] for name in names
    }
    task_lrs: dict[str, Any] = {
        "lr": {name: defaults[name][0] for name in names},
        "adamw_lr": {name: defaults[name][1] for name in names},
        "steps_to_generalize": default_reached,
        "steps_to_fit": {
            name: [
                first_step_reaching(c, "train_accuracy", threshold) for c in default_curves[name]
            ]
            for name in names
        },
        "curves": default_curves,
    }
    record: dict[str, Any] = {
        "target": "grokking",
        "task_options": task.options(),
        "train_size": len(task.train_x),
        "steps": steps,
        "eval_every": eval_every,
        "threshold": threshold,
        "weight_decay": weight_decay,
        "seeds": list(range(seeds)),
        "tuning_seed": seeds,
        "lr": {name: tuning[name].best for name in names},
        "adamw_lr": {name: tuning["adamw"].best for name in names},
        "tuning": tuning,
        "steps_to_generalize": reached,
        "steps_to_fit": fitted,
        "curves": curves,
        "task_lrs": task_lrs,
    }
    record["verdicts"] = [dataclasses.asdict(v) for v in grokking_verdicts(record)]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
    for name, color in zip(names, ("tab:blue", "tab:orange"), strict=True):
        for i, c in enumerate(curves[name]):
            label = f"{name} (lr {tuning[name].best:.3g})" if i == 0 else None
            axes[0].plot(c["step"], c["val_accuracy"], color=color, alpha=0.7, label=label)
            axes[0].plot(c["step"], c["train_accuracy"], ":", color=color, alpha=0.5)
        axes[1].scatter(
            [f"{name}\ntuned"] * seeds,
            [r if r is not None else steps for r in reached[name]],
            color=color,
        )
        axes[1].scatter(
            [f"{name}\ntask lr {defaults[name][0]:g}"] * seeds,
            [r if r is not None else steps for r in default_reached[name]],
            color=color,
            marker="x",
        )
    axes[0].axhline(threshold, color="gray", linestyle="--")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("accuracy (solid: held-out, dotted: training)")
    axes[0].legend(fontsize=8)
    axes[1].set_ylabel(f"steps to held-out accuracy >= {threshold:g} (cap: never)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"modular addition mod {modulus}, {train_fraction:g} of pairs, weight decay "
        f"{weight_decay:g}, {seeds} seeds"
    )
    fig.tight_layout()
    fig.savefig(out / "grokking.png")
    plt.close(fig)
    write_record(record, out, "grokking")
    return record


def grokking_verdicts(record: dict[str, Any]) -> list[Verdict]:
    """The verdicts of ``grokking``: the tuned arm (``record["steps_to_generalize"]``), then,
    where recorded, the arm at the task's default lrs (``record["task_lrs"]``)."""
    verdicts = [_verdict(record, record["steps"], "")]
    if "task_lrs" in record:
        verdicts.append(_verdict(record["task_lrs"], record["steps"], "[task lrs] "))
    return verdicts


def _verdict(arm: dict[str, Any], cap: int, label: str) -> Verdict:
    names = ("adamw", "muon")
    effect = []
    for a, m in zip(*(arm["steps_to_generalize"][n] for n in names), strict=True):
        if a is None and m is None:
            effect.append(math.nan)
        else:
            effect.append(math.log((a if a is not None else cap) / (m if m is not None else cap)))
    lines = []
    for name in names:
        values = arm["steps_to_generalize"][name]
        done = [float(v) for v in values if v is not None]
        mean, std = mean_std(done)
        lines.append(
            f"{name} steps {mean:.0f} ± {std:.0f} ({len(done)}/{len(values)} reached)"
            if done
            else f"{name}: 0/{len(values)} reached"
        )
    finite = [v for v in effect if math.isfinite(v)]
    ratio = (
        f"AdamW / Muon steps: geometric mean {math.exp(statistics.fmean(finite)):.2f}; "
        if finite
        else ""
    )
    evidence = f"{'; '.join(lines)}; {ratio}ln ratio {fmt(finite)}"
    if "steps_to_fit" in arm:  # the grokking delay: training accuracy reached first
        fit = {n: [float(v) for v in arm["steps_to_fit"][n] if v is not None] for n in names}
        evidence += "; steps to training accuracy >= threshold: " + ", ".join(
            f"{n} {mean_std(fit[n])[0]:.0f} ± {mean_std(fit[n])[1]:.0f}" for n in names
        )
    return Verdict(CLAIM, label + CRITERION, OUTCOME[sign_of(effect)], evidence)
