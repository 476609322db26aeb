"""``regression``: Muon and GD on least squares with MNIST features vs Gaussian features.

Shen et al. argue that real feature matrices have concentrated spectra, so the Hessian of a
linear model's squared loss is effectively low rank and Muon beats GD on it, while Gaussian
features (a flat spectrum) give GD the edge. This target measures steps to a threshold of both
methods on the same problem with the two kinds of features, with the paper's Eq. 7 ratio beside
each outcome.

References:
    Shen, Huang, Huang, Zhang, Shen, "On the convergence analysis of Muon", arXiv 2505.23737,
    Fig. 2 (MNIST vs Gaussian features), Eq. (7), Sec. E (GD at 1/L, Muon's step tuned).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Final

import torch

from steepest.data import load_mnist
from steepest.diagnostics import muon_advantage_ratio
from steepest.experiments.report import write_json_record
from steepest.experiments.targets._common import OUTCOME_OF_SIGN, pyplot
from steepest.experiments.tune import tune_lr
from steepest.experiments.verdicts import Verdict, fmt, mean_std, sign_of

__all__ = ["CLAIM", "CRITERION", "FEATURES", "Problem", "make_problem", "regression", "verdicts"]

CLAIM: Final = (
    "Shen et al., arXiv 2505.23737 (Fig. 2): real features (MNIST) have a concentrated "
    "spectrum, on which Muon beats GD at least squares; on Gaussian features it does not"
)
CRITERION: Final = (
    "ln(GD steps / Muon steps) on MNIST features minus on Gaussian features, per data draw (a "
    "GD count short of the threshold enters as its lower bound max_steps; a draw where Muon "
    "falls short has none): clearly > 0 -> agrees, clearly < 0 -> disagrees, else inconclusive"
)
FEATURES: Final = ("mnist", "gaussian")
#: a run whose gap f - f* grows past this multiple of its start has diverged
DIVERGED: Final = 1e6


@dataclasses.dataclass
class Problem:
    """f(W) = ||W X - Y||_F^2 / (2 B) with W (c x d), in the eigenbasis of A = X X^T / B.

    ``lam`` (d,) are A's eigenvalues (descending), ``start`` (c x d) is W0 - W* = -W* in that
    basis (zero on A's null space, which f does not see), ``gradient`` (c x d) the gradient at
    W0 = 0 in the original basis, ``singular_values`` those of X.
    """

    lam: torch.Tensor
    start: torch.Tensor
    gradient: torch.Tensor
    singular_values: torch.Tensor


def make_problem(features: str, samples: int, seed: int) -> Problem:
    """The draw ``seed`` of the problem: ``samples`` random MNIST test images (pixels / 255, as
    columns of X) and their one-hot labels Y; Gaussian features replace X by an i.i.d. N(0, 1)
    matrix of the same shape (same labels). Float64."""
    if features not in FEATURES:
        raise ValueError(f"regression: features={features!r}; choose one of {FEATURES}")
    images, labels = load_mnist()
    if not 1 <= samples <= len(images):
        raise ValueError(f"regression: samples={samples}; need an int in [1, {len(images)}]")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=gen)[:samples]
    x = torch.from_numpy(images.reshape(len(images), -1)[idx.numpy()].astype("float64") / 255.0).T
    if features == "gaussian":
        x = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.from_numpy(labels.astype("int64"))[idx], 10).double().T
    lam, vecs = torch.linalg.eigh(x @ x.T / samples)
    lam, vecs = lam.flip(0), vecs.flip(1)
    c = (y @ x.T / samples) @ vecs  # -gradient at W0 = 0, in the eigenbasis
    seen = lam > 1e-10 * lam[0]
    start = torch.where(seen, -c / torch.where(seen, lam, 1.0), 0.0)
    return Problem(lam, start, -(y @ x.T) / samples, torch.linalg.svdvals(x))


def _msign(M: torch.Tensor) -> torch.Tensor:
    u, _, vh = torch.linalg.svd(M, full_matrices=False)
    product: torch.Tensor = u @ vh
    return product


def run(
    problem: Problem,
    rule: str,
    lr: float,
    threshold: float,
    max_steps: int,
    momentum: float,
    trace: bool = False,
) -> tuple[int | None, float, list[float]]:
    """Iterate ``rule`` ("gd": W -= lr G; "muon": M = momentum M + G, W -= lr msign(M)) from
    W0 = 0 with constant ``lr``. Returns the first step with (f - f*) / (f0 - f*) <=
    ``threshold`` (None if never within ``max_steps``, or if the gap diverged), the smallest
    gap seen (inf if diverged), and with ``trace`` the gap after every step (no early stop).

    The iteration runs in A's eigenbasis V (msign(M V) = msign(M) V), where G = D diag(lam)."""
    D = problem.start.clone()
    M = torch.zeros_like(D)
    f0 = float((D * D * problem.lam).sum())
    best, hit = 1.0, None
    gaps: list[float] = []
    for step in range(1, max_steps + 1):
        G = D * problem.lam
        if rule == "gd":
            D = D - lr * G
        else:
            M = momentum * M + G
            D = D - lr * _msign(M)
        gap = float((D * D * problem.lam).sum()) / f0
        if not gap < DIVERGED:
            return None, math.inf, gaps
        best = min(best, gap)
        if trace:
            gaps.append(gap)
        if gap <= threshold and hit is None:
            hit = step
            if not trace:
                break
    return hit, best, gaps


def regression(
    out: Path,
    *,
    progress: bool = True,
    samples: int = 3000,
    threshold: float = 1e-2,
    max_steps: int = 4000,
    momentum: float = 0.9,
    seeds: int = 3,
) -> dict[str, Any]:
    """Steps to (f - f*) / (f0 - f*) <= ``threshold`` of Muon and GD, MNIST vs Gaussian features.

    Per data draw (seed) and kind of features (:func:`make_problem`, ``samples`` examples,
    d = 784, c = 10, float64, W0 = 0): GD at its constant 1/L (L = lambda_max(X X^T / B)) and
    at its own best constant step (``both tuned``), Muon (momentum ``momentum``, exact msign)
    at the constant lr that reaches the threshold in the fewest steps (the paper's choice of
    Muon's step; a grid widened until the best is inside), at most ``max_steps`` (the paper
    runs 4000). Beside each outcome: the Eq. 7 ratio at W0 (``muon_advantage_ratio`` with the
    exact L and J = the sum of the c largest eigenvalues of X X^T / B) and the share of the
    trace of X X^T held by its c largest eigenvalues. Criterion: :data:`CRITERION`.

    References:
        Shen et al., arXiv 2505.23737, Fig. 2, Eq. (7), Sec. E.
    """
    classes = 10
    outcomes: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    spectra: dict[str, list[float]] = {}
    for features in FEATURES:
        keys = ("gd_steps", "gd_tuned_steps", "muon_steps", "gd_lr", "gd_tuned_lr", "muon_lr")
        entry: dict[str, Any] = {k: [] for k in (*keys, "eq7_ratio", "top_c_share")}
        for seed in range(seeds):
            problem = make_problem(features, samples, seed)
            lam = problem.lam
            L, J = lam[0], lam[:classes].sum()
            entry["eq7_ratio"].append(muon_advantage_ratio(problem.gradient, L, J).item())
            entry["top_c_share"].append((J / lam.clamp(min=0).sum()).item())

            def score(rule: str, lr: float, problem: Problem = problem) -> float:
                steps, best, _ = run(problem, rule, lr, threshold, max_steps, momentum)
                return float(steps) if steps is not None else max_steps + best

            gd_lr = 1.0 / L.item()
            gd = tune_lr(lambda lr: score("gd", lr), gd_lr, factor=1.25)
            # Muon's one-step optimal lr ||G0||_* / J as the grid's centre.
            nuclear = torch.linalg.svdvals(problem.gradient).sum()
            muon = tune_lr(lambda lr: score("muon", lr), (nuclear / J).item())
            row = (score("gd", gd_lr), min(gd.scores), min(muon.scores), gd_lr, gd.best, muon.best)
            for key, value in zip(keys, row, strict=True):
                entry[key].append(value)
            if seed == 0:
                spectra[features] = (problem.singular_values / problem.singular_values[0]).tolist()
                curves[features] = {
                    "gd": run(problem, "gd", gd_lr, threshold, max_steps, momentum, True)[2],
                    "muon": run(problem, "muon", muon.best, threshold, max_steps, momentum, True)[
                        2
                    ],
                }
        outcomes[features] = entry
    record: dict[str, Any] = {
        "target": "regression",
        "samples": samples,
        "dims": {"d": 784, "c": classes},
        "threshold": threshold,
        "max_steps": max_steps,
        "momentum": momentum,
        "seeds": list(range(seeds)),
        "features": outcomes,
        "spectra_draw_0": spectra,
        "note": "steps above max_steps mean the threshold was not reached (max_steps + best "
        "gap); gd_steps at the constant 1/L, gd_tuned_steps at GD's best constant step",
    }
    record["verdicts"] = [dataclasses.asdict(v) for v in verdicts(record)]
    _plot(record, spectra, curves, out)
    write_json_record(record, out / "regression.json")
    return record


def _plot(
    record: dict[str, Any],
    spectra: dict[str, list[float]],
    curves: dict[str, dict[str, list[float]]],
    out: Path,
) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), dpi=120)
    for features, values in spectra.items():
        axes[0].plot(range(1, len(values) + 1), values, label=features)
    axes[0].set_yscale("log")
    axes[0].set_ylim(1e-8, 2)
    axes[0].set_xlabel("index i")
    axes[0].set_ylabel("sigma_i(X) / sigma_1(X)")
    axes[0].set_title("spectra of X (draw 0)")
    for ax, features in zip(axes[1:], FEATURES, strict=True):
        entry = record["features"][features]
        for rule, gaps in curves[features].items():
            lr = entry["gd_lr"][0] if rule == "gd" else entry["muon_lr"][0]
            label = f"{'GD at 1/L' if rule == 'gd' else 'Muon, tuned'} (lr {lr:.3g})"
            ax.plot(range(1, len(gaps) + 1), gaps, label=label)
        ax.axhline(record["threshold"], color="gray", linestyle=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1e-6, 2)
        ax.set_xlabel("step")
        ax.set_ylabel("(f - f*) / (f0 - f*)")
        ratio = mean_std(entry["eq7_ratio"])[0]
        ax.set_title(f"{features} features (draw 0), Eq. 7 ratio {ratio:.2f}")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    seeds = len(record["seeds"])
    fig.suptitle(f"least squares, {record['samples']} samples x 784 features, {seeds} draws")
    fig.tight_layout()
    fig.savefig(out / "regression.png")
    plt.close(fig)


def verdicts(record: dict[str, Any]) -> list[Verdict]:
    """One verdict per GD step-size protocol (1/L, tuned), from ``record["features"]``.

    A GD count above ``max_steps`` (threshold not reached) is a lower bound on GD's steps and
    enters as such; a draw where Muon did not reach the threshold has no ratio (nan)."""
    cap = record["max_steps"]
    out = []
    for label, key in (("GD at 1/L", "gd_steps"), ("both tuned", "gd_tuned_steps")):
        log_speedup = {
            f: [
                math.log(g / m) if m <= cap else math.nan
                for g, m in zip(e[key], e["muon_steps"], strict=True)
            ]
            for f, e in record["features"].items()
        }
        effect = [a - b for a, b in zip(log_speedup["mnist"], log_speedup["gaussian"], strict=True)]
        evidence = "; ".join(
            f"{f}: GD/Muon steps {fmt([math.exp(v) for v in log_speedup[f]])} (GD short of the "
            f"threshold in {sum(g > cap for g in e[key])}, Muon in "
            f"{sum(m > cap for m in e['muon_steps'])} of {len(e[key])} draws), Eq. 7 ratio "
            f"{fmt(e['eq7_ratio'])}, top-c share of the spectrum {fmt(e['top_c_share'])}"
            for f, e in record["features"].items()
        )
        out.append(
            Verdict(
                CLAIM,
                f"[{label}] {CRITERION}",
                OUTCOME_OF_SIGN[sign_of(effect)],
                f"{evidence}; effect {fmt(effect)}",
            )
        )
    return out
