"""Monitor: record diagnostics of a training run every k steps, as JSON lines.

Usage::

    monitor = Monitor(model, optimizer, every=10, path="run/monitor.jsonl")
    for batch in data:
        loss = loss_of(model, batch)
        loss.backward()
        optimizer.step()
        monitor.step(loss_fn=lambda: loss_of(model, batch))   # before zero_grad
        optimizer.zero_grad()
    monitor.close()
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import torch

from .curvature import layer_split, taylor_check
from .matrix import nuclear_rank
from .smoothness import smoothness_estimates
from .updates import matrix_view, snapshot, update_stats

__all__ = ["DEFAULT_METRICS", "METRICS", "Monitor"]

#: What each metric records; a JSON line's keys are "<param name>/<stat>" or "<group>/<stat>".
METRICS = {
    "update": "per parameter: update_stats (update_rms, relative_size, effective_lr, "
    "grad_dual_norm, cosine, angle_deg; for matrices also update_spectral, update_stable_rank, "
    "update_orthogonality_gap, grad_stable_rank, grad_nuclear_rank, grad_effective_rank)",
    "smoothness": "per matrix parameter, on the line after a recorded step t: seed 004 secant L "
    "(frobenius_smoothness), J (spectral_smoothness), smoothness_ratio J/L between W_t and "
    "W_{t+1}, and muon_advantage = (||g_t||_*^2 / ||g_t||_F^2) * L / J",
    "taylor": "needs loss_fn: the one-step Taylor check of the step just taken (taylor/...)",
    "layer_split": "needs loss_fn: within-/cross-parameter split of u^T H u of that step",
}
DEFAULT_METRICS = ("update", "smoothness")


class Monitor:
    """Record a chosen set of diagnostics every `every` optimizer steps, as JSON lines.

    Call `step()` once after every `optimizer.step()` and before `optimizer.zero_grad()`: it reads
    each parameter's `.grad` (the gradient g_t of the step just taken) and compares the parameters
    with a copy taken one step earlier (only before recorded steps, so the cost of the steps in
    between is a counter increment). A recorded step t writes one line with "step": t, the
    group learning rates "lr/<i>" and the chosen metrics (see `METRICS`). "smoothness" needs the
    gradient at W_{t+1}, so it is written on a line with "step": t + 1. "taylor" and
    "layer_split" evaluate the step just taken, W_t -> W_{t+1} (direction u = W_t - W_{t+1},
    lr = 1), by temporarily loading W_t back into the model; they cost a double backward and are
    only computed when `step` is given `loss_fn`. Non-finite values are written as null.

    Args:
        model: the torch.nn.Module being trained (gives parameter names).
        optimizer: its torch.optim.Optimizer; the tracked parameters are those in its groups.
        every: record every k-th step (steps 0, k, 2k, ...), a positive int.
        metrics: names from `METRICS`; default `DEFAULT_METRICS`.
        path: JSON lines file, opened for writing (overwritten) at construction.
        tensorboard_dir: also write scalars there with torch.utils.tensorboard if tensorboard is
            installed (a warning otherwise); None for JSON lines only.

    References:
        seeds/003_e51c56d7d69de86a.txt (Taylor check, NDS, layer split);
        seeds/004_67262c901d7d220a.txt (nuclear/Frobenius ratio, J and L along training);
        seeds/000_0ff94013880c6450.txt, Def. 6-7 (relative size, stable rank).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        every: int = 10,
        metrics=DEFAULT_METRICS,
        path="monitor.jsonl",
        tensorboard_dir=None,
    ):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"Monitor: model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                "Monitor: optimizer must be a torch.optim.Optimizer, got "
                f"{type(optimizer).__name__}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"Monitor: every={every!r}; need a positive int, e.g. 10")
        if isinstance(metrics, str):
            raise TypeError(
                f"Monitor: metrics={metrics!r}; need a tuple of names, e.g. ('update',)"
            )
        metrics = tuple(metrics)
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(
                f"Monitor: metrics={metrics!r}; each must be one of {tuple(METRICS)} (at least one)"
            )
        if not isinstance(path, (str, Path)):
            raise TypeError(f"Monitor: path={path!r}; need a str or pathlib.Path")
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self.params = {n: p for n, p in model.named_parameters() if id(p) in in_optimizer}
        if not self.params:
            raise ValueError("Monitor: none of model's parameters are in optimizer's param_groups")
        self.model, self.optimizer, self.every, self.metrics = model, optimizer, every, metrics
        self.steps = 0
        self._before = snapshot(self.params)  # W_0, for the record at step 0
        self._smooth_prev = None  # (W_t, g_t, W_{t+1}) after a recorded step
        self._writer = _tensorboard_writer(tensorboard_dir)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "w")  # noqa: SIM115 (closed in close())

    def step(self, loss_fn=None) -> dict | None:
        """Account for one optimizer step; on a recorded step compute, write and return the record.

        Args:
            loss_fn: optional callable returning the loss from the current parameters (same
                batch as the step); needed for "taylor" and "layer_split".

        Returns:
            The dict written for this step, or None when nothing was written.
        """
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError("Monitor.step: loss_fn must be callable or None")
        t = self.steps
        record = {}
        if self._smooth_prev is not None:
            record.update(self._smoothness())
        if t % self.every == 0:
            record.update(self._record(loss_fn))
        self.steps += 1
        if self.steps % self.every == 0:
            self._before = snapshot(self.params)
        if not record:
            return None
        record = {"step": t, **{k: _finite_or_none(v) for k, v in record.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and value is not None:
                    self._writer.add_scalar(key, value, t)
        return record

    def _record(self, loss_fn) -> dict[str, float]:
        out = {f"lr/{i}": float(g["lr"]) for i, g in enumerate(self.optimizer.param_groups)}
        grads = {n: p.grad for n, p in self.params.items() if p.grad is not None}
        if "update" in self.metrics:
            for name, stats in update_stats(self.params, self._before, grads).items():
                out.update({f"{name}/{k}": v for k, v in stats.items()})
        if "smoothness" in self.metrics:
            matrices = [n for n, g in grads.items() if g.ndim >= 2]
            now = {n: self.params[n].detach().clone() for n in matrices}
            prev_grads = {n: grads[n].detach().clone() for n in matrices}
            ratios = {
                n: out[f"{n}/grad_nuclear_rank"]
                if f"{n}/grad_nuclear_rank" in out
                else nuclear_rank(matrix_view(prev_grads[n])).item()
                for n in matrices
            }
            self._smooth_prev = (self._before, prev_grads, now, ratios)
        if loss_fn is not None and ("taylor" in self.metrics or "layer_split" in self.metrics):
            out.update(self._curvature(loss_fn))
        return out

    def _smoothness(self) -> dict[str, float]:
        W_prev, g_prev, W_now, nuclear_ratios = self._smooth_prev
        self._smooth_prev = None
        out = {}
        for name in g_prev:
            p = self.params[name]
            if p.grad is None:
                continue
            est = smoothness_estimates(
                matrix_view(W_prev[name]),
                matrix_view(W_now[name]),
                matrix_view(g_prev[name]),
                matrix_view(p.grad.detach()),
            )
            L, J = est["frobenius_smoothness"].item(), est["spectral_smoothness"].item()
            out[f"{name}/frobenius_smoothness"] = L
            out[f"{name}/spectral_smoothness"] = J
            out[f"{name}/smoothness_ratio"] = J / L if L > 0 else float("nan")
            out[f"{name}/muon_advantage"] = nuclear_ratios[name] * L / J if J > 0 else float("nan")
        return out

    def _curvature(self, loss_fn) -> dict[str, float]:
        names = list(self.params)
        params = [self.params[n] for n in names]
        after = [p.detach().clone() for p in params]
        direction = [self._before[n] - a for n, a in zip(names, after, strict=True)]
        out = {}
        try:
            with torch.no_grad():
                for p, n in zip(params, names, strict=True):
                    p.copy_(self._before[n])
            if "taylor" in self.metrics:
                check = taylor_check(loss_fn, params, direction, 1.0)
                out.update({f"taylor/{k}": v for k, v in check.items()})
            if "layer_split" in self.metrics:
                split = layer_split(loss_fn, params, direction)
                out.update({f"curvature/{k}": split[k] for k in ("total", "within", "cross")})
        finally:
            with torch.no_grad():
                for p, a in zip(params, after, strict=True):
                    p.copy_(a)
        return out

    def close(self) -> None:
        """Flush and close the JSON lines file (and the TensorBoard writer)."""
        if not self._file.closed:
            self._file.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _tensorboard_writer(log_dir):
    """A SummaryWriter for log_dir, or None (log_dir None, or tensorboard not installed)."""
    if log_dir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn(
            "Monitor: tensorboard is not installed; writing JSON lines only "
            "(pip install tensorboard for scalars)",
            stacklevel=3,
        )
        return None
    return SummaryWriter(log_dir=str(log_dir))
