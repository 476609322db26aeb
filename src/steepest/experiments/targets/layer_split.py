"""``layer-split``: is Muon's lower NDS carried by within-layer or by cross-layer curvature?

The claim (Bergemann, Zhang, Li, Wang, Yang, "Why Muon outperforms Adam: a curvature
perspective", arXiv 2606.04662, Fig. 4 and 9): splitting the curvature penalty of an update
u = (u_1, ..., u_L) over the layers, u^T H u = sum_l u_l^T H_ll u_l (within-layer) +
sum_{l != k} u_l^T H_lk u_k (cross-layer), Muon's lower NDS in the middle and late stages of
training is mainly sustained by a smaller within-layer term. Protocol here: a GPT on the
``zipf-pcfg`` task trained with AdamW and with Muon at the task's learning rates; every few
steps, the split of the actual update's u^T H u over the layers (embeddings, each transformer
block, final norm and head) with exact Hessian-vector products
(:func:`steepest.diagnostics.layer_split`), each term divided by ||u||^2 (so that
within + cross = NDS).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from steepest.diagnostics import layer_split as split_curvature
from steepest.experiments.targets._measured import measured_run, transformer_blocks
from steepest.experiments.targets._output import pyplot, write_record
from steepest.experiments.tasks import make_task
from steepest.experiments.verdicts import Verdict, fmt, sign_of

__all__ = ["CLAIM", "CRITERION", "layer_split", "layer_split_verdicts", "within_share"]

CLAIM = (
    "Bergemann et al., arXiv 2606.04662 (Fig. 4): in the middle and late stages of training, "
    "Muon's lower NDS is mainly sustained by smaller within-layer curvature"
)
CRITERION = (
    "per seed, medians over the measured steps in the later two thirds of training of the "
    "within-layer and cross-layer NDS terms (term / ||u||^2); gaps d_w, d_c = AdamW - Muon; "
    "share s = d_w / (|d_w| + |d_c|): s - 1/2 clearly > 0 -> agrees, clearly < 0 -> "
    "disagrees, else inconclusive"
)


def within_share(d_within: float, d_cross: float) -> float:
    """d_w / (|d_w| + |d_c|): 1 when the whole NDS gap is within-layer, -1 when Muon's
    within-layer term is the larger and nothing else differs (nan when both gaps are 0)."""
    total = abs(d_within) + abs(d_cross)
    return d_within / total if total > 0 else math.nan


def layer_split(
    out: Path,
    *,
    progress: bool = True,
    steps: int = 300,
    measure_every: int = 20,
    seeds: int = 5,
    exponent: float = 1.0,
    layers: int = 4,
    width: int = 64,
    heads: int = 4,
    context: int = 32,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Within- and cross-layer NDS of Muon's and AdamW's updates along training.

    zipf-pcfg (Zipf ``exponent``; the seed draws the grammar, initialization and batches), a
    ``layers`` x ``width`` GPT, the task's learning rates, ``steps`` steps; every
    ``measure_every`` steps the split of the actual update's u^T H u over the layers, divided
    by ||u||^2. Criterion: :data:`CRITERION`.

    References:
        Bergemann, Zhang, Li, Wang, Yang, "Why Muon outperforms Adam: a curvature
        perspective", arXiv 2606.04662, Fig. 4, Fig. 9 (within-/cross-layer decomposition).
    """
    if layers < 2:
        raise ValueError(f"layer-split: layers={layers}; need >= 2 for a cross-layer term")
    names = ("adamw", "muon")
    curves: dict[str, list[dict[str, list[float]]]] = {name: [] for name in names}
    lrs: dict[str, tuple[float, float]] = {}
    options: dict[str, Any] = {}
    for seed in range(seeds):
        task = make_task(
            "zipf-pcfg", exponent=exponent, grammar_seed=seed, layers=layers, width=width,
            heads=heads, context=context, batch_size=batch_size, eval_windows=8,
        )  # fmt: skip
        task.setup(torch.device("cpu"))
        lrs = {name: task.default_lrs[name] for name in names}
        options = task.options()
        for name in names:
            curves[name].append(
                measured_run(task, name, *lrs[name], steps, measure_every, seed, _split)
            )
    record: dict[str, Any] = {
        "target": "layer-split",
        "task": "zipf-pcfg",
        "task_options": {k: v for k, v in options.items() if k != "grammar_seed"},
        "steps": steps,
        "measure_every": measure_every,
        "seeds": list(range(seeds)),
        "lrs": lrs,
        "layer_blocks": ["embeddings", *(f"block {i}" for i in range(layers)), "output"],
        "curves": curves,
    }
    record["verdicts"] = [dataclasses.asdict(v) for v in layer_split_verdicts(record)]
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), dpi=120)
    for name, color in zip(names, ("tab:blue", "tab:orange"), strict=True):
        for ax, key in zip(axes, ("nds", "within", "cross"), strict=True):
            for i, c in enumerate(curves[name]):
                label = name if i == 0 else None
                ax.plot(c["step"], c[key], color=color, alpha=0.6, marker=".", label=label)
    for ax, title in zip(
        axes,
        ("NDS u^T H u / ||u||^2", "within-layer / ||u||^2", "cross-layer / ||u||^2"),
        strict=True,
    ):
        ax.axvline(steps / 3, color="gray", linestyle=":")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"within/cross-layer split: zipf-pcfg, {layers} x {width} GPT, {seeds} seeds")
    fig.tight_layout()
    fig.savefig(out / "layer-split.png")
    plt.close(fig)
    write_record(record, out, "layer-split")
    return record


def _split(
    model: torch.nn.Module, loss_fn: Any, params: list[torch.Tensor], u: list[torch.Tensor]
) -> dict[str, float]:
    """NDS and its within- and cross-layer parts (each / ||u||^2) of the update u."""
    s = split_curvature(loss_fn, params, u, transformer_blocks(model, params))
    n2 = s["update_norm_sq"]
    return {
        "nds": s["total"] / n2,
        "within": s["within"] / n2,
        "cross": s["cross"] / n2,
        "update_norm_sq": n2,
    }


def _late_medians(curve: dict[str, list[float]], steps: int) -> dict[str, float]:
    late = [i for i, s in enumerate(curve["step"]) if s >= steps / 3]
    return {k: statistics.median(curve[k][i] for i in late) for k in ("nds", "within", "cross")}


def layer_split_verdicts(record: dict[str, Any]) -> list[Verdict]:
    """The verdict of ``layer-split`` from ``record["curves"]`` and ``record["steps"]``."""
    shares: list[float] = []
    gaps: dict[str, list[float]] = {"nds": [], "within": [], "cross": []}
    for a, m in zip(record["curves"]["adamw"], record["curves"]["muon"], strict=True):
        ma, mm = _late_medians(a, record["steps"]), _late_medians(m, record["steps"])
        for key in gaps:
            gaps[key].append(ma[key] - mm[key])
        shares.append(within_share(gaps["within"][-1], gaps["cross"][-1]))
    outcome = {1: "agrees", -1: "disagrees", 0: "inconclusive"}[sign_of([s - 0.5 for s in shares])]
    evidence = (
        f"within share {fmt(shares)}; AdamW - Muon (later two thirds): NDS {fmt(gaps['nds'])}, "
        f"within {fmt(gaps['within'])}, cross {fmt(gaps['cross'])}"
    )
    return [Verdict(CLAIM, CRITERION, outcome, evidence)]
