"""Outputs of a comparison: the terminal table, ``results.json``, ``curves.csv`` and PNG plots."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from steepest.experiments.runner import RunResult

__all__ = [
    "format_footer",
    "format_table",
    "write_csv",
    "write_json",
    "write_json_record",
    "write_plots",
]


def _fmt(stat: dict[str, Any], spec: str = ".4g") -> str:
    """``mean ± std``; the std with two significant digits unless ``spec`` fixes the decimals."""
    if stat["mean"] is None:
        return "-"
    std_spec = spec if spec.endswith("f") else ".2g"
    return f"{stat['mean']:{spec}} ± {stat['std']:{std_spec}}"


def format_table(record: dict[str, Any]) -> str:
    """A plain-text table, one row per optimizer and horizon (mean ± std over seeds), and a
    footer that states what the ratios mean and every setting that was fixed."""
    ref = record["reference"]
    metric_keys = [f"{m}_at_best" for m in record["metrics"]]
    head = [
        "optimizer",
        "steps",
        "lr",
        "adamw_lr",
        "warmup",
        "beta2",
        "final val loss",
        "best val loss",
        *metric_keys,
        f"steps to {ref} best",
        "step ratio",
        "matched ratio",
        "time ratio",
        "opt step ms",
        "step ms",
    ]
    summaries = {str(record["steps"]): record["summary"], **record.get("horizon_summaries", {})}
    matched = record.get("schedule_matched", {})
    rows = [head]
    for horizon in sorted(summaries, key=int):
        for name, s in summaries[horizon].items():
            hp = record["hyperparameters"][name]
            reached = f"{s['reached']}/{s['seeds']}"
            rows.append(
                [
                    name,
                    horizon,
                    f"{hp['lr']:.3g}",
                    f"{hp['adamw_lr']:.3g}",
                    f"{hp['warmup']:.3g}",
                    f"{hp['beta2']:.4g}",
                    _fmt(s["final_val_loss"]),
                    _fmt(s["best_val_loss"]),
                    *[_fmt(s[k]) for k in metric_keys],
                    f"{_fmt(s['steps_to_reference_best'], '.0f')} ({reached})",
                    _fmt(s["steps_ratio"], ".2f"),
                    _matched_cell(matched.get(name, {}).get(horizon)),
                    _fmt(s["time_ratio"], ".2f"),
                    _fmt(s["mean_opt_step_time_ms"], ".2f"),
                    _fmt(s["mean_step_time_ms"], ".1f"),
                ]
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*lines, "", *format_footer(record)])


def _matched_cell(entry: dict[str, Any] | None) -> str:
    """The schedule-matched ratio over the seeds where it was bracketed, plus the bounds."""
    if entry is None:
        return "-"
    lo, hi = entry["bounds"]
    parts = [_fmt(entry["ratio"], ".2f")] if entry["ratio"]["n"] else []
    if entry["beyond_longest"]:
        parts.append(f"{entry['beyond_longest']}x <{lo:.2f}")
    if entry["below_shortest"]:
        parts.append(f"{entry['below_shortest']}x >{hi:.2f}")
    return ", ".join(parts) or "-"


def format_footer(record: dict[str, Any]) -> list[str]:
    """The lines under the table: the ratios' definitions, the origin of the settings, and every
    setting that was fixed (not tuned) in the comparison."""
    from steepest.experiments.compare import BETA2_CHOICES, WARMUP_CHOICES
    from steepest.experiments.optimizers import ADAMW_BETAS, OPTIMIZERS

    ref = record["reference"]
    horizons = ", ".join(str(h) for h in record["horizons"])
    lines = [
        f"step ratio: steps to reach {ref}'s best val loss (same seed, same horizon) over "
        f"{ref}'s own steps to it.",
        f"matched ratio: the row's steps over the steps {ref} needs, trained on its own full "
        f"schedule, to end at the row's final val loss (log-linear between horizons {horizons}; "
        "'Nx <r': N seeds beyond the longest horizon).",
    ]
    if record.get("tune"):
        tuned = "; ".join(f"{n}: {', '.join(k)}" for n, k in record["tuned_keys"].items())
        lines.append(
            f"tuned on seed {record['tuning_seed']} (reported seeds "
            f"{', '.join(map(str, record['seeds']))}) at {record['steps']} steps by best val "
            f"loss, grids widened until the best is inside: {tuned}; lr on factor-2 log grids, "
            f"warmup in {list(WARMUP_CHOICES)}, beta2 in {list(BETA2_CHOICES)}."
        )
        limits = [
            f"{n} {k}={g['best'] if isinstance(g, dict) else g.best:g}"
            for n, searches in record["tuning"].items()
            for k, g in searches.items()
            if (g["limit"] if isinstance(g, dict) else g.limit)
        ]
        outside = [
            f"{n} {k}"
            for n, searches in record["tuning"].items()
            for k, g in searches.items()
            if not (g["inside"] if isinstance(g, dict) else g.inside)
            and not (g["limit"] if isinstance(g, dict) else g.limit)
        ]
        if limits:
            lines.append(f"best at the end of the allowed values: {', '.join(limits)}.")
        if outside:
            lines.append(f"best still on the grid's edge after widening: {', '.join(outside)}.")
    elif record.get("tuned_by"):
        lines.append(f"settings pre-tuned by: {record['tuned_by']}")
    if record.get("given_settings"):
        given = "; ".join(
            f"{k} {', '.join(f'{n}={v:g}' for n, v in d.items())}"
            for k, d in record["given_settings"].items()
        )
        lines.append(f"given on the command line: {given}.")
    options = ", ".join(f"{k}={v}" for k, v in record["task_options"].items())
    members = "; ".join(
        f"{n}: {', '.join(f'{k}={v}' for k, v in OPTIMIZERS[n].options.items()) or 'defaults'}"
        for n in record["optimizers"]
        if n != "adamw"
    )
    lines.append(
        f"fixed: task {record['task']} ({options}); linear warmup then {record['schedule']} "
        f"decay to 0; AdamW beta1={ADAMW_BETAS[0]}, eps=1e-8, weight decay 0 on every group; "
        f"beta2 of non-AdamW members' AdamW groups untuned unless listed above; "
        f"{members + '; ' if members else ''}"
        f"eval every {record['eval_every']} steps; seeds {', '.join(map(str, record['seeds']))}."
    )
    return lines


def _jsonable(value: Any) -> Any:
    """Replace non-finite floats by ``None`` (JSON has no inf / nan) and dataclasses by dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(record: dict[str, Any], path: Path) -> None:
    """Every number of the comparison, strict JSON (``None`` for never / not finite)."""
    record = dict(
        record,
        runs=[dict(dataclasses.asdict(r), best_val_loss=r.best_val_loss) for r in record["runs"]],
    )
    path.write_text(json.dumps(_jsonable(record), indent=1, allow_nan=False) + "\n")


def write_json_record(record: dict[str, Any], path: Path) -> None:
    """A record of plain values and dataclasses as strict JSON (``None`` for inf / nan)."""
    path.write_text(json.dumps(_jsonable(record), indent=1, allow_nan=False) + "\n")


def write_csv(runs: list[RunResult], path: Path) -> None:
    """The curves in long form: one row per (optimizer, seed, evaluated step)."""
    keys = list(runs[0].curve)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["optimizer", "seed", *keys])
        for r in runs:
            for i in range(len(r.curve["step"])):
                writer.writerow([r.optimizer, r.seed, *(r.curve[k][i] for k in keys)])


def write_plots(record: dict[str, Any], out: Path) -> list[Path]:
    """``loss_vs_step.png`` and ``loss_vs_time.png``: mean val loss over seeds, min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    paths = []
    for x_key, label, filename in (
        ("step", "step", "loss_vs_step.png"),
        ("time_s", "training time (s)", "loss_vs_time.png"),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
        for name in record["summary"]:
            runs = [r for r in record["runs"] if r.optimizer == name]
            n = min(len(r.curve["step"]) for r in runs)
            xs = [sum(r.curve[x_key][i] for r in runs) / len(runs) for i in range(n)]
            ys = [[r.curve["val_loss"][i] for r in runs] for i in range(n)]
            (line,) = ax.plot(xs, [sum(y) / len(y) for y in ys], label=name)
            ax.fill_between(
                xs,
                [min(y) for y in ys],
                [max(y) for y in ys],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
        best = record["summary"][record["reference"]]["best_val_loss"]["mean"]
        if best is not None:
            ax.axhline(best, color="gray", linestyle=":", label=f"{record['reference']} best")
        ax.set_xlabel(label)
        ax.set_ylabel("validation loss")
        ax.set_title(f"{record['task']}: {len(record['seeds'])} seed(s), {record['device']}")
        finite = [v for r in record["runs"] for v in r.curve["val_loss"] if math.isfinite(v)]
        lo, hi = min(finite, default=0.0), max(finite, default=0.0)
        if lo > 0 and hi > 100 * lo:  # losses that fall by decades (the quadratic): log scale
            ax.set_yscale("log")
        elif finite:  # focus on the interesting range, not the loss at initialization
            hi = sorted(finite)[int(0.9 * (len(finite) - 1))]
            ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo) + 1e-12)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / filename)
        plt.close(fig)
        paths.append(out / filename)
    return paths
