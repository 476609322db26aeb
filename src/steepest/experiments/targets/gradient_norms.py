"""``gradient-norms``: nuclear vs Frobenius gradient norms, J_t, L_t and Eq. 7 along training.

Shen et al. compare GD's rate, driven by ||G||_F^2 / L, with Muon's, driven by ||G||_*^2 / J,
and report that along the training of an MLP on MNIST and of a small GPT the ratio
||G||_*^2 L / (||G||_F^2 J) (their Eq. 7) stays above 1 for every matrix Muon trains. This
target measures, per hidden matrix and along training, ||G||_*^2 / ||G||_F^2, the secant
smoothness estimates L_t and J_t between consecutive iterates, and the Eq. 7 ratio.

References:
    Shen, Huang, Huang, Zhang, Shen, "On the convergence analysis of Muon", arXiv 2505.23737,
    Fig. 3 (MLP, GD vs Muon), Fig. 4 (GPT-2 style model, AdamW vs Muon), Eq. (7).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import steepest
from steepest.diagnostics import (
    muon_advantage_ratio,
    nuclear_frobenius_ratio,
    smoothness_estimates,
)
from steepest.experiments.optimizers import build_optimizer
from steepest.experiments.report import write_json_record
from steepest.experiments.runner import lr_factor, scale_lrs
from steepest.experiments.targets._common import OUTCOME_OF_SIGN, pyplot
from steepest.experiments.tasks import Task, make_task
from steepest.experiments.tasks.lm import GPTTask
from steepest.experiments.tasks.mnist_mlp import MnistMLP
from steepest.experiments.verdicts import Verdict, fmt, sign_of

__all__ = ["CLAIM", "CRITERION", "MODELS", "gradient_norms", "measure_run", "verdicts"]

CLAIM = (
    "Shen et al., arXiv 2505.23737 (Fig. 3-4): along training of an MLP and a small GPT, "
    "||G||_*^2 L_t / (||G||_F^2 J_t) (Eq. 7) stays above 1 for every matrix Muon trains"
)
CRITERION = (
    "per model, along Muon's training, ln of the smallest over hidden matrices of the median "
    "over measurements of the Eq. 7 ratio, per seed: clearly > 0 -> agrees, clearly < 0 -> "
    "disagrees, else inconclusive"
)
#: model -> (task, the paper's baseline optimizer, Muon)
MODELS = {"mlp": ("mnist-mlp", "sgd", "muon"), "gpt": ("shakespeare-char", "adamw", "muon")}
QUANTITIES = (
    "nuclear_frobenius",
    "frobenius_smoothness",
    "spectral_smoothness",
    "eq7_ratio",
    "eq7_ratio_gradient_probe",
)


def _gradients(
    loss_fn: Callable[[], torch.Tensor], matrices: list[torch.nn.Parameter]
) -> tuple[float, list[torch.Tensor]]:
    """The loss and its gradients with respect to ``matrices`` (float64 copies; .grad untouched)."""
    loss = loss_fn()
    grads = torch.autograd.grad(loss, matrices)
    return loss.item(), [g.detach().double() for g in grads]


def _hidden_matrices(
    model: torch.nn.Module, routing: dict[str, Any]
) -> tuple[list[torch.nn.Parameter], list[tuple[str, int, slice]]]:
    """The parameters ``steepest.param_groups`` routes to the matrix rule, and the matrices the
    rule sees in them: ``(label, parameter index, rows)``, one per row block of a fused weight
    (e.g. Q, K, V of ``qkv``), labelled ``name`` or ``name[block]``."""
    groups, _ = steepest.param_groups(model, **routing)
    params: list[torch.nn.Parameter] = []
    pieces: list[tuple[str, int, slice]] = []
    for group in groups:
        if group["algorithm"] != "muon":
            continue
        for name, p in zip(group["param_names"], group["params"], strict=True):
            blocks = group.get("blocks") or [p.shape[0]]
            start = 0
            for b, rows in enumerate(blocks):
                label = name if len(blocks) == 1 else f"{name}[{b}]"
                pieces.append((label, len(params), slice(start, start + rows)))
                start += rows
            params.append(p)
    return params, pieces


def measure_run(
    task: Task,
    optimizer: str,
    lr: float,
    adamw_lr: float,
    *,
    steps: int,
    measure_every: int,
    seed: int,
    measure_batch: Any,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``task``'s model with ``optimizer`` on the task's schedule; at step 0, every
    ``measure_every`` steps and at the last step, the gradients G_t, G_t+1 of the loss on
    ``measure_batch`` at the iterates before and after that step give, per hidden matrix:
    ||G_t+1||_*^2 / ||G_t+1||_F^2, L_t = ||dG||_F / ||dW||_F, J_t = ||dG||_* / ||dW||_2 and
    the Eq. 7 ratio (``steepest.diagnostics.muon_advantage_ratio``), in float64. Beside it,
    ``eq7_ratio_gradient_probe``: the Eq. 7 ratio at W_t with L and J from a probe step along
    -G_t of the same Frobenius norm as the actual step (the same direction rule for every
    optimizer; the model is restored after the probe). A fused weight that the matrix rule
    splits into row blocks is measured per block."""
    torch.manual_seed(seed)
    model = task.build_model()
    matrices, pieces = _hidden_matrices(model, task.routing())
    layer_names = [label for label, _, _ in pieces]
    optimizers = build_optimizer(optimizer, model, lr, adamw_lr, routing=task.routing())
    base = [[g["lr"] for g in opt.param_groups] for opt in optimizers]
    batches = task.batches(seed)

    def measure_loss() -> torch.Tensor:
        return task.loss(model, measure_batch)

    curve: dict[str, Any] = {
        "step": [],
        "loss": [],
        "layers": {n: {q: [] for q in QUANTITIES} for n in layer_names},
    }
    bar = tqdm(total=steps, desc=f"{optimizer} seed {seed}", leave=False, disable=not progress)
    for step in range(steps):
        scale_lrs(optimizers, base, lr_factor(step, steps, task.warmup, task.schedule))
        measure = step % measure_every == 0 or step == steps - 1
        if measure:
            _, g_before = _gradients(measure_loss, matrices)
            w_before = [p.detach().double().clone() for p in matrices]
        torch.autograd.backward(task.loss(model, next(batches)))
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        bar.update(1)
        if not measure:
            continue
        loss, g_after = _gradients(measure_loss, matrices)
        curve["step"].append(step + 1)
        curve["loss"].append(loss)
        w_after = [p.detach().double().clone() for p in matrices]
        w_probe = [w.clone() for w in w_before]
        for _, i, rows in pieces:  # W_t - (||dW||_F / ||G_t||_F) G_t, per matrix
            size = (w_after[i][rows] - w_before[i][rows]).norm() / g_before[i][rows].norm()
            w_probe[i][rows] -= size * g_before[i][rows]
        kept = [p.detach().clone() for p in matrices]
        with torch.no_grad():
            for p, w in zip(matrices, w_probe, strict=True):
                p.copy_(w)
        _, g_probe = _gradients(measure_loss, matrices)
        w_probe = [p.detach().double().clone() for p in matrices]  # rounded as the model's
        with torch.no_grad():
            for p, w in zip(matrices, kept, strict=True):
                p.copy_(w)
        for name, i, rows in pieces:
            w0, w1, g0, g1 = (t[i][rows] for t in (w_before, w_after, g_before, g_after))
            est = smoothness_estimates(w0, w1, g0, g1)
            L, J = est["frobenius_smoothness"], est["spectral_smoothness"]
            probe = smoothness_estimates(w0, w_probe[i][rows], g0, g_probe[i][rows])
            values = (
                nuclear_frobenius_ratio(g1),
                L,
                J,
                muon_advantage_ratio(g1, L, J),
                muon_advantage_ratio(
                    g0, probe["frobenius_smoothness"], probe["spectral_smoothness"]
                ),
            )
            for q, v in zip(QUANTITIES, values, strict=True):
                curve["layers"][name][q].append(v.item())
    bar.close()
    return curve


def gradient_norms(
    out: Path,
    *,
    progress: bool = True,
    seeds: int = 3,
    mlp_steps: int = 300,
    gpt_steps: int = 300,
    measure_every: int = 15,
    gpt_layers: int = 4,
    gpt_width: int = 128,
    gpt_context: int = 64,
    gpt_batch: int = 32,
    measure_size: int = 8000,
) -> dict[str, Any]:
    """Seed 004's gradient-norm quantities along training of an MLP and a char GPT.

    ``mlp``: the task mnist-mlp (784-128-64-10, 8000 training images, batch 128, cosine
    schedule), GD (``sgd``) vs Muon on the hidden matrices W1, W2 (the head is AdamW's in both
    runs), the task's learning rates; measured on ``measure_size`` training images (all of them
    by default: the full training loss). ``gpt``: shakespeare-char with ``gpt_layers`` x
    ``gpt_width``, AdamW vs Muon on the hidden matrices, the task's learning rates and
    schedule; measured on one fixed batch of 64 training windows. Each run as
    :func:`measure_run`, seeds 0..``seeds``-1. Criterion: :data:`CRITERION`.

    References:
        Shen et al., arXiv 2505.23737, Fig. 3-4, Eq. (7).
    """
    steps_of = {"mlp": mlp_steps, "gpt": gpt_steps}
    models: dict[str, Any] = {}
    for model_name, (task_name, baseline, muon) in MODELS.items():
        if model_name == "mlp":
            task = make_task(task_name)
        else:
            options = {"layers": gpt_layers, "width": gpt_width, "context": gpt_context}
            task = make_task(task_name, **options, batch_size=gpt_batch, heads=4, eval_windows=8)
        task.setup(torch.device("cpu"))
        if isinstance(task, MnistMLP):
            measure_batch: Any = (task.train_x[:measure_size], task.train_y[:measure_size])
        else:
            assert isinstance(task, GPTTask)
            gen = torch.Generator().manual_seed(10_000)
            data = task.train_data
            span = gpt_context + 1
            starts = torch.randint(len(data) - span, (64,), generator=gen)
            measure_batch = torch.stack([data[s : s + span] for s in starts.tolist()])
        runs: dict[str, Any] = {}
        for name in (baseline, muon):
            lr, adamw_lr = task.default_lrs[name]
            runs[name] = {
                "lr": lr,
                "adamw_lr": adamw_lr,
                "curves": [
                    measure_run(
                        task,
                        name,
                        lr,
                        adamw_lr,
                        steps=steps_of[model_name],
                        measure_every=measure_every,
                        seed=seed,
                        measure_batch=measure_batch,
                        progress=progress,
                    )
                    for seed in range(seeds)
                ],
            }
        models[model_name] = {
            "task": task_name,
            "task_options": task.options(),
            "steps": steps_of[model_name],
            "baseline": baseline,
            "muon": muon,
            "runs": runs,
        }
    record: dict[str, Any] = {
        "target": "gradient-norms",
        "seeds": list(range(seeds)),
        "measure_every": measure_every,
        "measure": {"mlp": f"the first {measure_size} training images", "gpt": "64 windows"},
        "models": models,
    }
    record["verdicts"] = [dataclasses.asdict(v) for v in verdicts(record)]
    _plot(record, out)
    write_json_record(record, out / "gradient-norms.json")
    return record


def _layer_mean(curve: dict[str, Any], quantity: str) -> list[float]:
    """Per measurement, the geometric mean of ``quantity`` over the hidden matrices."""
    rows = [layer[quantity] for layer in curve["layers"].values()]
    return [math.exp(statistics.fmean(math.log(v) for v in col)) for col in zip(*rows, strict=True)]


def _plot(record: dict[str, Any], out: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5), dpi=110)
    for row, (model_name, model) in zip(axes, record["models"].items(), strict=True):
        for name, run in model["runs"].items():
            curves = run["curves"]
            step = curves[0]["step"]

            def seed_mean(values: list[list[float]]) -> list[float]:
                return [statistics.fmean(col) for col in zip(*values, strict=True)]

            label = f"{name} (lr {run['lr']:g})"
            row[0].plot(step, seed_mean([c["loss"] for c in curves]), label=label)
            nf = seed_mean([_layer_mean(c, "nuclear_frobenius") for c in curves])
            row[1].plot(step, nf, label=label)
            for q, style in (("frobenius_smoothness", "-"), ("spectral_smoothness", "--")):
                values = seed_mean([_layer_mean(c, q) for c in curves])
                tag = "L_t" if q == "frobenius_smoothness" else "J_t"
                row[2].plot(step, values, style, label=f"{name} {tag}")
            ratio = seed_mean([_layer_mean(c, "eq7_ratio") for c in curves])
            line = row[3].plot(step, ratio, label=label)
            probe = seed_mean([_layer_mean(c, "eq7_ratio_gradient_probe") for c in curves])
            row[3].plot(
                step, probe, "--", color=line[0].get_color(), label=f"{name}, L, J along -G"
            )
        row[3].axhline(1.0, color="gray", linestyle=":")
        titles = (
            "loss on the measurement batch",
            "||G||_*^2 / ||G||_F^2",
            "secant L_t (solid), J_t (dashed)",
            "Eq. 7 ratio; dashed: L_t, J_t along -G",
        )
        for ax, title in zip(row, titles, strict=True):
            ax.set_title(f"{model_name}: {title}", fontsize=9)
            ax.set_xlabel("step")
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    seeds = len(record["seeds"])
    fig.suptitle(
        f"gradient norms along training; geometric mean over hidden matrices, {seeds} seeds"
    )
    fig.tight_layout()
    fig.savefig(out / "gradient-norms.png")
    plt.close(fig)


def _medians(run: dict[str, Any], quantity: str = "eq7_ratio") -> list[dict[str, float]]:
    """Per seed, each hidden matrix's median of ``quantity`` over the measurements."""
    return [
        {n: statistics.median(layer[quantity]) for n, layer in c["layers"].items()}
        for c in run["curves"]
    ]


def verdicts(record: dict[str, Any]) -> list[Verdict]:
    """One verdict per model, from Muon's runs; the baseline's numbers as evidence."""
    out = []
    for model_name, model in record["models"].items():
        lines, effect = [], []
        for role in ("muon", "baseline"):
            name = model[role]
            run = model["runs"][name]
            medians = _medians(run)
            smallest = [min(m.values()) for m in medians]
            above = [
                statistics.fmean(
                    v > 1 for layer in c["layers"].values() for v in layer["eq7_ratio"]
                )
                for c in run["curves"]
            ]
            nf = [
                statistics.median(
                    v for layer in c["layers"].values() for v in layer["nuclear_frobenius"]
                )
                for c in run["curves"]
            ]
            if role == "muon":
                effect = [math.log(v) for v in smallest]
            probe = ""
            if "eq7_ratio_gradient_probe" in next(iter(run["curves"][0]["layers"].values())):
                probed = [min(m.values()) for m in _medians(run, "eq7_ratio_gradient_probe")]
                probe = f", with L and J along -G instead: {fmt(probed)}"
            lines.append(
                f"{name}: smallest layer median {fmt(smallest)}{probe}, share of measurements > 1 "
                f"{fmt(above)}, median ||G||_*^2/||G||_F^2 {fmt(nf)}"
            )
        out.append(
            Verdict(
                CLAIM,
                f"[{model_name}] {CRITERION}",
                OUTCOME_OF_SIGN[sign_of(effect)],
                "; ".join(lines),
            )
        )
    return out
