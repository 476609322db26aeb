"""``batch-size``: steps to a target training loss across batch sizes, Muon vs AdamW.

Shah et al. report that Muon keeps its data efficiency at batch sizes beyond AdamW's critical
batch size. This target measures, per optimizer and batch size B, the steps S(B) to reach a
target training loss at a constant learning rate tuned for that optimizer and that B on a
separate seed, and fits McCandlish et al.'s model S(B) = S_min (1 + B_crit / B) for the
critical batch size B_crit of each optimizer.

References:
    Shah, Polloreno, Stratos et al., "Practical Efficiency of Muon for Pretraining",
    arXiv 2505.02222 (Muon's data efficiency at large batch sizes).
    McCandlish, Kaplan, Amodei et al., "An Empirical Model of Large-Batch Training",
    arXiv 1812.06162 (S = S_min (1 + B_noise / B)).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from steepest.experiments.optimizers import build_optimizer
from steepest.experiments.report import write_json_record
from steepest.experiments.runner import scale_lrs
from steepest.experiments.targets._common import OUTCOME_OF_SIGN, pyplot
from steepest.experiments.tasks import make_task
from steepest.experiments.tasks.mnist_mlp import MnistMLP
from steepest.experiments.tune import GridSearch, tune_choice, tune_lr
from steepest.experiments.verdicts import Verdict, fmt, mean_std, sign_of

__all__ = [
    "CLAIM",
    "CRITERION",
    "batch_size",
    "critical_batch",
    "critical_batch_linear",
    "steps_to_target",
    "verdicts",
]

CLAIM = (
    "Shah et al., arXiv 2505.02222: Muon keeps its data efficiency at batch sizes beyond "
    "AdamW's critical batch size"
)
CRITERION = (
    "per seed, ln(S_AdamW / S_Muon) at the largest batch size minus at the smallest (S: steps to "
    "the target loss, each optimizer's lr tuned per batch size): clearly > 0 -> agrees, clearly "
    "< 0 -> disagrees, else inconclusive"
)
CRITERION_FIT = (
    "per seed, ln(B_crit Muon / B_crit AdamW) from the fit S(B) = S_min (1 + B_crit / B) in log "
    "steps: clearly > 0 -> agrees, clearly < 0 -> disagrees, else inconclusive"
)
OPTIMIZERS = ("adamw", "muon")


def _eval_steps(max_steps: int, spacing: float) -> list[int]:
    """0 and the steps round(spacing^i) up to ``max_steps`` (each once), then ``max_steps``."""
    steps, x = {0, max_steps}, 1.0
    while x < max_steps:
        steps.add(round(x))
        x *= spacing
    return sorted(steps)


def steps_to_target(
    task: MnistMLP,
    optimizer: str,
    lr: float,
    adamw_lr: float,
    *,
    target: float,
    max_steps: int,
    seed: int,
    warmup: int = 0,
    measure_size: int = 2048,
    spacing: float = 1.05,
) -> tuple[float | None, float]:
    """Train at the constant ``lr`` (matrices) and ``adamw_lr`` (the rest), after a linear
    warmup over ``warmup`` steps, from the seed's initialization and data order until the loss
    on the first ``measure_size`` training images is <= ``target``.

    That loss is evaluated at steps 0, round(spacing^i) and ``max_steps``; the step count is
    interpolated linearly in the loss between the last evaluation above the target and the
    first at or below it. A run whose loss exceeds twice its initial loss stops as diverged.

    Returns:
        (steps, or ``None`` if the target was not reached within ``max_steps``; the smallest
        loss seen, ``inf`` if training diverged).
    """
    torch.manual_seed(seed)
    model = task.build_model()
    optimizers = build_optimizer(optimizer, model, lr, adamw_lr, routing=task.routing())
    base = [[g["lr"] for g in opt.param_groups] for opt in optimizers]
    batches = task.batches(seed)
    checks = set(_eval_steps(max_steps, spacing))
    measure = (task.train_x[:measure_size], task.train_y[:measure_size])
    best = start = math.inf
    last = (0, math.inf)
    for step in range(max_steps + 1):
        if step in checks:
            with torch.no_grad():
                loss = task.loss(model, measure).item()
            if step == 0:
                start = loss
            if not math.isfinite(loss) or loss > 2 * start:
                return None, math.inf
            best = min(best, loss)
            if loss <= target:
                s0, l0 = last
                if not math.isfinite(l0):
                    return float(step), best
                return s0 + (step - s0) * (l0 - target) / (l0 - loss), best
            last = (step, loss)
        if step == max_steps:
            break
        if step <= warmup:
            scale_lrs(optimizers, base, min(1.0, (step + 1) / warmup) if warmup else 1.0)
        torch.autograd.backward(task.loss(model, next(batches)))
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
    return None, best


def critical_batch_linear(batch_sizes: list[int], steps: list[float]) -> tuple[float, float]:
    """(S_min, B_crit) of the least-squares fit S(B) = S_min + S_min B_crit / B, a line in 1/B
    (McCandlish et al., arXiv 1812.06162, Eq. 2.11); nan where S_min <= 0 or a step count is
    missing. The smallest batch size, with the most steps, dominates this fit."""
    if len(batch_sizes) < 2 or not all(math.isfinite(s) for s in steps):
        return math.nan, math.nan
    x = [1.0 / b for b in batch_sizes]
    mx, my = sum(x) / len(x), sum(steps) / len(steps)
    slope = sum((a - mx) * (s - my) for a, s in zip(x, steps, strict=True)) / sum(
        (a - mx) ** 2 for a in x
    )
    s_min = my - slope * mx
    if s_min <= 0:
        return s_min, math.nan
    return s_min, slope / s_min


def critical_batch(batch_sizes: list[int], steps: list[float]) -> tuple[float, float]:
    """(S_min, B_crit) minimizing sum_B (ln S(B) - ln(S_min (1 + B_crit / B)))^2: McCandlish et
    al.'s model (arXiv 1812.06162, Eq. 2.11) fitted in log steps, so that every batch size
    weighs the same. B_crit is searched on [min B / 64, 64 max B] (a log grid, then golden
    section) and is that range's end where the best fit lies beyond it; nan where a step count
    is missing or not positive."""
    if len(batch_sizes) < 2 or not all(math.isfinite(s) and s > 0 for s in steps):
        return math.nan, math.nan
    log_steps = [math.log(s) for s in steps]

    def offset(log_b: float) -> list[float]:
        return [
            ls - math.log1p(math.exp(log_b) / b)
            for ls, b in zip(log_steps, batch_sizes, strict=True)
        ]

    def misfit(log_b: float) -> float:
        r = offset(log_b)
        mean = sum(r) / len(r)
        return sum((v - mean) ** 2 for v in r)

    lo, hi = math.log(min(batch_sizes) / 64), math.log(64 * max(batch_sizes))
    grid = [lo + (hi - lo) * i / 400 for i in range(401)]
    i = min(range(len(grid)), key=lambda k: misfit(grid[k]))
    if 0 < i < len(grid) - 1:
        a, b = grid[i - 1], grid[i + 1]
        golden = (math.sqrt(5) - 1) / 2
        for _ in range(80):
            c, d = b - golden * (b - a), a + golden * (b - a)
            if misfit(c) < misfit(d):
                b = d
            else:
                a = c
        best = (a + b) / 2
    else:
        best = grid[i]
    r = offset(best)
    return math.exp(sum(r) / len(r)), math.exp(best)


def batch_size(
    out: Path,
    *,
    progress: bool = True,
    batch_sizes: str = "16,64,256,1024,4096",
    target: float = 0.15,
    max_steps: int = 2000,
    seeds: int = 5,
    train_size: int = 8000,
    warmups: str = "0,2,5,10,20",
) -> dict[str, Any]:
    """Steps to a training loss of ``target`` for AdamW and Muon across ``batch_sizes``.

    Task mnist-mlp (784-128-64-10, ``train_size`` training images); the loss is measured on a
    fixed set of 2048 training images (optimization speed, not generalization);
    constant learning rates after a linear warmup; AdamW betas (0.9, 0.95) on every parameter for
    ``adamw``; Muon (Nesterov 0.95, Polar Express msign, spectral scale) on W1, W2 and AdamW
    on the head for ``muon``.
    For each optimizer and batch size, one factor c scales the task's default learning rates
    (matrices and the AdamW groups together); c and the warmup (steps, one of ``warmups``) are
    tuned on seed ``seeds`` (not reported) to minimize the steps to the target: c on a grid of
    factor 2 widened until the best is inside, at the shortest warmup; then the warmup; then c
    again at that warmup.
    Then seeds 0..``seeds``-1 each give S(B) per optimizer; a run that misses the target within
    ``max_steps`` counts as missing when reported; while tuning, a run stops at 4x the fewest
    steps seen so far in its search (or ``max_steps``) and scores that cap plus its best loss.
    Criteria: :data:`CRITERION` and :data:`CRITERION_FIT`.

    References:
        Shah et al., arXiv 2505.02222; McCandlish et al., arXiv 1812.06162.
    """
    sizes = [int(b) for b in batch_sizes.split(",")]
    if len(sizes) < 2 or any(b < 1 for b in sizes) or sizes != sorted(set(sizes)):
        raise ValueError(
            f"batch-size: batch_sizes={batch_sizes!r}; need at least two increasing positive ints"
        )
    warm_values = [int(w) for w in str(warmups).split(",")]
    if any(w < 0 for w in warm_values) or warm_values != sorted(set(warm_values)):
        raise ValueError(
            f"batch-size: warmups={warmups!r}; need increasing non-negative ints (warmup steps)"
        )
    if not 0 < target < math.log(10):
        raise ValueError(f"batch-size: target={target!r}; need a loss in (0, ln 10)")
    tasks = {b: make_task("mnist-mlp", batch_size=b, train_size=train_size) for b in sizes}
    for t in tasks.values():
        t.setup(torch.device("cpu"))
    first = tasks[sizes[0]]
    assert isinstance(first, MnistMLP)
    results: dict[str, Any] = {}
    bar = tqdm(total=len(OPTIMIZERS) * len(sizes), desc="batch-size", disable=not progress)
    for name in OPTIMIZERS:
        base_lr, base_adamw_lr = first.default_lrs[name]
        tuning: list[dict[str, GridSearch]] = []
        chosen: list[tuple[float, int]] = []
        steps: list[list[float | None]] = []
        for b in sizes:
            task = tasks[b]
            assert isinstance(task, MnistMLP)
            fastest = [float(max_steps)]

            def score(
                c: float,
                warm: float,
                task: MnistMLP = task,
                name: str = name,
                fastest: list[float] = fastest,
            ) -> float:
                # a run slower than 4x the fastest so far cannot win: it stops there
                cap = min(max_steps, math.ceil(4 * fastest[0]))
                lr, adamw_lr = task.default_lrs[name]
                s, best = steps_to_target(
                    task,
                    name,
                    lr * c,
                    adamw_lr * c,
                    target=target,
                    max_steps=cap,
                    seed=seeds,
                    warmup=int(warm),
                )
                if s is None:
                    return cap + best
                fastest[0] = min(fastest[0], s)
                return s

            # lr at the shortest warmup, then the warmup at that lr, then the lr again
            lr_search = tune_lr(functools.partial(score, warm=warm_values[0]), 1.0)
            warm_search = tune_choice(
                functools.partial(score, lr_search.best), warm_values, warm_values[0]
            )
            again = tune_lr(functools.partial(score, warm=warm_search.best), lr_search.best)
            tuning.append({"lr": lr_search, "warmup": warm_search, "lr_again": again})
            c, warm = again.best, int(warm_search.best)
            chosen.append((c, warm))
            steps.append(
                [
                    steps_to_target(
                        task,
                        name,
                        base_lr * c,
                        base_adamw_lr * c,
                        target=target,
                        max_steps=max_steps,
                        seed=seed,
                        warmup=warm,
                    )[0]
                    for seed in range(seeds)
                ]
            )
            bar.update(1)
        results[name] = {
            "lr": [base_lr * c for c, _ in chosen],
            "adamw_lr": [base_adamw_lr * c for c, _ in chosen],
            "warmup_steps": [w for _, w in chosen],
            "tuning": tuning,
            "steps": steps,
        }
    bar.close()
    record: dict[str, Any] = {
        "target": "batch-size",
        "task": "mnist-mlp",
        "task_options": first.options(),
        "batch_sizes": sizes,
        "target_loss": target,
        "max_steps": max_steps,
        "seeds": list(range(seeds)),
        "tuning_seed": seeds,
        "schedule": "constant lr after a linear warmup (steps tuned among warmups)",
        "warmups": warm_values,
        "measure": "cross-entropy on the first 2048 training images",
        "optimizers": results,
        "note": "steps None: the target was not reached within max_steps",
    }
    record["verdicts"] = [dataclasses.asdict(v) for v in verdicts(record)]
    _plot(record, out)
    write_json_record(record, out / "batch-size.json")
    return record


def _per_seed(record: dict[str, Any], name: str) -> list[list[float]]:
    """Steps of ``name`` as [seed][batch size], nan where the target was missed."""
    rows = record["optimizers"][name]["steps"]
    return [[math.nan if s is None else float(s) for s in col] for col in zip(*rows, strict=True)]


def _plot(record: dict[str, Any], out: Path) -> None:
    plt = pyplot()
    sizes = record["batch_sizes"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    for name in OPTIMIZERS:
        per_seed = _per_seed(record, name)
        by_size = list(zip(*per_seed, strict=True))
        mean = [mean_std(v)[0] for v in by_size]
        std = [mean_std(v)[1] for v in by_size]
        axes[0].errorbar(sizes, mean, yerr=std, marker="o", capsize=3, label=name)
        examples = [m * b for m, b in zip(mean, sizes, strict=True)]
        axes[1].plot(examples, mean, marker="o", label=name)
    ideal = [record["optimizers"]["adamw"]["steps"][0][0] or math.nan]
    if math.isfinite(ideal[0]):
        axes[0].plot(
            sizes,
            [ideal[0] * sizes[0] / b for b in sizes],
            ":",
            color="gray",
            label="perfect scaling from AdamW's smallest B",
        )
    axes[0].set_xlabel("batch size B")
    axes[0].set_ylabel(f"steps to training loss {record['target_loss']:g}")
    axes[1].set_xlabel("examples seen (steps x B)")
    axes[1].set_ylabel("steps")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    seeds = len(record["seeds"])
    fig.suptitle(
        f"{record['task']}: steps to target vs batch size, lr and warmup tuned per B, {seeds} seeds"
    )
    fig.tight_layout()
    fig.savefig(out / "batch-size.png")
    plt.close(fig)


def verdicts(record: dict[str, Any]) -> list[Verdict]:
    """The advantage's trend over batch sizes and the fitted critical batch sizes, per seed."""
    sizes = record["batch_sizes"]
    adamw, muon = _per_seed(record, "adamw"), _per_seed(record, "muon")
    ratio = [
        [a / m for a, m in zip(ra, rm, strict=True)] for ra, rm in zip(adamw, muon, strict=True)
    ]
    trend = [math.log(r[-1]) - math.log(r[0]) for r in ratio]
    by_size = list(zip(*ratio, strict=True))
    rows = ", ".join(f"B={b}: {fmt(v)}" for b, v in zip(sizes, by_size, strict=True))
    missed = {
        name: sum(math.isnan(s) for row in _per_seed(record, name) for s in row)
        for name in OPTIMIZERS
    }
    fits = {
        name: [critical_batch(sizes, row) for row in _per_seed(record, name)] for name in OPTIMIZERS
    }
    b_crit = {name: [f[1] for f in fit] for name, fit in fits.items()}
    s_min = {name: [f[0] for f in fit] for name, fit in fits.items()}
    fit_effect = [
        math.log(m / a) if a > 0 and m > 0 else math.nan
        for a, m in zip(b_crit["adamw"], b_crit["muon"], strict=True)
    ]
    linear = {
        name: [critical_batch_linear(sizes, row)[1] for row in _per_seed(record, name)]
        for name in OPTIMIZERS
    }
    fit_lines = "; ".join(
        f"{name}: B_crit {fmt(b_crit[name])}, S_min {fmt(s_min[name])} (fit in steps, not "
        f"log steps: B_crit {fmt(linear[name])})"
        for name in OPTIMIZERS
    )
    note = f" (runs short of the target: AdamW {missed['adamw']}, Muon {missed['muon']})"
    return [
        Verdict(
            CLAIM,
            f"[steps ratio] {CRITERION}",
            OUTCOME_OF_SIGN[sign_of(trend)],
            f"S_AdamW / S_Muon {rows}; trend {fmt(trend)}{note}",
        ),
        Verdict(
            CLAIM,
            f"[critical batch] {CRITERION_FIT}",
            OUTCOME_OF_SIGN[sign_of(fit_effect)],
            f"{fit_lines}; ln ratio {fmt(fit_effect)}{note}",
        ),
    ]
