"""``amplification``: does data imbalance widen Muon's NDS advantage over AdamW?

The claim (Bergemann, Zhang, Li, Wang, Yang, "Why Muon outperforms Adam: a curvature
perspective", arXiv 2606.04662, Fig. 3): on Zipf-PCFG data, a more imbalanced language (a larger
Zipf exponent of the rule probabilities) amplifies Muon's advantage in normalized directional
sharpness NDS = u^T H u / ||u||^2 over Adam's. Protocol here: the ``zipf-pcfg`` task at several
exponents; per exponent and seed (the seed draws the grammar, the initialization and the batch
order), a small GPT trained with AdamW and with Muon at the task's learning rates, the NDS of
the actual update of all parameters measured every few steps with exact Hessian-vector
products, its median over the run, and the ratio AdamW / Muon.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from steepest.diagnostics import directional_sharpness
from steepest.experiments.targets._measured import measured_run
from steepest.experiments.targets._output import OUTCOME, pyplot, write_record
from steepest.experiments.tasks import make_task
from steepest.experiments.tasks.zipf_pcfg import ZipfPCFG
from steepest.experiments.verdicts import Verdict, fmt, mean_std, sign_of

__all__ = ["CLAIM", "CRITERION", "amplification", "amplification_verdicts", "slope"]

CLAIM = (
    "Bergemann et al., arXiv 2606.04662 (Fig. 3): data imbalance amplifies Muon's NDS "
    "advantage over Adam (the NDS ratio Adam / Muon grows with the Zipf exponent)"
)
CRITERION = (
    "per seed, the least-squares slope of ln(median NDS AdamW / median NDS Muon) against the "
    "Zipf exponent: clearly > 0 -> agrees, clearly < 0 -> disagrees, else inconclusive"
)


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``ys`` against ``xs`` (nan if a y is not finite)."""
    if not all(math.isfinite(y) for y in ys):
        return math.nan
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _nds(
    model: torch.nn.Module, loss_fn: Any, params: list[torch.Tensor], u: list[torch.Tensor]
) -> dict[str, float]:
    return {"nds": directional_sharpness(loss_fn, params, u, normalized=True)}


def amplification(
    out: Path,
    *,
    progress: bool = True,
    exponents: str = "0,0.5,1,1.5,2",
    seeds: int = 5,
    steps: int = 200,
    measure_every: int = 10,
    layers: int = 2,
    width: int = 64,
    heads: int = 4,
    context: int = 32,
    batch_size: int = 16,
    train_tokens: int = 50_000,
) -> dict[str, Any]:
    """The NDS ratio AdamW / Muon against the Zipf exponent of the zipf-pcfg language.

    Per exponent and seed s: grammar ``grammar_seed = s``, initialization and batches seeded
    by s; AdamW and Muon at the task's learning rates for ``steps`` steps; the NDS of the
    actual update (all parameters) on that step's batch every ``measure_every`` steps; the
    median over the run. Criterion: :data:`CRITERION`.

    References:
        Bergemann, Zhang, Li, Wang, Yang, "Why Muon outperforms Adam: a curvature
        perspective", arXiv 2606.04662, Fig. 3 (Zipf-PCFG with a controlled imbalance).
    """
    values = [float(v) for v in exponents.split(",")]
    if len(values) < 2 or len(set(values)) < 2 or min(values) < 0:
        raise ValueError(
            f"amplification: exponents={exponents!r}; need at least two distinct values >= 0"
        )
    names = ("adamw", "muon")
    median_nds: dict[str, list[list[float]]] = {name: [] for name in names}
    curves: dict[str, list[list[dict[str, list[float]]]]] = {name: [] for name in names}
    unigram_entropy: list[list[float]] = []
    lrs: dict[str, tuple[float, float]] = {}
    options: dict[str, Any] = {}
    for exponent in values:
        for name in names:
            median_nds[name].append([])
            curves[name].append([])
        unigram_entropy.append([])
        for seed in range(seeds):
            task = make_task(
                "zipf-pcfg", exponent=exponent, grammar_seed=seed, layers=layers, width=width,
                heads=heads, context=context, batch_size=batch_size, eval_windows=8,
                train_tokens=train_tokens,
            )  # fmt: skip
            task.setup(torch.device("cpu"))
            assert isinstance(task, ZipfPCFG)
            counts = torch.bincount(task.train_data).double()
            freq = counts[counts > 0] / counts.sum()
            unigram_entropy[-1].append(float(-(freq * freq.log()).sum()))
            lrs = {name: task.default_lrs[name] for name in names}
            options = task.options()
            for name in names:
                curve = measured_run(task, name, *lrs[name], steps, measure_every, seed, _nds)
                curves[name][-1].append(curve)
                median_nds[name][-1].append(statistics.median(curve["nds"]))
    record: dict[str, Any] = {
        "target": "amplification",
        "task": "zipf-pcfg",
        "task_options": {k: v for k, v in options.items() if k not in ("exponent", "grammar_seed")},
        "exponents": values,
        "steps": steps,
        "measure_every": measure_every,
        "seeds": list(range(seeds)),
        "lrs": lrs,
        "unigram_entropy_nats": unigram_entropy,
        "median_nds": median_nds,
        "curves": curves,
    }
    record["verdicts"] = [dataclasses.asdict(v) for v in amplification_verdicts(record)]
    ratios = _log_ratios(record)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
    for name in names:
        axes[0].errorbar(
            values,
            [mean_std(v)[0] for v in median_nds[name]],
            yerr=[mean_std(v)[1] for v in median_nds[name]],
            marker="o",
            label=name,
        )
    axes[0].set_yscale("log")
    axes[0].set_ylabel("median NDS u^T H u / ||u||^2")
    for seed in range(seeds):
        axes[1].plot(values, [math.exp(r[seed]) for r in ratios], color="gray", alpha=0.4)
    axes[1].errorbar(
        values,
        [math.exp(mean_std(r)[0]) for r in ratios],
        yerr=[math.exp(mean_std(r)[0]) * mean_std(r)[1] for r in ratios],
        marker="o",
        color="black",
        label="geometric mean ± std",
    )
    axes[1].set_ylabel("NDS ratio AdamW / Muon")
    for ax in axes:
        ax.set_xlabel("Zipf exponent of the rule probabilities")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"zipf-pcfg, {layers} x {width} GPT, {steps} steps, {seeds} seeds")
    fig.tight_layout()
    fig.savefig(out / "amplification.png")
    plt.close(fig)
    write_record(record, out, "amplification")
    return record


def _log_ratios(record: dict[str, Any]) -> list[list[float]]:
    """Per exponent, per seed: ln(median NDS AdamW / median NDS Muon)."""
    out = []
    for a_row, m_row in zip(
        record["median_nds"]["adamw"], record["median_nds"]["muon"], strict=True
    ):
        out.append(
            [
                math.log(a / m) if a > 0 and m > 0 else math.nan
                for a, m in zip(a_row, m_row, strict=True)
            ]
        )
    return out


def amplification_verdicts(record: dict[str, Any]) -> list[Verdict]:
    """The verdict of ``amplification`` from ``record["exponents"]`` and ``["median_nds"]``."""
    ratios = _log_ratios(record)
    xs = record["exponents"]
    slopes = [slope(xs, [r[s] for r in ratios]) for s in range(len(ratios[0]))]
    per = ", ".join(
        f"{x:g}: {math.exp(mean_std(r)[0]):.2f}x (ln {fmt(r)})"
        for x, r in zip(xs, ratios, strict=True)
    )
    evidence = f"slope of ln ratio per unit exponent {fmt(slopes)}; NDS AdamW / Muon at {per}"
    return [Verdict(CLAIM, CRITERION, OUTCOME[sign_of(slopes)], evidence)]
