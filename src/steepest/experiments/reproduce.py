"""``steepest reproduce NAME``: the seed documents' figures, each a PNG plus the JSON behind it.

Targets (:data:`TARGETS`), each a function ``(out, *, progress, **options) -> dict`` that writes
``<out>/<name>.json`` and ``<out>/<name>.png`` and returns the record:

* ``schatten-p``: variance and stable rank of the singular values of ``SchattenP(p).dualize(G)``
  against p, for a few spectra of G (seeds/000_0ff94013880c6450.txt, Sec. 4.3, Prop. 5).
* ``low-rank``: Muon against GD (step 1/L) on the quadratic task as the rank of Q falls
  (seeds/004_67262c901d7d220a.txt, Fig. 1).
* ``nds``: normalized directional sharpness and update norm of Muon and AdamW along the training
  of a small char GPT (seeds/003_e51c56d7d69de86a.txt, Fig. 2).
* ``imbalance``: balanced and minority-class accuracy of Muon and AdamW on the imbalanced
  Gaussian mixture against the imbalance ratio (Vasudeva et al., arXiv 2510.22980).
* ``implicit-bias``: l2, spectral and max-norm margins of GD, AdamW and Muon along training on
  separable multiclass data (Fan et al., arXiv 2502.04664).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from steepest.diagnostics import directional_sharpness, stable_rank
from steepest.experiments.optimizers import build_optimizer
from steepest.experiments.report import _jsonable
from steepest.experiments.runner import lr_factor, train
from steepest.experiments.tasks import Task, make_task
from steepest.norms import SchattenP

__all__ = [
    "TARGETS",
    "TARGET_CHOICES",
    "dualized_singular_values",
    "schatten_p",
    "low_rank",
    "nds",
    "imbalance",
    "implicit_bias",
]


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _write(record: dict[str, Any], out: Path, name: str) -> None:
    (out / f"{name}.json").write_text(json.dumps(_jsonable(record), indent=1, allow_nan=False))


def dualized_singular_values(G: torch.Tensor, p: float) -> torch.Tensor:
    """Singular values of ``SchattenP(p).dualize(G)``, descending, shape ``(..., min(m, n))``.

    Math: sigma_i(dualize(G)) = sigma_i^(q-1) / ||sigma||_q^(q-1), 1/p + 1/q = 1
    (seeds/000_0ff94013880c6450.txt, Prop. 4).
    """
    values: torch.Tensor = torch.linalg.svdvals(SchattenP(p).dualize(G))
    return values


def _spectra(m: int, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Gradient-like test matrices (fp64): a Gaussian matrix and two prescribed spectra."""
    gen = torch.Generator().manual_seed(seed)
    k = min(m, n)
    u, _ = torch.linalg.qr(torch.randn(m, k, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))
    prescribed = {
        "logspace(0,-3)": torch.logspace(0, -3, k, dtype=torch.float64),
        "power-law i^-1": torch.arange(1, k + 1, dtype=torch.float64) ** -1.0,
    }
    mats = {"gaussian": torch.randn(m, n, generator=gen, dtype=torch.float64)}
    mats.update({name: (u * s) @ v.T for name, s in prescribed.items()})
    return mats


def schatten_p(
    out: Path,
    *,
    progress: bool = True,
    m: int = 64,
    n: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """Variance and stable rank of the dualized singular values against p (seed 000, Sec. 4.3).

    For each test matrix G (m x n, fp64) and p in {1.25, 1.5, 2, 3, 4, 8, 16, 32, 64, 128, inf}:
    the population variance of sigma_i(dualize_p(G)) and the stable rank of dualize_p(G). The
    spectral norm (p = inf) gives U V^T: variance 0 and stable rank min(m, n). Whether each
    variance curve is monotone in p is recorded as measured (Prop. 5 is asymptotic in p).

    References:
        seeds/000_0ff94013880c6450.txt, Sec. 4.3.1 (Prop. 5) and 4.3.2.
    """
    ps = [1.25, 1.5, 2.0, 3.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, math.inf]
    record: dict[str, Any] = {
        "target": "schatten-p",
        "m": m,
        "n": n,
        "seed": seed,
        "p": ps,
        "spectra": {},
    }
    for name, G in _spectra(m, n, seed).items():
        variance, srank = [], []
        for p in ps:
            sv = dualized_singular_values(G, p)
            variance.append(sv.var(unbiased=False).item())
            srank.append(stable_rank(SchattenP(p).dualize(G)).item())
        finite = variance[:-1]
        record["spectra"][name] = {
            "variance": variance,
            "stable_rank": srank,
            "variance_monotone_decreasing": all(
                b <= a + 1e-15 for a, b in zip(finite, finite[1:], strict=False)
            ),
        }
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    finite_p = ps[:-1]
    for name, s in record["spectra"].items():
        axes[0].plot(finite_p, s["variance"][:-1], marker="o", label=name)
        axes[1].plot(finite_p, s["stable_rank"][:-1], marker="o", label=name)
    axes[1].axhline(min(m, n), color="gray", linestyle=":", label="spectral (p = inf)")
    axes[0].set_yscale("log")
    for ax, ylabel in zip(
        axes, ("variance of dualized singular values", "stable rank"), strict=True
    ):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("Schatten p")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"seed 000 Sec. 4.3: dualize under Schatten-p, G {m} x {n}")
    fig.tight_layout()
    fig.savefig(out / "schatten-p.png")
    plt.close(fig)
    _write(record, out, "schatten-p")
    return record


def low_rank(
    out: Path,
    *,
    progress: bool = True,
    m: int = 64,
    n: int = 32,
    decay: float = 1.0,
    steps: int = 100,
    seeds: int = 2,
) -> dict[str, Any]:
    """Muon against GD (step 1/L) on the quadratic as the rank of Q falls (seed 004, Fig. 1).

    Ranks m, m/2, m/4, ... down to 1; for each rank and optimizer (task default learning rates,
    cosine schedule, the same W* and Q per seed) the final f(W) relative to f(W0), mean over seeds.

    References:
        seeds/004_67262c901d7d220a.txt, Fig. 1 and Sec. E.
    """
    ranks = []
    r = m
    while r >= 1:
        ranks.append(r)
        r //= 2
    record: dict[str, Any] = {
        "target": "low-rank",
        "m": m,
        "n": n,
        "decay": decay,
        "steps": steps,
        "seeds": list(range(seeds)),
        "ranks": ranks,
        "relative_final_loss": {"sgd": [], "muon": []},
    }
    for rank in ranks:
        task = make_task("quadratic", m=m, n=n, rank=rank, decay=decay)
        task.setup(torch.device("cpu"))
        for name in ("sgd", "muon"):
            lr, adamw_lr = task.default_lrs[name]
            ratios = []
            for seed in range(seeds):
                run = train(
                    task,
                    name,
                    lr,
                    adamw_lr,
                    steps=steps,
                    seed=seed,
                    eval_every=steps,
                    device=torch.device("cpu"),
                    progress=progress,
                )
                loss = run.curve["val_loss"]
                ratios.append(loss[-1] / loss[0])
            record["relative_final_loss"][name].append(sum(ratios) / len(ratios))
    record["muon_over_gd"] = [
        a / b if b > 0 else math.nan
        for a, b in zip(
            record["relative_final_loss"]["muon"], record["relative_final_loss"]["sgd"], strict=True
        )
    ]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name, label in (("sgd", "GD, step 1/L"), ("muon", "Muon")):
        ax.plot(ranks, record["relative_final_loss"][name], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("rank of Q (Hessian)")
    ax.set_ylabel(f"f(W_{steps}) / f(W_0)")
    ax.set_title(f"seed 004: quadratic {m} x {n}, spectrum i^-{decay:g}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "low-rank.png")
    plt.close(fig)
    _write(record, out, "low-rank")
    return record


def _nds_run(task: Task, name: str, steps: int, measure_every: int, seed: int) -> dict[str, Any]:
    """Train with ``name``; every ``measure_every`` steps, NDS and norm of the actual update."""
    torch.manual_seed(seed)
    model = task.build_model()
    lr, adamw_lr = task.default_lrs[name]
    optimizers = build_optimizer(name, model, lr, adamw_lr, routing=task.routing())
    base = [[g["lr"] for g in opt.param_groups] for opt in optimizers]
    params = [p for p in model.parameters() if p.requires_grad]
    batches = task.batches(seed)
    curve: dict[str, list[float]] = {"step": [], "train_loss": [], "nds": [], "update_norm": []}
    for step in range(steps):
        factor = lr_factor(step, steps, task.warmup, task.schedule)
        for opt, lrs in zip(optimizers, base, strict=True):
            for group, b in zip(opt.param_groups, lrs, strict=True):
                group["lr"] = b * factor
        batch = next(batches)
        loss = task.loss(model, batch)
        torch.autograd.backward(loss)
        measure = step % measure_every == 0 or step == steps - 1
        before = [p.detach().clone() for p in params] if measure else []
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if measure:
            after = [p.detach().clone() for p in params]
            direction = [a - b for a, b in zip(after, before, strict=True)]
            with torch.no_grad():
                for p, b in zip(params, before, strict=True):
                    p.copy_(b)
            nds = directional_sharpness(
                functools.partial(task.loss, model, batch), params, direction, normalized=True
            )
            with torch.no_grad():
                for p, a in zip(params, after, strict=True):
                    p.copy_(a)
            for p in params:
                p.grad = None
            curve["step"].append(step)
            curve["train_loss"].append(loss.item())
            curve["nds"].append(nds)
            curve["update_norm"].append(math.sqrt(sum(d.square().sum().item() for d in direction)))
    return curve


def nds(
    out: Path,
    *,
    progress: bool = True,
    steps: int = 120,
    measure_every: int = 10,
    seed: int = 0,
    layers: int = 2,
    width: int = 64,
    heads: int = 4,
    context: int = 32,
    batch_size: int = 16,
    task: str = "shakespeare-char",
    exponent: float = 1.0,
) -> dict[str, Any]:
    """NDS = u^T H u / ||u||^2 and ||u||_F of the update u of Muon and AdamW along training.

    A small GPT on ``task``: ``shakespeare-char`` (default) or ``zipf-pcfg`` (seed 003's data,
    Zipf ``exponent``), with the given sizes and the task's default learning rates. u is the
    actual parameter change of a step (all parameters), H the Hessian of that step's training
    batch loss at the parameters before it (exact Hessian-vector product,
    :func:`steepest.diagnostics.directional_sharpness`).

    References:
        seeds/003_e51c56d7d69de86a.txt, Fig. 2 (NDS and update norms of Muon and Adam).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if task not in TARGET_CHOICES["nds"]["task"]:
        raise ValueError(f"nds: task={task!r}; choose one of {TARGET_CHOICES['nds']['task']}")
    sizes: dict[str, Any] = dict(
        layers=layers,
        width=width,
        heads=heads,
        context=context,
        batch_size=batch_size,
        eval_windows=8,
    )
    if task == "zipf-pcfg":
        sizes["exponent"] = exponent
    lm_task = make_task(task, **sizes)
    lm_task.setup(torch.device("cpu"))
    record: dict[str, Any] = {
        "target": "nds",
        "task": lm_task.name,
        "task_options": lm_task.options(),
        "steps": steps,
        "measure_every": measure_every,
        "seed": seed,
        "lrs": {k: lm_task.default_lrs[k] for k in ("adamw", "muon")},
        "curves": {},
    }
    with sdpa_kernel(SDPBackend.MATH):  # double backward (Hessian-vector products)
        for name in ("adamw", "muon"):
            record["curves"][name] = _nds_run(lm_task, name, steps, measure_every, seed)
    a, m = record["curves"]["adamw"]["nds"], record["curves"]["muon"]["nds"]
    record["mean_nds"] = {"adamw": sum(a) / len(a), "muon": sum(m) / len(m)}
    record["adamw_over_muon_nds"] = [
        x / y if y != 0 else math.nan for x, y in zip(a, m, strict=True)
    ]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for name, curve in record["curves"].items():
        axes[0].plot(curve["step"], curve["nds"], marker="o", label=name)
        axes[1].plot(curve["step"], curve["update_norm"], marker="o", label=name)
    for ax, ylabel in zip(axes, ("NDS  u^T H u / ||u||^2", "update norm ||u||_F"), strict=True):
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"seed 003 Fig. 2: {layers} x {width} GPT on {lm_task.name}, seed {seed}")
    fig.tight_layout()
    fig.savefig(out / "nds.png")
    plt.close(fig)
    _write(record, out, "nds")
    return record


def imbalance(
    out: Path,
    *,
    progress: bool = True,
    steps: int = 200,
    seeds: int = 2,
    classes: int = 4,
    dim: int = 32,
    train_size: int = 2000,
    hidden: int = 64,
) -> dict[str, Any]:
    """Balanced and minority-class accuracy against the imbalance ratio, Muon and AdamW.

    For each ratio in {1, 4, 16, 64, 256}: the ``imbalanced-gmm`` task (task default
    learning rates and schedule), accuracies at the end of training, mean over seeds.

    References:
        Vasudeva et al., arXiv 2510.22980; seeds/003_e51c56d7d69de86a.txt (imbalance).
    """
    ratios = [1.0, 4.0, 16.0, 64.0, 256.0]
    minority = f"class_{classes - 1}_accuracy"
    record: dict[str, Any] = {
        "target": "imbalance",
        "steps": steps,
        "seeds": list(range(seeds)),
        "ratios": ratios,
        "balanced_accuracy": {"adamw": [], "muon": []},
        "minority_accuracy": {"adamw": [], "muon": []},
    }
    for ratio in ratios:
        task = make_task(
            "imbalanced-gmm",
            classes=classes,
            dim=dim,
            train_size=train_size,
            hidden=hidden,
            imbalance=ratio,
        )
        task.setup(torch.device("cpu"))
        record["task_options"] = task.options()
        for name in ("adamw", "muon"):
            runs = [
                train(
                    task,
                    name,
                    *task.default_lrs[name],
                    steps=steps,
                    seed=seed,
                    eval_every=steps,
                    device=torch.device("cpu"),
                    progress=progress,
                )
                for seed in range(seeds)
            ]
            for key, metric in (
                ("balanced_accuracy", "balanced_accuracy"),
                ("minority_accuracy", minority),
            ):
                values = [r.curve[metric][-1] for r in runs]
                record[key][name].append(sum(values) / len(values))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name in ("adamw", "muon"):
        (line,) = ax.plot(
            ratios, record["balanced_accuracy"][name], marker="o", label=f"{name} balanced"
        )
        ax.plot(
            ratios,
            record["minority_accuracy"][name],
            marker="s",
            linestyle="--",
            color=line.get_color(),
            label=f"{name} minority class",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("imbalance ratio (majority / minority class size)")
    ax.set_ylabel("held-out accuracy (balanced set)")
    ax.set_title(f"imbalanced GMM, {classes} classes, {steps} steps, {seeds} seed(s)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "imbalance.png")
    plt.close(fig)
    _write(record, out, "imbalance")
    return record


def implicit_bias(
    out: Path,
    *,
    progress: bool = True,
    steps: int = 3000,
    eval_every: int = 50,
    seed: int = 0,
    n: int = 200,
    dim: int = 20,
    classes: int = 5,
) -> dict[str, Any]:
    """The l2, spectral and max-norm margins of GD, AdamW and Muon along training.

    The ``implicit-bias`` task (separable data, W0 = 0, constant learning rates: task defaults).
    Fan et al. predict that each method's margin in its own geometry grows toward the maximum:
    GD the l2 one, Muon (spectral descent) the spectral one, Adam / sign descent the max-norm one.

    References:
        Fan et al., arXiv 2502.04664.
    """
    task = make_task("implicit-bias", n=n, dim=dim, classes=classes)
    task.setup(torch.device("cpu"))
    keys = ("l2_margin", "spectral_margin", "max_norm_margin")
    record: dict[str, Any] = {
        "target": "implicit-bias",
        "task_options": task.options(),
        "steps": steps,
        "seed": seed,
        "curves": {},
    }
    for name in ("sgd", "adamw", "muon"):
        run = train(
            task,
            name,
            *task.default_lrs[name],
            steps=steps,
            seed=seed,
            eval_every=eval_every,
            device=torch.device("cpu"),
            progress=progress,
        )
        record["curves"][name] = {
            k: run.curve[k] for k in ("step", "val_loss", "train_accuracy", *keys)
        }
    record["final"] = {name: {k: c[k][-1] for k in keys} for name, c in record["curves"].items()}
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), dpi=120)
    labels = {"sgd": "GD", "adamw": "AdamW", "muon": "Muon"}
    for ax, key in zip(axes, keys, strict=True):
        for name, curve in record["curves"].items():
            ax.plot(curve["step"], curve[key], label=labels[name])
        ax.set_xlabel("step")
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"implicit bias: {n} separable points, R^{dim}, {classes} classes")
    fig.tight_layout()
    fig.savefig(out / "implicit-bias.png")
    plt.close(fig)
    _write(record, out, "implicit-bias")
    return record


# Allowed values of the targets' string options.
TARGET_CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "nds": {"task": ("shakespeare-char", "zipf-pcfg")},
}

TARGETS: dict[str, Callable[..., dict[str, Any]]] = {
    "schatten-p": schatten_p,
    "low-rank": low_rank,
    "nds": nds,
    "imbalance": imbalance,
    "implicit-bias": implicit_bias,
}
