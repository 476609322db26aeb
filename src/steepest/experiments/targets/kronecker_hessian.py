"""``kronecker-hessian``: how well low-rank Kronecker sums fit the exact Hessian of small
attention matrices, and whether the fit carries the NDS comparison it is used for.

The claim (Bergemann, Zhang, Li, Wang, Yang, "Why Muon outperforms Adam: a curvature
perspective", arXiv 2606.04662, Assumption 5.1 and Fig. 5, 10-12): the Hessian of an
attention matrix W_Q, W_K, W_V or W_O is well approximated by a low-rank Kronecker sum
sum_{k<=r} A_k (x) B_k; a rank-4 sum captures at least 0.87 of the Frobenius energy for three
of the four matrices. The paper's quadratic analysis takes this structure (with simultaneous
diagonalization and gradient alignment) to prove that Muon's direction msign(G) has a smaller
NDS than gradient descent's G. Protocol here: a small GPT on ``zipf-pcfg`` trained with AdamW
and with Muon; at checkpoints, the exact Hessian of each attention matrix of each block on a
fixed batch (batched double backward, checked against
:func:`steepest.diagnostics.layer_hessian`), the
energy captured by the best rank-r Kronecker sums (:func:`steepest.diagnostics.kronecker_approx`,
Van Loan's rearrangement), and the NDS of the directions G and msign(G) under the exact Hessian
and under its rank-4 Kronecker model.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from pathlib import Path
from typing import Any, Final

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from steepest.diagnostics import kronecker_approx, kronecker_sum
from steepest.experiments.optimizers import build_optimizer
from steepest.experiments.runner import lr_factor, scale_lrs
from steepest.experiments.targets._output import OUTCOME, pyplot, write_record
from steepest.experiments.tasks import Task, make_task
from steepest.experiments.verdicts import Verdict, fmt, sign_of, threshold_test

__all__ = [
    "CLAIMS",
    "CRITERIA",
    "ENERGY_LEVEL",
    "MATRICES",
    "attention_hessians",
    "exact_hessian",
    "kronecker_hessian",
    "kronecker_hessian_verdicts",
]

#: the attention matrices of a block: name -> (parameter, row slice in units of width)
MATRICES: Final = {"W_Q": ("qkv", 0), "W_K": ("qkv", 1), "W_V": ("qkv", 2), "W_O": ("proj", 0)}
#: the paper's reported rank-4 energy for three of the four attention matrices
ENERGY_LEVEL: Final = 0.87
#: the NDS model error the criterion allows
MODEL_ERROR: Final = 0.2
RANK: Final = 4

CLAIMS: Final = {
    "energy": "Bergemann et al., arXiv 2606.04662 (Assumption 5.1, Fig. 5): the Hessian of an "
    "attention matrix is close to a low-rank Kronecker sum; rank 4 captures >= 0.87 of its "
    "Frobenius energy for three of W_Q, W_K, W_V, W_O",
    "ordering": "Bergemann et al., arXiv 2606.04662 (Sec. 5): within a layer's Hessian, "
    "Muon's direction msign(G) has a smaller NDS than gradient descent's G",
    "model": "Bergemann et al., arXiv 2606.04662 (Sec. 5): the rank-4 Kronecker model of a "
    "layer's Hessian carries the NDS of the directions G and msign(G) that the analysis compares",
}
CRITERIA: Final = {
    "energy": "per seed and matrix, the rank-4 energy fraction (median over checkpoints and "
    "blocks) against 0.87: clearly above for at least three of the four matrices -> agrees; "
    "clearly below for at least two -> disagrees; else inconclusive",
    "ordering": "per seed, the median over matrices, blocks and checkpoints of "
    "(NDS(G) - NDS(msign G)) / (|NDS(G)| + |NDS(msign G)|) under the exact Hessian: clearly "
    "> 0 -> agrees, clearly < 0 -> disagrees, else inconclusive",
    "model": "per seed, the median over directions, matrices, blocks and checkpoints of "
    "|NDS under the rank-4 model - exact NDS| / |exact NDS|: clearly < 0.2 -> agrees, clearly "
    "> 0.2 -> disagrees, else inconclusive",
}


def _msign(G: torch.Tensor) -> torch.Tensor:
    u, _, vh = torch.linalg.svd(G, full_matrices=False)
    out: torch.Tensor = u @ vh
    return out


def _nds(H: torch.Tensor, D: torch.Tensor) -> float:
    v = D.reshape(-1)
    return float(v @ H @ v / (v @ v))


def exact_hessian(loss_fn: Any, weight: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """The exact Hessian of ``loss_fn()`` with respect to ``weight`` (row-major flattening,
    as :func:`steepest.diagnostics.layer_hessian`), its rows computed ``chunk`` at a time by
    batched double backward (``is_grads_batched``)."""
    (grad,) = torch.autograd.grad(loss_fn(), weight, create_graph=True)
    flat = grad.reshape(-1)
    n = flat.numel()
    rows = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        basis = torch.zeros(stop - start, n, dtype=flat.dtype)
        basis[torch.arange(stop - start), torch.arange(start, stop)] = 1
        (block,) = torch.autograd.grad(
            flat, weight, basis, retain_graph=stop < n, is_grads_batched=True
        )
        rows.append(block.reshape(stop - start, n))
    return torch.cat(rows).detach()


def attention_hessians(
    model: torch.nn.Module, loss_fn: Any, width: int
) -> list[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Per block, per attention matrix: (exact Hessian (w^2, w^2), symmetrized, float64;
    gradient (w, w)) of ``loss_fn()``. W_Q, W_K, W_V are the row blocks of the fused ``qkv``
    weight: with row-major flattening their Hessians are diagonal blocks of qkv's."""
    out = []
    n = width * width
    for block in model.blocks:  # type: ignore[union-attr]
        entry = {}
        for pname in ("qkv", "proj"):
            weight = getattr(block, pname).weight
            H = exact_hessian(loss_fn, weight).double()
            (G,) = torch.autograd.grad(loss_fn(), weight)
            for mname, (owner, i) in MATRICES.items():
                if owner != pname:
                    continue
                Hx = H[i * n : (i + 1) * n, i * n : (i + 1) * n]
                Gx = G[i * width : (i + 1) * width].double()
                entry[mname] = (0.5 * (Hx + Hx.T), Gx)
        out.append(entry)
    return out


def _checkpoint_stats(
    hessians: list[dict[str, tuple[torch.Tensor, torch.Tensor]]], width: int, max_rank: int
) -> dict[str, list[dict[str, Any]]]:
    """Per matrix, per block: energy(r) for r = 1..max_rank, and exact / rank-4 NDS of G and
    msign(G)."""
    stats: dict[str, list[dict[str, Any]]] = {m: [] for m in MATRICES}
    for entry in hessians:
        for mname, (H, G) in entry.items():
            approx = kronecker_approx(H, (width, width), (width, width), max_rank)
            A, B = approx.A[:RANK], approx.B[:RANK]
            H4 = kronecker_sum(A, B)
            H4 = 0.5 * (H4 + H4.T)
            directions = {"gd": G, "muon": _msign(G)}
            stats[mname].append(
                {
                    "energy": approx.energy.tolist(),
                    "nds": {k: _nds(H, d) for k, d in directions.items()},
                    "nds_rank4": {k: _nds(H4, d) for k, d in directions.items()},
                }
            )
    return stats


def _random_energy(width: int, max_rank: int, seed: int) -> list[float]:
    """Energy(r) of a random symmetric Gaussian matrix of the same size (the no-structure
    reference)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(width * width, width * width, generator=gen, dtype=torch.float64)
    values: list[float] = kronecker_approx(
        X + X.T, (width, width), (width, width), max_rank
    ).energy.tolist()
    return values


def _trajectory(
    task: Task, name: str, steps: int, checkpoints: list[int], seed: int, hessian_batch: Any,
    width: int, max_rank: int,
) -> list[dict[str, list[dict[str, Any]]]]:  # fmt: skip
    """Train with ``name`` at the task's lrs; at each checkpoint step, the attention Hessian
    statistics on ``hessian_batch``."""
    torch.manual_seed(seed)
    model = task.build_model()
    lr, adamw_lr = task.default_lrs[name]
    optimizers = build_optimizer(name, model, lr, adamw_lr, routing=task.routing())
    base = [[g["lr"] for g in opt.param_groups] for opt in optimizers]
    batches = task.batches(seed)
    loss_fn = functools.partial(task.loss, model, hessian_batch)
    out = []
    for step in range(steps + 1):
        if step in checkpoints:
            out.append(
                _checkpoint_stats(attention_hessians(model, loss_fn, width), width, max_rank)
            )
        if step == steps:
            break
        scale_lrs(optimizers, base, lr_factor(step, steps, task.warmup, task.schedule))
        torch.autograd.backward(task.loss(model, next(batches)))
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
    return out


def kronecker_hessian(
    out: Path,
    *,
    progress: bool = True,
    steps: int = 300,
    checkpoints: str = "0.5,1",
    seeds: int = 3,
    max_rank: int = 8,
    layers: int = 2,
    width: int = 16,
    heads: int = 2,
    context: int = 32,
    batch_size: int = 16,
    hessian_batch: int = 32,
) -> dict[str, Any]:
    """Rank-r Kronecker energy of the exact attention Hessians, and the NDS they imply.

    zipf-pcfg (exponent 1; the seed draws the grammar, the initialization and the batches),
    a ``layers`` x ``width`` GPT trained ``steps`` steps with AdamW and with Muon at the
    task's learning rates. At each checkpoint (fractions of ``steps``), on a fixed batch of
    ``hessian_batch`` windows: per block and attention matrix, the exact Hessian (symmetrized,
    float64), the energy fraction of its best rank-r Kronecker sums (r = 1..``max_rank``), and
    the NDS of G and msign(G) under the exact Hessian and under the rank-4 sum. Reference: the
    same energies for a random symmetric matrix of the same size. Criteria: :data:`CRITERIA`.

    References:
        Bergemann, Zhang, Li, Wang, Yang, "Why Muon outperforms Adam: a curvature
        perspective", arXiv 2606.04662, Assumptions 5.1-5.4, Fig. 5, 10-12; C. F. Van Loan and
        N. Pitsianis, "Approximation with Kronecker products" (1993).
    """
    fractions = [float(v) for v in checkpoints.split(",")]
    if not fractions or any(not 0 <= f <= 1 for f in fractions):
        raise ValueError(
            f"kronecker-hessian: checkpoints={checkpoints!r}; need fractions in [0, 1]"
        )
    if not 4 <= max_rank <= width * width:
        raise ValueError(
            f"kronecker-hessian: max_rank={max_rank}; need an int in [4, width^2={width * width}]"
        )
    steps_at = sorted({round(f * steps) for f in fractions})
    names = ("adamw", "muon")
    runs: dict[str, list[list[dict[str, list[dict[str, Any]]]]]] = {name: [] for name in names}
    random_energy = []
    options: dict[str, Any] = {}
    lrs: dict[str, tuple[float, float]] = {}
    with sdpa_kernel(SDPBackend.MATH):
        for seed in range(seeds):
            task = make_task(
                "zipf-pcfg", grammar_seed=seed, layers=layers, width=width, heads=heads,
                context=context, batch_size=batch_size, eval_windows=8,
            )  # fmt: skip
            task.setup(torch.device("cpu"))
            options, lrs = task.options(), {name: task.default_lrs[name] for name in names}
            fixed = _hessian_batch(task, seed, hessian_batch)
            for name in names:
                runs[name].append(
                    _trajectory(task, name, steps, steps_at, seed, fixed, width, max_rank)
                )
            random_energy.append(_random_energy(width, max_rank, seed))
    record: dict[str, Any] = {
        "target": "kronecker-hessian",
        "task": "zipf-pcfg",
        "task_options": {k: v for k, v in options.items() if k != "grammar_seed"},
        "steps": steps,
        "checkpoint_steps": steps_at,
        "seeds": list(range(seeds)),
        "lrs": lrs,
        "hessian_batch": hessian_batch,
        "ranks": list(range(1, max_rank + 1)),
        "model_rank": RANK,
        "matrices": list(MATRICES),
        "random_symmetric_energy": random_energy,
        "runs": runs,
        "note": "runs[optimizer][seed][checkpoint][matrix][block]: energy[r-1] is the fraction "
        "of ||H||_F^2 captured by the best rank-r Kronecker sum; nds / nds_rank4: NDS of the "
        "directions gd = G and muon = msign(G) under the exact Hessian / its rank-4 sum",
    }
    record["verdicts"] = [dataclasses.asdict(v) for v in kronecker_hessian_verdicts(record)]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
    ranks = record["ranks"]
    for mname in MATRICES:
        per_rank = [
            [c[mname][b]["energy"][r - 1] for name in names for s in runs[name] for c in s
             for b in range(layers)]
            for r in ranks
        ]  # fmt: skip
        axes[0].plot(ranks, [statistics.median(v) for v in per_rank], marker="o", label=mname)
    axes[0].plot(
        ranks,
        [statistics.median(e[r - 1] for e in random_energy) for r in ranks],
        "k:",
        label="random symmetric",
    )
    axes[0].axhline(ENERGY_LEVEL, color="gray", linestyle="--")
    axes[0].set_xlabel("Kronecker rank r")
    axes[0].set_ylabel("energy fraction captured (median)")
    axes[0].legend(fontsize=8)
    H, G = _nds_pairs(runs)
    axes[1].set_title("exact vs rank-4 NDS of G (o) and msign G (x)")
    axes[1].scatter([x for x, _ in H], [y for _, y in H], marker="o", s=10, label="G")
    axes[1].scatter([x for x, _ in G], [y for _, y in G], marker="x", s=10, label="msign G")
    lo = min(min(v) for v in (*H, *G))
    hi = max(max(v) for v in (*H, *G))
    axes[1].plot([lo, hi], [lo, hi], "k:")
    axes[1].set_xlabel("NDS, exact Hessian")
    axes[1].set_ylabel("NDS, rank-4 Kronecker sum")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"attention Hessians: zipf-pcfg, {layers} x {width} GPT, {seeds} seeds")
    fig.tight_layout()
    fig.savefig(out / "kronecker-hessian.png")
    plt.close(fig)
    write_record(record, out, "kronecker-hessian")
    return record


def _nds_pairs(
    runs: dict[str, Any],
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(exact, rank-4) NDS pairs of G and of msign(G) over every case of ``runs``."""
    cases = _cases(runs)
    gd = [(c["nds"]["gd"], c["nds_rank4"]["gd"]) for c in cases]
    muon = [(c["nds"]["muon"], c["nds_rank4"]["muon"]) for c in cases]
    return gd, muon


def _hessian_batch(task: Task, seed: int, size: int) -> torch.Tensor:
    """``size`` windows from a batch generator separate from training's (seed 10000 + seed)."""
    stream = task.batches(10_000 + seed)
    windows: list[torch.Tensor] = []
    while sum(len(w) for w in windows) < size:
        windows.append(next(stream))
    return torch.cat(windows)[:size]


def _cases(runs: dict[str, Any], seed: int | None = None, matrix: str | None = None) -> list[Any]:
    """Every (optimizer, checkpoint, matrix, block) entry, optionally of one seed / matrix."""
    out = []
    for per_seed in runs.values():
        for s, checkpoints in enumerate(per_seed):
            if seed is not None and s != seed:
                continue
            for checkpoint in checkpoints:
                for mname, blocks in checkpoint.items():
                    if matrix is None or mname == matrix:
                        out.extend(blocks)
    return out


def kronecker_hessian_verdicts(record: dict[str, Any]) -> list[Verdict]:
    """The three verdicts of ``kronecker-hessian`` from ``record["runs"]``."""
    runs, seeds = record["runs"], range(len(record["seeds"]))
    at = record["ranks"].index(RANK)
    above = below = 0
    lines = []
    for mname in record["matrices"]:
        energy = [statistics.median(c["energy"][at] for c in _cases(runs, s, mname)) for s in seeds]
        test = -threshold_test(energy, ENERGY_LEVEL)
        above, below = above + (test == 1), below + (test == -1)
        lines.append(f"{mname} {fmt(energy)}")
    outcome = "agrees" if above >= 3 else "disagrees" if below >= 2 else "inconclusive"
    random = [e[at] for e in record["random_symmetric_energy"]]
    energy_verdict = Verdict(
        CLAIMS["energy"],
        CRITERIA["energy"],
        outcome,
        f"rank-{RANK} energy: {', '.join(lines)}; random symmetric {fmt(random)}",
    )

    def contrast(nds: dict[str, float]) -> float:
        total = abs(nds["gd"]) + abs(nds["muon"])
        return (nds["gd"] - nds["muon"]) / total if total > 0 else math.nan

    def rel_error(c: dict[str, Any]) -> list[float]:
        return [
            abs(c["nds_rank4"][d] - c["nds"][d]) / abs(c["nds"][d]) if c["nds"][d] else math.nan
            for d in ("gd", "muon")
        ]

    ordering = [statistics.median(contrast(c["nds"]) for c in _cases(runs, s)) for s in seeds]
    ordering4 = [
        statistics.median(contrast(c["nds_rank4"]) for c in _cases(runs, s)) for s in seeds
    ]
    errors = [statistics.median(e for c in _cases(runs, s) for e in rel_error(c)) for s in seeds]
    return [
        energy_verdict,
        Verdict(
            CLAIMS["ordering"],
            CRITERIA["ordering"],
            OUTCOME[sign_of(ordering)],
            f"contrast exact {fmt(ordering)}; under the rank-{RANK} model {fmt(ordering4)}",
        ),
        Verdict(
            CLAIMS["model"],
            CRITERIA["model"],
            OUTCOME[threshold_test(errors, MODEL_ERROR)],
            f"median relative NDS error of the rank-{RANK} model {fmt(errors)}",
        ),
    ]
