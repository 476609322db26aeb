"""``steepest reproduce NAME``: the papers' claims behind the seed documents, each tested.

Targets (:data:`TARGETS`), each a function ``(out, *, progress, **options) -> dict`` that writes
``<out>/<name>.json`` and ``<out>/<name>.png`` and returns the record, whose ``verdicts`` list
each claim's criterion (stated in :data:`CRITERIA` before any run) and the outcome computed
from at least three seeds (:mod:`steepest.experiments.verdicts`):

* ``schatten-p``: spread and stable rank of Schatten-p dualized singular values against p, on
  synthetic spectra and the experiments' GPT gradients (Cesista 2025, Sec. 4.3).
* ``low-rank``: steps to a threshold of Muon and GD on the concentrated-spectrum quadratic,
  two step-size protocols, with the Eq. 7 ratio (Shen et al., arXiv 2505.23737).
* ``nds``: NDS, update norm and the one-step Taylor decomposition of Muon's and AdamW's updates,
  at the task lrs, at matched update norms and at matched validation loss (Bergemann et al.,
  arXiv 2606.04662).
* ``imbalance``: balanced accuracy over training of tuned GD, AdamW, Muon and spectral GD on
  the imbalanced Gaussian mixture, and the order in which a linear model learns the class-mean
  components (Vasudeva et al., arXiv 2510.22980).
* ``implicit-bias``: margins of normalized steepest descent in three norms as a ratio to each
  norm's exact maximum (Fan et al., arXiv 2502.04664).
* ``regression``, ``gradient-norms``, ``batch-size``: in :mod:`steepest.experiments.targets`
  (least squares with MNIST vs Gaussian features and the Eq. 7 quantities along training, Shen
  et al., arXiv 2505.23737; steps to a target loss across batch sizes, Shah et al., arXiv
  2505.02222).
* ``amplification``: the NDS ratio AdamW / Muon against the Zipf exponent of zipf-pcfg data
  (Bergemann et al., arXiv 2606.04662, Fig. 3).
* ``layer-split``: within- and cross-layer parts of Muon's and AdamW's NDS (Bergemann et al.,
  Fig. 4).
* ``kronecker-hessian``: low-rank Kronecker fits of exact attention Hessians and the NDS they
  imply (Bergemann et al., Assumption 5.1, Fig. 5).
* ``grokking``: steps to generalize on modular addition with weight decay, Muon and AdamW
  tuned and at the task's lrs (Tveit et al., arXiv 2504.16041).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import torch

from steepest.diagnostics import muon_advantage_ratio, stable_rank, taylor_check
from steepest.experiments.optimizers import build_optimizer, default_lrs, split_parameters
from steepest.experiments.report import _jsonable
from steepest.experiments.runner import train
from steepest.experiments.targets import (
    amplification,
    batch_size,
    component_order,
    gradient_norms,
    grokking,
    kronecker_hessian,
    layer_split,
    regression,
)
from steepest.experiments.targets._measured import measured_run
from steepest.experiments.tasks import Task, make_task
from steepest.experiments.tune import tune_lr
from steepest.experiments.verdicts import Verdict, fmt, mean_std, sign_of, threshold_test
from steepest.norms import SchattenP

__all__ = [
    "CLAIMS",
    "CRITERIA",
    "QUICK_OPTIONS",
    "TARGETS",
    "TARGET_CHOICES",
    "VERDICTS",
    "dualized_singular_values",
    "imbalance",
    "implicit_bias",
    "low_rank",
    "max_margins",
    "nds",
    "schatten_p",
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
    (Cesista 2025, "Muon and a selective survey on steepest descent in Riemannian and
    non-Riemannian manifolds", Prop. 4).
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


def _msign(G: torch.Tensor) -> torch.Tensor:
    """U V^T of the reduced SVD of ``G`` (exact, in G's dtype)."""
    u, _, vh = torch.linalg.svd(G, full_matrices=False)
    product: torch.Tensor = u @ vh
    return product


# --------------------------------------------------------------------------------------------
# schatten-p


def _gpt_gradients(seed: int, steps: int, sizes: dict[str, int]) -> list[tuple[Any, Any]]:
    """(gradient, weight) of every hidden matrix of the experiments' char GPT after ``steps``
    AdamW steps from the seed's initialization (float64 copies)."""
    task = make_task("shakespeare-char", **sizes, eval_windows=8)
    task.setup(torch.device("cpu"))
    torch.manual_seed(seed)
    model = task.build_model()
    lr, adamw_lr = task.default_lrs["adamw"]
    optimizers = build_optimizer("adamw", model, lr, adamw_lr, routing=task.routing())
    batches = task.batches(seed)
    for _ in range(steps):
        torch.autograd.backward(task.loss(model, next(batches)))
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
    torch.autograd.backward(task.loss(model, next(batches)))
    matrices, _ = split_parameters(model, task.routing())
    return [(p.grad.detach().double(), p.detach().double()) for p in matrices if p.grad is not None]


def schatten_p(
    out: Path,
    *,
    progress: bool = True,
    m: int = 64,
    n: int = 32,
    seeds: int = 3,
    gpt_steps: int = 20,
    gpt_width: int = 128,
    gpt_layers: int = 4,
) -> dict[str, Any]:
    """Spread (std / mean) and stable rank of the dualized singular values against p.

    For each matrix family and seed: Gaussian and two prescribed spectra (m x n, float64), and
    the gradients of every hidden matrix of the experiments' char GPT (``gpt_layers`` x
    ``gpt_width``) after ``gpt_steps`` AdamW steps. For p in {1.25, ..., 128, inf}: the
    scale-free spread std/mean of sigma_i(dualize_p(G)) (0 at p = inf), the stable rank of
    dualize_p(G) over that of U V^T, and for the GPT the relative size
    ||dualize_p(G)||_2 / ||W||_2 (Def. 6). Criterion: :data:`CRITERIA` ``["schatten-p"]``.

    References:
        F. L. Cesista, "Muon and a selective survey on steepest descent in Riemannian and
        non-Riemannian manifolds" (2025), Sec. 4.3, Prop. 4-5, Def. 6-7.
    """
    ps = [1.25, 1.5, 2.0, 3.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, math.inf]
    families: dict[str, dict[str, list[list[float]]]] = {}

    def add(family: str, pairs: list[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
        spread, fraction, relsize = [], [], []
        for p in ps:
            s, f, r = [], [], []
            for G, W in pairs:
                D = SchattenP(p).dualize(G)
                sv = torch.linalg.svdvals(D)
                s.append((sv.std(unbiased=False) / sv.mean()).item())
                f.append((stable_rank(D) / stable_rank(_msign(G))).item())
                if W is not None:
                    r.append((sv[0] / torch.linalg.matrix_norm(W, 2)).item())
            spread.append(statistics.fmean(s))
            fraction.append(statistics.fmean(f))
            relsize.append(statistics.fmean(r) if r else math.nan)
        entry = families.setdefault(family, {"spread": [], "stable_rank_fraction": []})
        entry["spread"].append(spread)
        entry["stable_rank_fraction"].append(fraction)
        if pairs[0][1] is not None:
            entry.setdefault("relative_size", []).append(relsize)

    sizes = {"layers": gpt_layers, "width": gpt_width, "heads": 4}
    for seed in range(seeds):
        for family, G in _spectra(m, n, seed).items():
            add(family, [(G, None)])
        add("gpt gradients", list(_gpt_gradients(seed, gpt_steps, sizes)))
    record: dict[str, Any] = {
        "target": "schatten-p",
        "m": m,
        "n": n,
        "seeds": list(range(seeds)),
        "gpt": {**sizes, "adamw_steps": gpt_steps},
        "p": ps,
        "families": families,
    }
    record["verdicts"] = [dataclasses.asdict(v) for v in schatten_p_verdicts(record)]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    finite_p = ps[:-1]
    for name, fam in families.items():
        for ax, key in zip(axes, ("spread", "stable_rank_fraction"), strict=True):
            per_p = list(zip(*fam[key], strict=True))[:-1]
            ax.errorbar(
                finite_p,
                [mean_std(v)[0] for v in per_p],
                yerr=[mean_std(v)[1] for v in per_p],
                marker="o",
                label=name,
            )
    axes[0].set_yscale("log")
    for ax, ylabel in zip(
        axes,
        ("spread std/mean of dualized singular values", "stable rank / spectral's"),
        strict=True,
    ):
        ax.set_xscale("log", base=2)
        ax.axvline(32, color="gray", linestyle=":")
        ax.set_xlabel("Schatten p")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Schatten-p dualization, {seeds} seeds (mean ± std)")
    fig.tight_layout()
    fig.savefig(out / "schatten-p.png")
    plt.close(fig)
    _write(record, out, "schatten-p")
    return record


def schatten_p_verdicts(record: dict[str, Any]) -> list[Verdict]:
    """The verdict of ``schatten-p`` from ``record["p"]`` and ``record["families"]``."""
    at = record["p"].index(32.0)
    passes, fails, lines = [], [], []
    for name, fam in record["families"].items():
        spread = [row[at] for row in fam["spread"]]
        fraction = [row[at] for row in fam["stable_rank_fraction"]]
        tests = (threshold_test(spread, 0.1), -threshold_test(fraction, 0.9))
        passes.append(all(t == 1 for t in tests))
        fails.append(any(t == -1 for t in tests))
        lines.append(f"{name}: spread {fmt(spread)}, srank fraction {fmt(fraction)}")
    outcome = "agrees" if all(passes) else "disagrees" if any(fails) else "inconclusive"
    return [Verdict(CLAIMS["schatten-p"], CRITERIA["schatten-p"], outcome, "; ".join(lines))]


# --------------------------------------------------------------------------------------------
# low-rank


def _concentrated_problem(
    m: int, n: int, k: int, tail: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Q, W*, eigenvalues) in float64: k dominant eigenvalues spread log-evenly over [0.1, 1]
    (1 for k = 1), the other m - k equal to ``tail``."""
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, m, generator=gen, dtype=torch.float64))
    lam = torch.full((m,), tail, dtype=torch.float64)
    lam[:k] = torch.logspace(0, -1, k, dtype=torch.float64) if k > 1 else 1.0
    w_star = torch.randn(m, n, generator=gen, dtype=torch.float64)
    return (u * lam) @ u.T, w_star, lam


def _steps_to(
    Q: torch.Tensor,
    w_star: torch.Tensor,
    rule: str,
    lr: float,
    threshold: float,
    max_steps: int,
    momentum: float,
) -> tuple[int | None, float]:
    """Steps of ``rule`` ("gd" or "muon", constant ``lr``) from W = 0 until f / f(0) <=
    ``threshold`` (None if not within ``max_steps``), and the smallest f / f(0) seen."""
    D = -w_star.clone()
    f0 = torch.sum(D * (Q @ D)).item()
    M = torch.zeros_like(D)
    best = 1.0
    for step in range(1, max_steps + 1):
        G = 2 * Q @ D
        if rule == "gd":
            D = D - lr * G
        else:
            M = momentum * M + G
            D = D - lr * _msign(M)
        ratio = torch.sum(D * (Q @ D)).item() / f0
        if not math.isfinite(ratio):
            return None, math.inf
        best = min(best, ratio)
        if ratio <= threshold:
            return step, best
    return None, best


def low_rank(
    out: Path,
    *,
    progress: bool = True,
    m: int = 64,
    n: int = 32,
    ks: str = "1,2,4,8,16,32",
    tail: float = 1e-3,
    threshold: float = 1e-2,
    max_steps: int = 2000,
    momentum: float = 0.9,
    seeds: int = 3,
) -> dict[str, Any]:
    """Steps to f / f(0) <= ``threshold`` of Muon and GD on Shen et al.'s quadratic, float64.

    Q has k dominant eigenvalues in [0.1, 1] and m - k equal to ``tail`` (the concentrated
    family), W* is
    Gaussian, W0 = 0; L = 2. Two step-size protocols: ``seed`` (GD at its constant 1/L, Muon
    at the constant lr that reaches the threshold in the fewest steps, as the paper chooses
    Muon's step) and ``both tuned`` (GD's constant step tuned the same way). Muon is momentum
    ``momentum`` then exact msign (SVD). Beside each outcome: the paper's Eq. 7 ratio
    ``muon_advantage_ratio`` at W0 with L = 2 lambda_max and J = 2 (sum of the n largest
    eigenvalues). Criterion: :data:`CRITERIA` ``["low-rank"]``.

    References:
        Shen, Huang, Huang, Zhang, Shen, "On the convergence analysis of Muon",
        arXiv 2505.23737, Fig. 1, Eq. (7), Sec. E.
    """
    k_values = [int(v) for v in ks.split(",")]
    if any(not 1 <= k <= m for k in k_values):
        raise ValueError(f"low-rank: ks={ks!r}; need integers in [1, m={m}]")
    protocols: dict[str, dict[str, Any]] = {
        name: {"gd_steps": [], "muon_steps": [], "gd_lr": [], "muon_lr": []}
        for name in ("seed", "both tuned")
    }
    ratios: list[list[float]] = []
    for k in k_values:
        for proto in protocols.values():
            for key in proto:
                proto[key].append([])
        ratios.append([])
        for seed in range(seeds):
            Q, w_star, lam = _concentrated_problem(m, n, k, tail, seed)
            L, J = 2 * lam.max(), 2 * lam.sort(descending=True).values[: min(m, n)].sum()
            ratios[-1].append(muon_advantage_ratio(-2 * Q @ w_star, L, J).item())

            def score(
                rule: str, lr: float, Q: torch.Tensor = Q, w_star: torch.Tensor = w_star
            ) -> float:
                steps, best = _steps_to(Q, w_star, rule, lr, threshold, max_steps, momentum)
                return float(steps) if steps is not None else max_steps + best

            muon = tune_lr(lambda lr: score("muon", lr), 0.1)
            gd = tune_lr(lambda lr: score("gd", lr), 0.5, factor=1.25)
            gd_seed = score("gd", 0.5)
            for proto, gd_lr, gd_score in (
                (protocols["seed"], 0.5, gd_seed),
                (protocols["both tuned"], gd.best, min(gd.scores)),
            ):
                proto["gd_steps"][-1].append(gd_score)
                proto["muon_steps"][-1].append(min(muon.scores))
                proto["gd_lr"][-1].append(gd_lr)
                proto["muon_lr"][-1].append(muon.best)
    record: dict[str, Any] = {
        "target": "low-rank",
        "m": m,
        "n": n,
        "ks": k_values,
        "tail": tail,
        "threshold": threshold,
        "max_steps": max_steps,
        "momentum": momentum,
        "seeds": list(range(seeds)),
        "muon_advantage_ratio": ratios,
        "protocols": protocols,
        "note": "steps above max_steps mean the threshold was not reached (max_steps + best f/f0)",
    }
    record["verdicts"] = [dataclasses.asdict(v) for v in low_rank_verdicts(record)]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for ax, (name, proto) in zip(axes, protocols.items(), strict=True):
        for key, label in (("gd_steps", "GD"), ("muon_steps", "Muon")):
            ax.errorbar(
                k_values,
                [mean_std(v)[0] for v in proto[key]],
                yerr=[mean_std(v)[1] for v in proto[key]],
                marker="o",
                label=label,
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(f"k dominant eigenvalues (tail {tail:g})")
        ax.set_ylabel(f"steps to f/f0 <= {threshold:g}")
        ax.set_title(f"protocol: {name}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Shen et al. quadratic {m} x {n}, float64, {seeds} seeds")
    fig.tight_layout()
    fig.savefig(out / "low-rank.png")
    plt.close(fig)
    _write(record, out, "low-rank")
    return record


def low_rank_verdicts(record: dict[str, Any]) -> list[Verdict]:
    """One verdict per step-size protocol of ``low-rank``, from ``record["protocols"]``."""
    verdicts = []
    for name, proto in record["protocols"].items():
        speedup = [
            [g / mu for g, mu in zip(gd, mus, strict=True)]
            for gd, mus in zip(proto["gd_steps"], proto["muon_steps"], strict=True)
        ]
        effect = [math.log(a) - math.log(b) for a, b in zip(speedup[0], speedup[-1], strict=True)]
        sign = sign_of(effect)
        outcome = {1: "agrees", -1: "disagrees", 0: "inconclusive"}[sign]
        rows = ", ".join(
            f"k={k}: GD/Muon steps {fmt(s)} (Eq. 7 ratio {fmt(r)})"
            for k, s, r in zip(record["ks"], speedup, record["muon_advantage_ratio"], strict=True)
        )
        verdicts.append(
            Verdict(CLAIMS["low-rank"], f"[{name}] {CRITERIA['low-rank']}", outcome, rows)
        )
    return verdicts


# --------------------------------------------------------------------------------------------
# nds


def _nds_run(
    task: Task, name: str, lr: float, adamw_lr: float, steps: int, measure_every: int, seed: int
) -> dict[str, list[float]]:
    """Train with ``name``; every ``measure_every`` steps, the one-step Taylor decomposition of
    the actual update u (all parameters) on that step's batch: first-order gain -<g, u>,
    curvature penalty u^T H u / 2, predicted and actual loss change, NDS and ||u||_F, and the
    validation loss before the step."""

    def taylor_terms(
        model: torch.nn.Module,
        loss_fn: Callable[[], torch.Tensor],
        params: list[torch.Tensor],
        update: list[torch.Tensor],
    ) -> dict[str, float]:
        check = taylor_check(loss_fn, params, update, 1.0)
        return {
            "val_loss": task.evaluate(model)["val_loss"],
            "nds": check["nds"],
            "update_norm": math.sqrt(check["update_norm_sq"]),
            "gain": check["first_order"],
            "penalty": 0.5 * check["curvature"],
            "predicted": check["predicted"],
            "actual": check["actual"],
        }

    return measured_run(task, name, lr, adamw_lr, steps, measure_every, seed, taylor_terms)


#: the ``nds`` arm that raises AdamW's lrs to Muon's update norm
UP: Final = "matched update norm, AdamW up"

#: the Taylor terms compared at matched validation loss
MATCHED_KEYS: Final = ("nds", "update_norm", "gain", "penalty", "predicted", "actual")


def _at_loss(curve: dict[str, list[float]], level: float, key: str) -> float:
    """``curve[key]`` at the first measured crossing of validation loss ``level``, linear in
    the validation loss between the two measured steps around it (nan if never reached)."""
    losses = curve["val_loss"]
    for i, loss in enumerate(losses):
        if loss <= level:
            if i == 0 or losses[i - 1] == loss:
                return curve[key][i]
            t = (losses[i - 1] - level) / (losses[i - 1] - loss)
            return curve[key][i - 1] + t * (curve[key][i] - curve[key][i - 1])
    return math.nan


def matched_loss_view(
    adamw: dict[str, list[float]],
    muon: dict[str, list[float]],
    points: int = 9,
    until: float = math.inf,
) -> dict[str, Any]:
    """The Taylor terms of two runs at equal validation loss.

    Each run is cut to its measurements after the first (the first interval, from the
    initialization, spans most of the loss range in one step) up to step ``until`` (the
    annealed end of a schedule, where steps vanish, is left out). Levels: ``points`` values
    evenly spaced over the validation losses both cut runs pass through, from the higher of
    their lowest to the lower of their highest. Each run's terms (:data:`MATCHED_KEYS`) are
    interpolated at each level by :func:`_at_loss`; no level when the ranges do not overlap.

    Returns:
        ``{"levels": [...], "adamw": {key: [...]}, "muon": {key: [...]}}``.

    References:
        Bergemann et al., arXiv 2606.04662, Sec. 3 (the comparison at matched validation loss).
    """
    runs = {}
    for name, curve in (("adamw", adamw), ("muon", muon)):
        keep = [i for i, step in enumerate(curve["step"]) if i >= 1 and step <= until]
        runs[name] = {k: [curve[k][i] for i in keep] for k in ("val_loss", *MATCHED_KEYS)}
    lows = [min(c["val_loss"], default=math.inf) for c in runs.values()]
    highs = [max(c["val_loss"], default=-math.inf) for c in runs.values()]
    floor, top = max(lows), min(highs)
    levels = (
        [floor + (top - floor) * k / (points - 1) for k in range(points)] if floor < top else []
    )
    view: dict[str, Any] = {"levels": levels}
    for name, curve in runs.items():
        view[name] = {k: [_at_loss(curve, level, k) for level in levels] for k in MATCHED_KEYS}
    return view


def nds(
    out: Path,
    *,
    progress: bool = True,
    steps: int = 200,
    measure_every: int = 5,
    seeds: int = 8,
    layers: int = 2,
    width: int = 64,
    heads: int = 4,
    context: int = 32,
    batch_size: int = 16,
    task: str = "shakespeare-char",
    exponent: float = 1.0,
) -> dict[str, Any]:
    """NDS, update norm and the one-step Taylor decomposition of Muon's and AdamW's updates.

    A small GPT on ``task``: ``shakespeare-char`` (default) or ``zipf-pcfg`` (Zipf
    ``exponent``). Three arms per seed: ``task lrs`` (the task's default learning rates),
    ``matched update norm`` (Muon's matrix lr scaled by AdamW's median update norm over Muon's
    in the first arm, same seed) and ``matched update norm, AdamW up`` (AdamW's lrs scaled by
    the inverse ratio, against Muon at its task lrs). u is the actual change of all parameters
    in a step; g and H the gradient and Hessian of that step's batch loss before it
    (:func:`steepest.diagnostics.taylor_check`), and the validation loss there. Medians over
    the measured steps, then mean ± std over seeds. Matched-loss view: the same terms of both
    optimizers at equal validation loss (:func:`matched_loss_view`, task lrs arm). Criteria:
    :data:`CRITERIA` ``["nds"]``, ``["nds mechanism"]``, ``["nds matched"]``,
    ``["nds matched loss"]``, ``["nds matched loss mechanism"]``.

    References:
        Bergemann, Zhang, Li, Wang, Yang, "Why Muon outperforms Adam: a curvature
        perspective", arXiv 2606.04662, Fig. 1-2 (NDS, update norms, Taylor decomposition).
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
    lrs = {k: lm_task.default_lrs[k] for k in ("adamw", "muon")}
    arms: dict[str, dict[str, Any]] = {"task lrs": {}, "matched update norm": {}, UP: {}}
    summary_keys = ("nds", "update_norm", "gain", "penalty", "predicted", "actual")
    with sdpa_kernel(SDPBackend.MATH):  # double backward (Hessian-vector products)
        for seed in range(seeds):
            curves = {
                name: _nds_run(lm_task, name, *lrs[name], steps, measure_every, seed)
                for name in ("adamw", "muon")
            }
            scale = statistics.median(curves["adamw"]["update_norm"]) / statistics.median(
                curves["muon"]["update_norm"]
            )
            muon_lr = lrs["muon"][0] * scale
            matched = {
                "adamw": curves["adamw"],
                "muon": _nds_run(
                    lm_task, "muon", muon_lr, lrs["muon"][1], steps, measure_every, seed
                ),
            }
            adamw_lrs = (lrs["adamw"][0] / scale, lrs["adamw"][1] / scale)
            up = {
                "adamw": _nds_run(lm_task, "adamw", *adamw_lrs, steps, measure_every, seed),
                "muon": curves["muon"],
            }
            arm_lrs = {("matched update norm", "muon"): muon_lr, (UP, "adamw"): adamw_lrs[0]}
            for arm, runs in (("task lrs", curves), ("matched update norm", matched), (UP, up)):
                for name, curve in runs.items():
                    entry = arms[arm].setdefault(
                        name, {"curves": [], "lr": [], **{f"median_{k}": [] for k in summary_keys}}
                    )
                    entry["curves"].append(curve)
                    entry["lr"].append(arm_lrs.get((arm, name), lrs[name][0]))
                    for k in summary_keys:
                        entry[f"median_{k}"].append(statistics.median(curve[k]))
    record: dict[str, Any] = {
        "target": "nds",
        "matched_loss": [
            matched_loss_view(a, m, until=0.8 * steps)
            for a, m in zip(
                arms["task lrs"]["adamw"]["curves"], arms["task lrs"]["muon"]["curves"], strict=True
            )
        ],
        "task": lm_task.name,
        "task_options": lm_task.options(),
        "steps": steps,
        "measure_every": measure_every,
        "seeds": list(range(seeds)),
        "lrs": lrs,
        "arms": arms,
    }
    record["verdicts"] = [dataclasses.asdict(v) for v in nds_verdicts(record)]
    plt = _pyplot()
    fig, grid = plt.subplots(2, 3, figsize=(15, 8), dpi=120)
    axes = list(grid[0]) + list(grid[1][:2])
    panels = ("nds", "update_norm", "penalty", "gain", "actual")
    colors = {
        ("task lrs", "adamw"): "tab:blue",
        ("task lrs", "muon"): "tab:orange",
        ("matched update norm", "muon"): "tab:green",
        (UP, "adamw"): "tab:red",
    }
    for arm, style in (("task lrs", "-"), ("matched update norm", "--"), (UP, "--")):
        for name, entry in arms[arm].items():
            if (arm, name) not in colors:
                continue
            c, color = entry["curves"][0], colors[arm, name]
            for ax, key in zip(axes, panels, strict=True):
                ax.plot(c["step"], c[key], style, color=color, marker="o", label=f"{name} ({arm})")
            axes[-1].plot(c["step"], c["predicted"], style, color=color, marker="x", alpha=0.5)
    for ax, ylabel in zip(
        axes,
        (
            "NDS u^T H u / ||u||^2",
            "update norm ||u||_F",
            "curvature penalty u^T H u / 2",
            "first-order gain -<g, u>",
            "loss change: actual (o), predicted (x)",
        ),
        strict=True,
    ):
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_yscale("symlog", linthresh=1e-4)
    view = record["matched_loss"][0]
    ax = grid[1][2]
    for name in ("adamw", "muon"):
        color = colors["task lrs", name]
        ax.plot(view["levels"], view[name]["nds"], color=color, marker="o", label=f"{name} NDS")
        ax.plot(
            view["levels"], view[name]["penalty"], ":", color=color, marker=".",
            label=f"{name} penalty",
        )  # fmt: skip
    ax.set_xlabel("validation loss (matched levels)")
    ax.set_ylabel("NDS, penalty at matched loss")
    ax.set_yscale("log")
    ax.invert_xaxis()
    for ax in grid.flat:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"NDS and Taylor terms: {layers} x {width} GPT on {lm_task.name}, seed 0")
    fig.tight_layout()
    fig.savefig(out / "nds.png")
    plt.close(fig)
    _write(record, out, "nds")
    return record


def nds_verdicts(record: dict[str, Any]) -> list[Verdict]:
    """The verdicts of ``nds``: four from the per-seed medians in ``record["arms"]``, two from
    ``record["matched_loss"]``."""

    def log_ratio(arm: str, key: str) -> list[float]:
        a, m = record["arms"][arm]["adamw"][key], record["arms"][arm]["muon"][key]
        return [math.log(x / y) if x > 0 and y > 0 else math.nan for x, y in zip(a, m, strict=True)]

    outcome = {1: "agrees", -1: "disagrees", 0: "inconclusive"}
    nds_ratio = log_ratio("task lrs", "median_nds")
    first = Verdict(
        CLAIMS["nds"],
        CRITERIA["nds"],
        outcome[sign_of(nds_ratio)],
        f"ln(NDS AdamW / NDS Muon) {fmt(nds_ratio)}",
    )
    penalty = log_ratio("task lrs", "median_penalty")
    norm = log_ratio("task lrs", "median_update_norm")
    gain = log_ratio("task lrs", "median_gain")
    comparable = all(abs(v) < math.log(2) for v in norm) and all(abs(v) < math.log(2) for v in gain)
    far = all(abs(v) > math.log(2) for v in norm)
    if sign_of(penalty) == 1 and comparable:
        mechanism = "agrees"
    elif sign_of(penalty) == -1 or far:
        mechanism = "disagrees"
    else:
        mechanism = "inconclusive"
    evidence = (
        f"ln(AdamW / Muon): penalty {fmt(penalty)}, update norm {fmt(norm)}, gain {fmt(gain)}"
    )
    second = Verdict(CLAIMS["nds mechanism"], CRITERIA["nds mechanism"], mechanism, evidence)
    matched = log_ratio("matched update norm", "median_penalty")
    third = Verdict(
        CLAIMS["nds mechanism"],
        "[matched update norm] " + CRITERIA["nds matched"],
        outcome[sign_of(matched)],
        f"ln(penalty AdamW / penalty Muon) {fmt(matched)}",
    )
    up, up_norm = log_ratio(UP, "median_penalty"), log_ratio(UP, "median_update_norm")
    fourth = Verdict(
        CLAIMS["nds mechanism"],
        f"[{UP}] " + CRITERIA["nds matched"],
        outcome[sign_of(up)],
        f"ln(AdamW / Muon): penalty {fmt(up)}, update norm {fmt(up_norm)}",
    )
    return [first, second, third, fourth, *_matched_loss_verdicts(record["matched_loss"])]


def _median_finite(values: list[float | None]) -> float:
    """Median of the finite ``values`` (``None`` is JSON's nan); nan when none is finite."""
    done = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(done) if done else math.nan


def _matched_loss_verdicts(views: list[dict[str, Any]]) -> list[Verdict]:
    """The matched-loss verdicts of ``nds``: per seed, medians over the loss levels."""

    def log_ratio(key: str, sign: float = 1.0) -> list[float]:
        out = []
        for view in views:
            a, m = (sign * _median_finite(view[n][key]) for n in ("adamw", "muon"))
            out.append(math.log(a / m) if a > 0 and m > 0 else math.nan)
        return out

    outcome = {1: "agrees", -1: "disagrees", 0: "inconclusive"}
    nds_ratio = log_ratio("nds")
    first = Verdict(
        CLAIMS["nds"],
        "[matched loss] " + CRITERIA["nds matched loss"],
        outcome[sign_of(nds_ratio)],
        f"ln(NDS AdamW / NDS Muon) {fmt(nds_ratio)}",
    )
    decrease = [-v for v in log_ratio("actual", -1.0)]  # ln(decrease Muon / decrease AdamW)
    penalty = log_ratio("penalty")
    gain = log_ratio("gain")
    comparable = all(abs(v) < math.log(2) for v in gain)
    if sign_of(decrease) == 1 and sign_of(penalty) == 1 and comparable:
        mechanism = "agrees"
    elif sign_of(decrease) == -1 or sign_of(penalty) == -1:
        mechanism = "disagrees"
    else:
        mechanism = "inconclusive"
    second = Verdict(
        CLAIMS["nds matched loss"],
        "[matched loss, mechanism] " + CRITERIA["nds matched loss mechanism"],
        mechanism,
        f"ln(Muon / AdamW) one-step decrease {fmt(decrease)}; ln(AdamW / Muon): penalty "
        f"{fmt(penalty)}, gain {fmt(gain)}",
    )
    return [first, second]


# --------------------------------------------------------------------------------------------
# imbalance


def imbalance(
    out: Path,
    *,
    progress: bool = True,
    steps: int = 1000,
    seeds: int = 3,
    ratios: str = "1,16,64",
    optimizers: str = "sgd,adamw,muon,specgd",
    classes: int = 4,
    dim: int = 32,
    train_size: int = 2000,
    hidden: int = 64,
    component_optimizers: str = "sgd,adamw,muon,specgd",
    component_steps: int = 2000,
) -> dict[str, Any]:
    """Balanced and minority-class accuracy over training, per optimizer and imbalance ratio,
    and the order in which a linear model learns the data's principal components.

    The ``imbalanced-gmm`` task. Each optimizer's matrix lr is tuned first (log grid widened
    until the best is inside) at the largest ratio on seed ``seeds`` (not reported), by the
    final balanced accuracy (ties broken by the validation loss); then every ratio and seed
    (seed s on its own data draw, ``data_seed`` s; the tuning seed on draw ``seeds``) trains
    ``steps`` steps (cosine) with evaluations every ``steps / 10``. Arms: GD (``sgd``),
    AdamW, Muon and exact spectral GD (``specgd``, SVD). Criterion: :data:`CRITERIA`
    ``["imbalance"]`` (at the end and at ``steps / 5``, where the paper's learning-order effect
    should show).

    Learning order (:mod:`steepest.experiments.targets.component_order`): at every ratio, on
    ``seeds`` data draws (``data_seed`` 0, 1, ...), a linear model trained full batch in float64
    by each of ``component_optimizers`` for ``component_steps`` steps, its lr set so that the
    dominant class-mean component is half learned at step ``component_steps / 40``; the step at
    which each component is half learned. Criterion: :data:`CRITERIA` ``["imbalance
    components"]``.

    References:
        Vasudeva et al., arXiv 2510.22980 (Muon and Adam on imbalanced Gaussian mixtures).
    """
    ratio_values = [float(v) for v in ratios.split(",")]
    names = [v.strip() for v in optimizers.split(",")]
    if "adamw" not in names or "muon" not in names:
        raise ValueError(f"imbalance: optimizers={optimizers!r} must include adamw and muon")
    arms = [v.strip() for v in component_optimizers.split(",")]
    if "sgd" not in arms or not {"muon", "specgd"} & set(arms):
        raise ValueError(
            f"imbalance: component_optimizers={component_optimizers!r} must include sgd and "
            "muon or specgd"
        )
    if component_steps < 40:
        raise ValueError(f"imbalance: component_steps={component_steps} must be >= 40")
    minority = f"class_{classes - 1}_accuracy"
    eval_every = max(1, steps // 10)

    def make(ratio: float, data_seed: int) -> Task:
        t = make_task(
            "imbalanced-gmm",
            classes=classes,
            dim=dim,
            train_size=train_size,
            hidden=hidden,
            imbalance=ratio,
            data_seed=data_seed,
        )
        t.setup(torch.device("cpu"))
        return t

    def run(t: Task, name: str, lr: float, seed: int) -> Any:
        return train(
            t,
            name,
            lr,
            t.default_lrs.get(name, t.default_lrs["adamw"])[1],
            steps=steps,
            seed=seed,
            eval_every=eval_every,
            device=torch.device("cpu"),
            progress=progress,
        )

    hard = make(max(ratio_values), seeds)  # the tuning seed's own data draw
    tuning: dict[str, Any] = {}
    for name in names:

        def score(lr: float, name: str = name) -> float:
            curve = run(hard, name, lr, seeds).curve  # ties in accuracy: the lower loss wins
            return -float(curve["balanced_accuracy"][-1]) + 1e-3 * float(curve["val_loss"][-1])

        tuning[name] = tune_lr(score, default_lrs(name, hard.default_lrs)[0])
    curves: dict[str, list[list[dict[str, list[float]]]]] = {name: [] for name in names}
    for ratio in ratio_values:
        draws = [make(ratio, seed) for seed in range(seeds)]  # seed s trains on data draw s
        for name in names:
            runs = [run(draws[seed], name, tuning[name].best, seed) for seed in range(seeds)]
            curves[name].append(
                [{k: r.curve[k] for k in ("step", "balanced_accuracy", minority)} for r in runs]
            )
    record: dict[str, Any] = {
        "target": "imbalance",
        "steps": steps,
        "seeds": list(range(seeds)),
        "tuning_seed": seeds,
        "ratios": ratio_values,
        "task_options": hard.options(),
        "lr": {name: tuning[name].best for name in names},
        "tuning": tuning,
        "minority": minority,
        "curves": curves,
        "components": _component_order(
            ratio_values, seeds, arms, component_steps, task_options=hard.options()
        ),
    }
    record["verdicts"] = [dataclasses.asdict(v) for v in imbalance_verdicts(record)]
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), dpi=120)
    for name in names:
        for ax, key in zip(axes[0], ("balanced_accuracy", minority), strict=True):
            c = curves[name][-1]
            mean = [statistics.fmean(r[key][i] for r in c) for i in range(len(c[0]["step"]))]
            ax.plot(c[0]["step"], mean, marker="o", label=f"{name} (lr {tuning[name].best:.3g})")
    for ax, ylabel in zip(axes[0], ("balanced accuracy", "minority-class accuracy"), strict=True):
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _plot_component_order(record["components"], axes[1])
    fig.suptitle(f"imbalanced GMM, ratio {max(ratio_values):g}, tuned lrs, {seeds} seeds")
    fig.tight_layout()
    fig.savefig(out / "imbalance.png")
    plt.close(fig)
    _write(record, out, "imbalance")
    return record


def _component_order(
    ratios: list[float], seeds: int, arms: list[str], steps: int, task_options: dict[str, Any]
) -> dict[str, Any]:
    """:func:`component_order.measure` at every ratio on data draws ``0 .. seeds - 1``."""
    draws = []
    for ratio in ratios:
        per_ratio = []
        for seed in range(seeds):
            options = {**task_options, "imbalance": ratio, "data_seed": seed}
            t = make_task("imbalanced-gmm", **options)
            t.setup(torch.device("cpu"))
            x, y = t.train_x, t.train_y  # type: ignore[attr-defined]
            per_ratio.append(
                component_order.measure(
                    x, y, options["classes"], arms, steps=steps, dominant_step=steps // 40
                )
            )
        draws.append(per_ratio)
    return {
        "model": "linear W (classes x dim) from 0, squared loss, full batch, float64, no decay",
        "fraction": component_order.FRACTION,
        "steps": steps,
        "dominant_step": steps // 40,
        "optimizers": arms,
        "ratios": ratios,
        "data_seeds": list(range(seeds)),
        "draws": draws,
    }


def _plot_component_order(part: dict[str, Any], axes: Any) -> None:
    """Left: ln(t_j / t_1) per component at the largest ratio (mean, std over draws); right:
    the components' progress under GD (solid) and the spectral arm (dashed), first draw."""
    draws = part["draws"][-1]
    k = len(draws[0]["sigma"])

    def log_times(run: dict[str, Any]) -> list[float]:  # a time not reached: the horizon
        times = [t or part["steps"] for t in run["times"]]
        return [math.log(t / times[0]) for t in times]

    for name in part["optimizers"]:
        logs = [log_times(d["runs"][name]) for d in draws]
        mean = [statistics.fmean(row[j] for row in logs) for j in range(k)]
        std = [statistics.pstdev(row[j] for row in logs) for j in range(k)]
        axes[0].errorbar(range(1, k + 1), mean, yerr=std, marker="o", capsize=3, label=name)
    axes[0].axhline(0, color="grey", lw=0.8)
    axes[0].set_xticks(range(1, k + 1))
    axes[0].set_xlabel("component j (by singular value of the class means, dominant first)")
    axes[0].set_ylabel(f"ln(t_j / t_1), t_j: {part['fraction']:.0%} learned")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    spectral = "specgd" if "specgd" in part["optimizers"] else "muon"
    for name, style in (("sgd", "-"), (spectral, "--")):
        r = draws[0]["runs"][name]
        for j in range(k):
            label = f"component {j + 1}" if name == "sgd" else None
            progress = [p[j] for p in r["progress"]]
            axes[1].plot(r["step"][1:], progress[1:], style, color=f"C{j}", label=label)
    axes[1].set_title(f"solid: sgd, dashed: {spectral}", fontsize=9)
    axes[1].axhline(part["fraction"], color="grey", lw=0.8)
    axes[1].set_ylim(-0.1, 1.6)
    axes[1].set_xscale("log")
    axes[1].set_xlabel(f"step (linear model, ratio {part['ratios'][-1]:g}, first draw)")
    axes[1].set_ylabel("u_j^T W v_j / least-squares value")
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)


def imbalance_verdicts(record: dict[str, Any]) -> list[Verdict]:
    """Muon minus AdamW balanced accuracy at the largest ratio, at the end and at 1/5; with a
    ``components`` entry, the learning-order verdicts of :func:`component_order.verdicts`."""
    verdicts = []
    adamw, muon = record["curves"]["adamw"][-1], record["curves"]["muon"][-1]
    steps = adamw[0]["step"]
    early = min(range(len(steps)), key=lambda i: abs(steps[i] - steps[-1] / 5))
    for label, index in (("end", len(steps) - 1), (f"step {steps[early]}", early)):
        gap = [
            m["balanced_accuracy"][index] - a["balanced_accuracy"][index]
            for a, m in zip(adamw, muon, strict=True)
        ]
        outcome = {1: "agrees", -1: "disagrees", 0: "inconclusive"}[sign_of(gap)]
        verdicts.append(
            Verdict(
                CLAIMS["imbalance"],
                f"[{label}, ratio {record['ratios'][-1]:g}] {CRITERIA['imbalance']}",
                outcome,
                f"Muon - AdamW balanced accuracy {fmt(gap)}",
            )
        )
    if "components" in record:
        verdicts += component_order.verdicts(record["components"])
    return verdicts


# --------------------------------------------------------------------------------------------
# implicit-bias

#: the norms of ``implicit-bias``: margin key, the method that is steepest descent in it
BIAS_NORMS: Final = {"l2_margin": "ngd", "spectral_margin": "specgd", "max_norm_margin": "signgd"}


def max_margins(x: Any, y: Any, classes: int) -> dict[str, float]:
    """The maximum normalized margin of each norm: max t subject to (w_{y_i} - w_j)^T x_i >= t
    for all i, j != y_i and ||W||_N <= 1 (Frobenius: SOCP; spectral: SDP; max-entry: LP),
    solved with cvxpy (Clarabel) in float64."""
    import importlib

    import numpy as np

    cp: Any = importlib.import_module("cvxpy")  # untyped; an optional dependency

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    W = cp.Variable((classes, x.shape[1]))
    t = cp.Variable()
    scores = x @ W.T
    own = cp.hstack([scores[i, int(y[i])] for i in range(len(y))])
    rows = [own - scores[:, j] for j in range(classes)]
    mask = [np.flatnonzero(y != j) for j in range(classes)]
    constraints = [rows[j][mask[j]] >= t for j in range(classes) if len(mask[j])]
    bounds = {
        "l2_margin": cp.norm(W, "fro") <= 1,
        "spectral_margin": cp.sigma_max(W) <= 1,
        "max_norm_margin": cp.max(cp.abs(W)) <= 1,
    }
    out = {}
    for key, bound in bounds.items():
        problem = cp.Problem(cp.Maximize(t), [*constraints, bound])
        problem.solve(solver=cp.CLARABEL)
        out[key] = float(t.value)
    return out


def _separable_data(n: int, dim: int, classes: int, rank: int, seed: int) -> tuple[Any, Any]:
    """``n`` points on the unit sphere of R^dim whose first ``rank`` coordinates carry most of
    the variance, labelled by a random linear map (float64); classes all present."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.ones(dim, dtype=torch.float64)
    scale[rank:] = 0.2
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64) * scale
    x = x / x.norm(dim=1, keepdim=True)
    w_true = torch.randn(classes, dim, generator=gen, dtype=torch.float64)
    return x, (x @ w_true.T).argmax(dim=1)


def implicit_bias(
    out: Path,
    *,
    progress: bool = True,
    steps: int = 3000,
    eval_every: int = 100,
    seeds: int = 3,
    n: int = 40,
    dim: int = 12,
    classes: int = 4,
    rank: int = 3,
    lr: float = 0.5,
    decay: float = 0.5,
) -> dict[str, Any]:
    """Margins of normalized steepest descent in three norms, as a ratio to each norm's maximum.

    Per data draw (seed): separable points (:func:`_separable_data`, anisotropic so that the
    norms' max-margin solutions differ), a linear classifier W = 0, full-batch cross-entropy in
    float64, and normalized steepest descent W <- W - lr t^-decay dualize_N(grad) for N =
    Frobenius (``ngd``), spectral (``specgd``, exact U V^T) and max-entry (``signgd``, sign).
    Along training, every method's margin in every norm over that norm's maximum
    (:func:`max_margins`). Criterion: :data:`CRITERIA` ``["implicit-bias"]``.

    References:
        Fan, Schmidt, Thrampoulidis, "Implicit bias of spectral descent and Muon on multiclass
        separable data", arXiv 2502.04664 (normalized steepest descent, decaying lr).
    """
    from steepest.experiments.tasks.implicit_bias import margins

    dualize: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "ngd": lambda G: G / G.norm(),
        "specgd": _msign,
        "signgd": torch.sign,
    }
    draws: list[dict[str, Any]] = []
    for seed in range(seeds):
        x, y = _separable_data(n, dim, classes, rank, seed)
        best = max_margins(x, y, classes)
        curves: dict[str, dict[str, list[float]]] = {}
        for method, step_fn in dualize.items():
            W = torch.zeros(classes, dim, dtype=torch.float64, requires_grad=True)
            curve: dict[str, list[float]] = {"step": [], "loss": [], **{k: [] for k in best}}
            for step in range(steps + 1):
                loss = torch.nn.functional.cross_entropy(x @ W.T, y)
                if step % eval_every == 0 or step == steps:
                    curve["step"].append(step)
                    curve["loss"].append(loss.item())
                    for key, value in margins(W.detach(), x, y).items():
                        curve[key].append(value / best[key])
                if step == steps:
                    break
                (grad,) = torch.autograd.grad(loss, W)
                with torch.no_grad():
                    W -= lr * (step + 1) ** -decay * step_fn(grad)
            curves[method] = curve
        draws.append({"max_margins": best, "curves": curves})
    record: dict[str, Any] = {
        "target": "implicit-bias",
        "data": {"n": n, "dim": dim, "classes": classes, "rank": rank},
        "steps": steps,
        "lr": lr,
        "decay": decay,
        "seeds": list(range(seeds)),
        "norms": BIAS_NORMS,
        "draws": draws,
    }
    record["verdicts"] = [dataclasses.asdict(v) for v in implicit_bias_verdicts(record)]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), dpi=120)
    for ax, key in zip(axes, BIAS_NORMS, strict=True):
        for method, curve in draws[0]["curves"].items():
            ax.plot(curve["step"], curve[key], label=method)
        ax.set_xscale("symlog", linthresh=eval_every)
        ax.set_xlabel("step")
        ax.set_ylabel(f"{key.replace('_', ' ')} / its maximum")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"implicit bias: {n} points, R^{dim}, {classes} classes, draw 0")
    fig.tight_layout()
    fig.savefig(out / "implicit-bias.png")
    plt.close(fig)
    _write(record, out, "implicit-bias")
    return record


def implicit_bias_verdicts(record: dict[str, Any]) -> list[Verdict]:
    """Per norm, the own method's final margin ratio, its lead over the best other method's,
    and whether it still moved over the second half of training."""
    agree, disagree, lines = [], [], []
    for key, own in record["norms"].items():
        finals, halves = [], []
        for draw in record["draws"]:
            curves = draw["curves"]
            finals.append({m: c[key][-1] for m, c in curves.items()})
            half = len(curves[own][key]) // 2
            halves.append(curves[own][key][half])
        gap = [f[own] - max(v for m, v in f.items() if m != own) for f in finals]
        own_final = [f[own] for f in finals]
        settled = all(abs(f - h) < 0.01 for f, h in zip(own_final, halves, strict=True))
        agree.append(sign_of(gap) == 1 and threshold_test(own_final, 0.9) == -1)
        disagree.append(sign_of(gap) == -1 and settled)
        lines.append(
            f"{key}: {own} {fmt(own_final)}, lead {fmt(gap)}"
            + ("" if settled else " (still moving)")
        )
    outcome = "agrees" if all(agree) else "disagrees" if any(disagree) else "inconclusive"
    return [Verdict(CLAIMS["implicit-bias"], CRITERIA["implicit-bias"], outcome, "; ".join(lines))]


# --------------------------------------------------------------------------------------------
# claims and criteria, fixed before any run

CLAIMS: Final[dict[str, str]] = {
    "schatten-p": "Cesista (2025, Sec. 4.3): Schatten-p dualization approaches the spectral "
    "norm's quickly in p; at p = 32 it is already very close",
    "low-rank": "Shen et al., arXiv 2505.23737: Muon's advantage over GD grows as the Hessian's "
    "spectrum concentrates on few dominant eigenvalues",
    "nds": "Bergemann et al., arXiv 2606.04662: Muon's updates have lower normalized "
    "directional sharpness than Adam's",
    "nds mechanism": "Bergemann et al., arXiv 2606.04662: comparable first-order gain and "
    "update norm, smaller curvature penalty for Muon",
    "imbalance": "Vasudeva et al., arXiv 2510.22980: Muon reaches a higher balanced accuracy "
    "than Adam on imbalanced data",
    "implicit-bias": "Fan et al., arXiv 2502.04664: normalized steepest descent in a norm "
    "maximizes the margin in that norm",
    "regression": regression.CLAIM,
    "gradient-norms": gradient_norms.CLAIM,
    "batch-size": batch_size.CLAIM,
    "nds matched loss": "Bergemann et al., arXiv 2606.04662: at matched validation loss Muon "
    "makes a larger one-step loss decrease than Adam, with a comparable first-order gain and a "
    "smaller curvature penalty",
    "amplification": amplification.CLAIM,
    "layer-split": layer_split.CLAIM,
    "kronecker-hessian": kronecker_hessian.CLAIMS["energy"],
    "kronecker-hessian ordering": kronecker_hessian.CLAIMS["ordering"],
    "kronecker-hessian model": kronecker_hessian.CLAIMS["model"],
    "grokking": grokking.CLAIM,
    "imbalance components": component_order.CLAIM,
}

CRITERIA: Final[dict[str, str]] = {
    "schatten-p": "every family at p = 32: spread std/mean clearly < 0.1 and stable rank / "
    "spectral's clearly > 0.9 -> agrees; either clearly on the wrong side for some family -> "
    "disagrees; else inconclusive",
    "low-rank": "ln(GD steps / Muon steps) at the smallest k minus at the largest k, per seed: "
    "clearly > 0 -> agrees, clearly < 0 -> disagrees, else inconclusive",
    "nds": "ln(median NDS AdamW / median NDS Muon) at the task lrs, per seed: clearly > 0 -> "
    "agrees, clearly < 0 -> disagrees, else inconclusive",
    "nds mechanism": "at the task lrs: Muon's median penalty clearly smaller and update norms and "
    "gains within 2x on every seed -> agrees; penalty clearly larger or update norms more than "
    "2x apart on every seed -> disagrees; else inconclusive",
    "nds matched": "ln(median penalty AdamW / Muon) per seed: clearly > 0 -> agrees, clearly "
    "< 0 -> disagrees, else inconclusive",
    "imbalance": "Muon - AdamW balanced accuracy per seed (each lr tuned): clearly > 0 -> "
    "agrees, clearly < 0 -> disagrees, else inconclusive",
    "implicit-bias": "per norm, the own method's final margin / max-margin (ratio) and its lead "
    "over the best other method's, per draw: lead clearly > 0 and ratio clearly > 0.9 in all "
    "three norms -> agrees; lead clearly < 0 in one norm while the own ratio moved < 0.01 over "
    "the second half of training on every draw -> disagrees; else inconclusive",
    "regression": regression.CRITERION,
    "gradient-norms": gradient_norms.CRITERION,
    "batch-size": f"{batch_size.CRITERION}; {batch_size.CRITERION_FIT}",
    "nds matched loss": "ln(NDS AdamW / NDS Muon), each the median over validation-loss levels "
    "both runs reach (interpolated), per seed: clearly > 0 -> agrees, clearly < 0 -> disagrees, "
    "else inconclusive",
    "nds matched loss mechanism": "medians over matched validation-loss levels, per seed: "
    "ln(Muon / AdamW one-step loss decrease) and ln(AdamW / Muon penalty) both clearly > 0 with "
    "gains within 2x on every seed -> agrees; either clearly < 0 -> disagrees; else inconclusive",
    "amplification": amplification.CRITERION,
    "layer-split": layer_split.CRITERION,
    "kronecker-hessian": kronecker_hessian.CRITERIA["energy"],
    "kronecker-hessian ordering": kronecker_hessian.CRITERIA["ordering"],
    "kronecker-hessian model": kronecker_hessian.CRITERIA["model"],
    "grokking": grokking.CRITERION,
    "imbalance components": component_order.CRITERION,
}
CLEARLY: Final = (
    "'clearly' means: every seed on that side and |mean| > 2 standard errors "
    "(steepest.experiments.verdicts.sign_of)"
)

# Allowed values of the targets' string options.
TARGET_CHOICES: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "nds": {"task": ("shakespeare-char", "zipf-pcfg")},
}

TARGETS: Final[dict[str, Callable[..., dict[str, Any]]]] = {
    "schatten-p": schatten_p,
    "low-rank": low_rank,
    "nds": nds,
    "imbalance": imbalance,
    "implicit-bias": implicit_bias,
    "regression": regression.regression,
    "gradient-norms": gradient_norms.gradient_norms,
    "batch-size": batch_size.batch_size,
    "amplification": amplification.amplification,
    "layer-split": layer_split.layer_split,
    "kronecker-hessian": kronecker_hessian.kronecker_hessian,
    "grokking": grokking.grokking,
}

VERDICTS: Final[dict[str, Callable[[dict[str, Any]], list[Verdict]]]] = {
    "schatten-p": schatten_p_verdicts,
    "low-rank": low_rank_verdicts,
    "nds": nds_verdicts,
    "imbalance": imbalance_verdicts,
    "implicit-bias": implicit_bias_verdicts,
    "regression": regression.verdicts,
    "gradient-norms": gradient_norms.verdicts,
    "batch-size": batch_size.verdicts,
    "amplification": amplification.amplification_verdicts,
    "layer-split": layer_split.layer_split_verdicts,
    "kronecker-hessian": kronecker_hessian.kronecker_hessian_verdicts,
    "grokking": grokking.grokking_verdicts,
}

#: options of ``steepest reproduce --all --quick``: every target in minutes on two CPU cores
QUICK_OPTIONS: Final[dict[str, dict[str, Any]]] = {
    "schatten-p": {"m": 32, "n": 16, "gpt_steps": 5, "gpt_width": 64, "gpt_layers": 2},
    "low-rank": {"m": 32, "n": 16, "ks": "1,16", "max_steps": 600},
    "nds": {"steps": 30, "measure_every": 10, "seeds": 3},
    "imbalance": {
        "steps": 300,
        "ratios": "1,64",
        "optimizers": "adamw,muon",
        "component_steps": 1000,
    },
    "implicit-bias": {"steps": 1000},
    "regression": {"samples": 1500, "threshold": 0.03, "max_steps": 1500},
    "gradient-norms": {
        "mlp_steps": 100,
        "gpt_steps": 100,
        "measure_every": 10,
        "gpt_layers": 2,
        "gpt_width": 64,
        "measure_size": 2000,
    },
    "batch-size": {"batch_sizes": "64,1024", "seeds": 3, "max_steps": 1000, "warmups": "0,5"},
    "amplification": {
        "exponents": "0,2",
        "seeds": 3,
        "steps": 30,
        "width": 32,
        "train_tokens": 20_000,
    },
    "layer-split": {"steps": 30, "measure_every": 10, "seeds": 2, "layers": 2, "width": 32},
    "kronecker-hessian": {
        "steps": 30,
        "checkpoints": "1",
        "seeds": 2,
        "layers": 1,
        "width": 8,
        "hessian_batch": 16,
    },
    "grokking": {
        "steps": 600,
        "seeds": 3,
        "modulus": 23,
        "train_fraction": 0.7,
        "width": 32,
        "hidden": 64,
    },
}
