"""``steepest compare``: tune (optionally), train every optimizer on every seed, summarize.

Fairness: every optimizer starts from the same initialization and sees the same batches for a
given seed (both depend on the seed only), and all of them train the embeddings, head and vectors
with the same AdamW rule (see :mod:`steepest.experiments.optimizers`). Tuning runs on a seed that
the reported runs do not use (``max(seeds) + 1``), scores settings by their best validation
loss, and tunes per optimizer what matters for it (:func:`tuned_keys`): the learning rate, the
warmup fraction, the AdamW beta2 of AdamW-style baselines and the AdamW groups' learning rate,
each on a grid widened until its best is inside (or at the end of the allowed values).

Besides "steps to reach the reference's best", the summary gives the schedule-matched ratio
(:func:`matched_steps`): the reference trains on its own full schedule at each horizon, and the
horizon at which its final loss equals another optimizer's final loss is interpolated.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import torch

from steepest.experiments.optimizers import (
    ADAMW_BETAS,
    OPTIMIZERS,
    default_lrs,
    split_parameters,
)
from steepest.experiments.runner import RunResult, train
from steepest.experiments.tasks.base import Task
from steepest.experiments.tune import GridSearch, tune_choice, tune_lr

__all__ = [
    "ADAM_STYLE",
    "BETA2_CHOICES",
    "WARMUP_CHOICES",
    "Settings",
    "compare",
    "default_settings",
    "matched_steps",
    "reach",
    "schedule_matched",
    "summarize",
    "tuned_keys",
]

#: optimizers whose matrix rule is the AdamW itself, so that its beta2 is theirs to tune
ADAM_STYLE = ("adamw",)
#: the allowed warmup fractions and AdamW beta2 values of the tuner
WARMUP_CHOICES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
BETA2_CHOICES = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a comparison may set per optimizer: the matrix rule's ``lr``, the AdamW groups'
    ``adamw_lr``, the linear ``warmup`` fraction and the AdamW's ``beta2``."""

    lr: float
    adamw_lr: float
    warmup: float
    beta2: float


def default_settings(task: Task, name: str) -> Settings:
    """The task's pre-tuned settings of ``name`` (:attr:`Task.tuned_settings`) over its
    defaults: :func:`default_lrs`, the task's warmup and :data:`ADAMW_BETAS`' beta2."""
    lr, adamw_lr = default_lrs(name, task.default_lrs)
    base = Settings(lr, adamw_lr, task.warmup, ADAMW_BETAS[1])
    return dataclasses.replace(base, **task.tuned_settings.get(name, {}))


def tuned_keys(name: str, has_rest: bool) -> tuple[str, ...]:
    """The settings :func:`compare` tunes for optimizer ``name``, in order: ``lr`` and
    ``warmup``; ``beta2`` for :data:`ADAM_STYLE`; ``adamw_lr`` if the model has AdamW groups."""
    keys = ["lr", "warmup"]
    if name in ADAM_STYLE:
        keys.append("beta2")
    if has_rest:
        keys.append("adamw_lr")
    return tuple(keys)


def compare(
    task: Task,
    optimizers: Sequence[str],
    *,
    steps: int,
    seeds: Sequence[int],
    device: torch.device,
    eval_every: int,
    tune: bool = False,
    settings: dict[str, Settings] | None = None,
    horizons: Sequence[float] = (1.0,),
    progress: bool = True,
) -> dict[str, Any]:
    """Run the comparison and return its record (JSON-ready apart from the runs).

    Args:
        task: the task (``setup`` is called here).
        optimizers: names from :data:`~steepest.experiments.optimizers.OPTIMIZERS`; the
            reference is ``"adamw"`` if present, else the first.
        steps, seeds, device, eval_every: of every run at the main horizon.
        tune: tune each optimizer's :func:`tuned_keys` first, at ``steps`` on the seed
            ``max(seeds) + 1``; the grids start from ``settings``.
        settings: per optimizer, overriding :func:`default_settings`.
        horizons: multiples of ``steps``; every optimizer and seed also trains on its own full
            schedule of ``round(h * steps)`` steps for each ``h`` (1 is always included).
        progress: show tqdm bars.

    Returns:
        ``{"reference", "hyperparameters", "tuned_keys", "tuning", "tuning_seed", "horizons",
        "runs", "horizon_runs", "summary", "horizon_summaries", "schedule_matched"}``: ``runs``
        and ``summary`` at ``steps``; the ``horizon_*`` entries keyed by horizon in steps.
    """
    for name in optimizers:
        if name not in OPTIMIZERS:
            raise ValueError(
                f"optimizer={name!r} is unknown; choose one of {', '.join(OPTIMIZERS)}"
            )
    if not horizons or any(not (h > 0 and math.isfinite(h)) for h in horizons):
        raise ValueError(f"horizons={list(horizons)!r} must be positive multiples of steps")
    lengths = sorted({max(1, round(h * steps)) for h in horizons} | {steps})
    task.setup(device)
    chosen = {
        name: (settings or {}).get(name) or default_settings(task, name) for name in optimizers
    }
    torch.manual_seed(0)
    has_rest = bool(split_parameters(task.build_model(), task.routing())[1])
    keys = {name: tuned_keys(name, has_rest) for name in optimizers}
    tuning: dict[str, dict[str, GridSearch]] = {}
    tune_seed = max(seeds) + 1
    if tune:
        for name in optimizers:

            def score(s: Settings, name: str = name) -> float:
                run = _train(task, name, s, steps, tune_seed, device, eval_every, progress)
                return math.inf if run.diverged else run.best_val_loss

            chosen[name], tuning[name] = tune_settings(score, chosen[name], keys[name])
    runs = {
        length: [
            _train(
                task, name, chosen[name], length, seed, device, min(eval_every, length), progress
            )
            for seed in seeds
            for name in optimizers
        ]
        for length in lengths
    }
    reference = "adamw" if "adamw" in optimizers else optimizers[0]
    return {
        "reference": reference,
        "hyperparameters": {n: dataclasses.asdict(s) for n, s in chosen.items()},
        "tuned_keys": {n: list(k) for n, k in keys.items()} if tune else {},
        "tuning": tuning,
        "tuning_seed": tune_seed if tune else None,
        "horizons": lengths,
        "runs": runs[steps],
        "horizon_runs": {str(n): r for n, r in runs.items() if n != steps},
        "summary": summarize(runs[steps], reference, task.metrics),
        "horizon_summaries": {
            str(n): summarize(r, reference, task.metrics) for n, r in runs.items() if n != steps
        },
        "schedule_matched": schedule_matched(runs, reference),
    }


def _train(
    task: Task,
    name: str,
    s: Settings,
    steps: int,
    seed: int,
    device: torch.device,
    eval_every: int,
    progress: bool,
) -> RunResult:
    return train(
        task,
        name,
        s.lr,
        s.adamw_lr,
        steps=steps,
        seed=seed,
        eval_every=eval_every,
        device=device,
        warmup=s.warmup,
        beta2=s.beta2,
        progress=progress,
    )


def tune_settings(
    score: Callable[[Settings], float], start: Settings, keys: Sequence[str]
) -> tuple[Settings, dict[str, GridSearch]]:
    """Coordinate search: each key of ``keys`` in turn at the best values so far, then ``lr``
    once more (its best moves with the warmup and beta2). Learning rates on a log grid
    (:func:`tune_lr`), ``warmup`` over :data:`WARMUP_CHOICES`, ``beta2`` over
    :data:`BETA2_CHOICES` (:func:`tune_choice`). A setting is scored once (cached).

    Returns:
        The best settings and, per key, its :class:`GridSearch` (the second ``lr`` search
        as ``lr_again``).
    """
    cache: dict[Settings, float] = {}

    def cached(s: Settings) -> float:
        if s not in cache:
            cache[s] = score(s)
        return cache[s]

    best = start
    searches: dict[str, GridSearch] = {}
    order = [*keys, "lr"] if len(keys) > 1 else list(keys)
    for key in order:
        current = best

        def objective(value: float, key: str = key, current: Settings = current) -> float:
            return cached(dataclasses.replace(current, **{key: value}))

        if key in ("lr", "adamw_lr"):
            search = tune_lr(objective, getattr(current, key))
        else:
            choices = WARMUP_CHOICES if key == "warmup" else BETA2_CHOICES
            value = getattr(current, key)
            grid = sorted(set(choices) | {value})
            search = tune_choice(objective, grid, value)
        searches[key if key not in searches else f"{key}_again"] = search
        best = dataclasses.replace(current, **{key: search.best})
    return best, searches


def reach(run: RunResult, target: float) -> tuple[int | None, float | None]:
    """First evaluated step (and training time) at which ``run``'s val loss is <= ``target``."""
    for step, time_s, loss in zip(
        run.curve["step"], run.curve["time_s"], run.curve["val_loss"], strict=True
    ):
        if loss <= target:
            return int(step), time_s
    return None, None


def matched_steps(
    horizons: Sequence[int], finals: Sequence[float], target: float
) -> tuple[float | None, str]:
    """The horizon at which a run on its own full schedule ends at loss ``target``.

    ``finals[i]`` is the final loss of the run with ``horizons[i]`` steps (increasing). Between
    the first two neighbouring horizons whose finals bracket ``target``, the final loss is
    interpolated linearly in log(steps).

    Returns:
        ``(steps, "=")`` when bracketed; ``(None, "<")`` when the shortest horizon already ends
        at or below ``target``; ``(None, ">")`` when no horizon reaches it (more are needed).
    """
    pairs = [(h, f) for h, f in zip(horizons, finals, strict=True) if math.isfinite(f)]
    if not pairs:
        return None, ">"
    if pairs[0][1] <= target:
        return None, "<"
    for (h0, f0), (h1, f1) in zip(pairs, pairs[1:], strict=False):
        if f1 <= target < f0:
            t = (f0 - target) / (f0 - f1)
            return math.exp(math.log(h0) + t * (math.log(h1) - math.log(h0))), "="
    return None, ">"


def schedule_matched(runs: dict[int, list[RunResult]], reference: str) -> dict[str, Any]:
    """Per optimizer and horizon h: mean / std over seeds of h / H, where H is the reference's
    :func:`matched_steps` for the optimizer's final val loss at h (same seed), and the count
    of seeds where H lies below / above the reference's horizons (ratio above ``h / min`` or
    below ``h / max``)."""
    horizons = sorted(runs)
    by_key = {(r.optimizer, r.seed, n): r for n, rs in runs.items() for r in rs}
    names = sorted({r.optimizer for rs in runs.values() for r in rs} - {reference})
    seeds = sorted({r.seed for rs in runs.values() for r in rs})
    out: dict[str, Any] = {}
    for name in names:
        out[name] = {}
        for h in horizons:
            ratios: list[float | None] = []
            relations = []
            for seed in seeds:
                finals = [by_key[(reference, seed, n)].curve["val_loss"][-1] for n in horizons]
                target = by_key[(name, seed, h)].curve["val_loss"][-1]
                matched, relation = matched_steps(horizons, finals, target)
                ratios.append(h / matched if matched else None)
                relations.append(relation)
            out[name][str(h)] = {
                "ratio": _stats(ratios),
                "below_shortest": relations.count("<"),
                "beyond_longest": relations.count(">"),
                "bounds": [h / horizons[-1], h / horizons[0]],
            }
    return out


def _stats(values: list[float | None]) -> dict[str, Any]:
    done = [v for v in values if v is not None and math.isfinite(v)]
    return {
        "mean": statistics.fmean(done) if done else None,
        "std": statistics.stdev(done) if len(done) > 1 else 0.0 if done else None,
        "n": len(done),
    }


def summarize(runs: list[RunResult], reference: str, metrics: Sequence[str] = ()) -> dict[str, Any]:
    """Per optimizer, mean / std / n over seeds of: best and final val loss, metrics at the best
    step, steps and training time to reach the reference's best val loss of the same seed, their
    ratios to the reference's own, and the step times. Runs that never reach it count in
    ``reached``."""
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
            "final_val_loss": r.curve["val_loss"][-1] if r.curve["val_loss"] else math.inf,
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
