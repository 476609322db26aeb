"""The order in which a linear classifier learns the principal components of imbalanced data.

Vasudeva et al. analyse a linear model ``W`` (``k x d``) trained from ``W = 0`` with the squared
loss on Gaussian-mixture data: gradient descent learns the principal components of the data one
after another, the dominant (majority-class) one first, while spectral GD (the update ``U V^T``
of the gradient's SVD) moves along all of them at one rate, so minority classes are learned
early. This module measures that order for any optimizer, in float64 with full-batch gradients.

With ``X`` (``n x d``) the inputs and ``Y`` (``n x k``) the one-hot labels, the loss
``||X W^T - Y||^2 / (2n)`` has the gradient ``W S - C``, ``S = X^T X / n``, ``C = Y^T X / n``:

* component ``j`` is the ``j``-th singular pair ``(u_j, v_j)`` of ``C`` (the class-weighted class
  means; the gradient at ``W = 0`` is ``-C``), ``sigma_j`` descending: dominant first;
* its target is ``a*_j = u_j^T W* v_j`` for the least-squares solution ``W* = C S^-1``;
* its progress is ``p_j(t) = u_j^T W_t v_j / a*_j`` and its learning time ``t_j`` the first step
  with ``p_j >= FRACTION`` (one half);
* the *order index* ``ln(t_last / t_first)`` is > 0 when the dominant component is learned first,
  0 when all are learned together and < 0 when the last (minority) component is learned first.

Each optimizer's constant learning rate is set so that its dominant component reaches
``FRACTION`` at one common step (:func:`calibrate`): the arms are matched in speed on the
majority component and compared on when the others follow.

Closed forms (the tests' oracles): where ``S`` and ``C`` are diagonal, GD gives
``p_j(t) = 1 - (1 - lr * S_jj)^t`` and spectral GD moves every ``u_j^T W v_j`` by the same
``lr * scale`` per step until it passes its target.

References:
    Vasudeva, Deora, Zhao, Sharan, Thrampoulidis, "How Muon's Spectral Design Benefits
    Generalization: A Study on Imbalanced Data", arXiv 2510.22980 (linear and bilinear models on
    a Gaussian mixture: GD learns the principal components sequentially, SpecGD at equal rates).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Final

import torch
from torch.nn import functional as F

import steepest
from steepest.experiments.optimizers import ADAMW_BETAS, OPTIMIZERS
from steepest.experiments.targets._common import OUTCOME_OF_SIGN
from steepest.experiments.verdicts import Verdict, fmt, sign_of

__all__ = [
    "CLAIM",
    "CRITERION",
    "FRACTION",
    "Components",
    "Run",
    "calibrate",
    "components",
    "measure",
    "order_index",
    "progress",
    "run",
    "verdicts",
]

#: a component is learned once its progress u_j^T W v_j / a*_j reaches this fraction
FRACTION: Final = 0.5

CLAIM: Final = (
    "Vasudeva et al., arXiv 2510.22980: on imbalanced Gaussian-mixture data GD learns the "
    "principal components dominant first, one after another, while spectral GD (and Muon) "
    "learns them at equal rates"
)
CRITERION: Final = (
    "linear model, squared loss, full batch, float64, each lr set so the dominant component "
    "reaches 50% of its least-squares value at one common step; order index ln(t_last / "
    "t_first) of the class-mean components' 50% times (a component short of 50% at the horizon "
    "enters with the horizon), GD minus the arm's, per data draw at the largest ratio: clearly "
    "> 0 -> agrees, clearly < 0 -> disagrees, else inconclusive"
)


@dataclasses.dataclass(frozen=True)
class Components:
    """The full-batch quadratic and its class-mean components (all float64).

    ``second_moment`` is ``S`` (``d x d``), ``cross`` is ``C`` (``k x d``), ``left`` (``k x k``)
    and ``right`` (``k x d``) hold ``u_j`` as columns and ``v_j`` as rows, ``sigma`` the singular
    values of ``C`` (descending) and ``target`` the ``a*_j``.
    """

    second_moment: torch.Tensor
    cross: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    sigma: torch.Tensor
    target: torch.Tensor


@dataclasses.dataclass
class Run:
    """One optimizer's run: its ``lr``, the learning times (``None``: not reached by the
    horizon ``steps``), every ``u_j^T W v_j`` after the first step (``first_step``: the
    components' initial rates) and the progress of every component at the recorded ``step``s."""

    lr: float
    steps: int
    times: list[int | None]
    first_step: list[float]
    step: list[int]
    progress: list[list[float]]

    def order(self) -> float:
        """:func:`order_index` of this run."""
        return order_index(self.times, self.steps)


def components(x: torch.Tensor, labels: torch.Tensor, classes: int) -> Components:
    """The quadratic ``||X W^T - Y||^2 / (2n)`` of inputs ``x`` (``n x d``) and integer
    ``labels`` (one-hot over ``classes``) and its components (see the module docstring)."""
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise ValueError(
            f"components: x of shape {tuple(x.shape)} and labels of shape "
            f"{tuple(labels.shape)} must be (n, d) and (n,)"
        )
    if classes > x.shape[1]:
        raise ValueError(f"components: classes={classes} must be <= the dimension {x.shape[1]}")
    x = x.to(torch.float64)
    y = F.one_hot(labels.long(), classes).to(torch.float64)
    n = x.shape[0]
    second_moment = x.T @ x / n
    cross = y.T @ x / n
    left, sigma, right = torch.linalg.svd(cross, full_matrices=False)
    solution = torch.linalg.solve(second_moment, cross.T).T  # C S^-1, S symmetric
    target = ((left.T @ solution) * right).sum(1)
    return Components(second_moment, cross, left, right, sigma, target)


def progress(weight: torch.Tensor, comps: Components) -> torch.Tensor:
    """``p_j = u_j^T W v_j / a*_j`` for every component ``j``."""
    return ((comps.left.T @ weight) * comps.right).sum(1) / comps.target


def order_index(times: list[int | None], steps: int) -> float:
    """``ln(t_last / t_first)``; a time ``None`` (not reached) enters as ``steps``."""
    first, last = (steps if t is None else t for t in (times[0], times[-1]))
    return math.log(last / first)


def _optimizer(name: str, weight: torch.nn.Parameter, lr: float) -> torch.optim.Optimizer:
    """The matrix rule of experiments member ``name`` on one matrix, with no weight decay."""
    if name == "sgd":
        return torch.optim.SGD([weight], lr=lr)
    if name == "adamw":
        return torch.optim.AdamW([weight], lr=lr, betas=ADAMW_BETAS, weight_decay=0.0)
    if name not in OPTIMIZERS:
        raise ValueError(f"component order: optimizer={name!r}; choose one of {list(OPTIMIZERS)}")
    member = OPTIMIZERS[name]
    assert member.preset is not None
    hyper = {"weight_decay": 0.0, **member.options, "lr": lr}
    return steepest.optimizer(member.preset, [weight], **hyper)


def run(
    name: str,
    comps: Components,
    lr: float,
    steps: int,
    *,
    record_at: set[int] | None = None,
    until_dominant: bool = False,
) -> Run:
    """Train ``W`` from 0 with optimizer ``name`` at the constant ``lr`` for ``steps`` full-batch
    steps, recording the progress at the steps ``record_at`` (default: every step) and the last;
    stop early once the dominant component is learned if ``until_dominant``."""
    k, d = comps.cross.shape
    weight = torch.nn.Parameter(torch.zeros(k, d, dtype=torch.float64))
    opt = _optimizer(name, weight, lr)
    times: list[int | None] = [None] * k
    result = Run(lr, steps, times, [], [0], [[0.0] * k])
    for t in range(1, steps + 1):
        weight.grad = weight.detach() @ comps.second_moment - comps.cross
        opt.step()
        p = progress(weight.detach(), comps).tolist()
        if t == 1:
            result.first_step = [v * a for v, a in zip(p, comps.target.tolist(), strict=True)]
        for j, value in enumerate(p):
            if times[j] is None and value >= FRACTION:
                times[j] = t
        if record_at is None or t in record_at or t == steps:
            result.step.append(t)
            result.progress.append(p)
        if until_dominant and times[0] is not None:
            break
    return result


def calibrate(name: str, comps: Components, dominant_step: int, *, start: float = 1e-2) -> float:
    """The lr at which ``name``'s dominant component reaches :data:`FRACTION` at about
    ``dominant_step`` (within 10 %): rescaled by ``t_1 / dominant_step`` (times go as 1 / lr
    at small lr), multiplied by 4 while the component is not reached; at most 8 tries."""
    lr = start
    for _ in range(8):
        t = run(name, comps, lr, 4 * dominant_step, until_dominant=True).times[0]
        if t is None:
            lr *= 4
            continue
        if abs(t - dominant_step) <= max(1, dominant_step // 10):
            break
        lr *= t / dominant_step
    return lr


def measure(
    x: torch.Tensor,
    labels: torch.Tensor,
    classes: int,
    optimizers: list[str],
    *,
    steps: int,
    dominant_step: int,
    points: int = 60,
) -> dict[str, Any]:
    """Every optimizer's calibrated run on one data draw, as a JSON-ready dict: the
    components' ``sigma`` and ``target``, and per optimizer its ``lr``, ``times``, ``order``,
    ``rate_index`` (``ln`` of the first over the last component's first-step move; 0 for equal
    initial rates) and progress curve (at about ``points`` log-spaced steps)."""
    if not 1 <= dominant_step < steps:
        raise ValueError(
            f"component order: dominant_step={dominant_step} must be in [1, steps={steps})"
        )
    comps = components(x, labels, classes)
    record_at = {round(steps ** (i / (points - 1))) for i in range(points)}
    runs: dict[str, Any] = {}
    for name in optimizers:
        lr = calibrate(name, comps, dominant_step)
        r = run(name, comps, lr, steps, record_at=record_at)
        first, last = abs(r.first_step[0]), abs(r.first_step[-1])
        rate = math.log(first / last) if first > 0 and last > 0 else math.nan
        runs[name] = {**dataclasses.asdict(r), "order": r.order(), "rate_index": rate}
    return {"sigma": comps.sigma.tolist(), "target": comps.target.tolist(), "runs": runs}


def verdicts(part: dict[str, Any]) -> list[Verdict]:
    """GD's order index minus SpecGD's and Muon's (each present arm), per data draw at the
    largest ratio: ``part`` is the ``components`` entry of the ``imbalance`` record."""
    draws = part["draws"][-1]
    found = []
    for arm, label in (("specgd", "SpecGD"), ("muon", "Muon")):
        if arm not in draws[0]["runs"] or "sgd" not in draws[0]["runs"]:
            continue
        gap = [d["runs"]["sgd"]["order"] - d["runs"][arm]["order"] for d in draws]
        orders = {name: fmt([d["runs"][name]["order"] for d in draws]) for name in draws[0]["runs"]}
        found.append(
            Verdict(
                CLAIM,
                f"[GD vs {label}, ratio {part['ratios'][-1]:g}] {CRITERION}",
                OUTCOME_OF_SIGN[sign_of(gap)],
                f"GD - {label} order index {fmt(gap)}; order index "
                + ", ".join(f"{name} {text}" for name, text in orders.items()),
            )
        )
    return found
