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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from ._checks import svd_dtype
from .curvature import layer_split, taylor_check
from .matrix import _padded_singular_values
from .updates import (
    UPDATE_STATS,
    _stack_norms,
    matrix_view,
    snapshot,
    table_to_floats,
    update_table,
)

__all__ = ["DEFAULT_METRICS", "METRICS", "Monitor"]

#: What each metric records; a JSON line's keys are "<param name>/<stat>" or "<group>/<stat>".
METRICS = {
    "update": "per parameter: update_stats (update_rms, relative_size, effective_lr, "
    "grad_dual_norm, cosine, angle_deg; for matrices also update_spectral, update_stable_rank, "
    "update_orthogonality_gap, grad_stable_rank, grad_nuclear_rank, grad_effective_rank)",
    "smoothness": "per matrix parameter, on the line after a recorded step t: secant L "
    "(frobenius_smoothness), J (spectral_smoothness), smoothness_ratio J/L between W_t and "
    "W_{t+1}, and muon_advantage = (||g_t||_*^2 / ||g_t||_F^2) * L / J",
    "taylor": "needs loss_fn: the one-step Taylor check of the step just taken (taylor/...)",
    "layer_split": "needs loss_fn: within-/cross-parameter split of u^T H u of that step",
}
DEFAULT_METRICS = ("update", "smoothness")


class _ScalarWriter(Protocol):
    """The part of torch.utils.tensorboard.SummaryWriter the Monitor uses."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> None: ...

    def close(self) -> None: ...


@dataclass
class _SmoothnessState:
    """What the smoothness line after a recorded step t needs from step t, per matrix."""

    names: list[str]
    grads: list[torch.Tensor]  # g_t, copies
    update_frobenius: torch.Tensor  # ||W_{t+1} - W_t||_F
    update_spectral: torch.Tensor  # ||W_{t+1} - W_t||_2
    nuclear_rank: torch.Tensor  # ||g_t||_*^2 / ||g_t||_F^2


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

    Cost of a record: the singular values of each matrix's update and gradient (one svdvals
    call per group of equal shape, shared by all statistics), of the gradient change on the
    following step for "smoothness" (the update's norms are reused), and one host copy per
    line.

    Args:
        model: the torch.nn.Module being trained (gives parameter names).
        optimizer: its torch.optim.Optimizer; the tracked parameters are those in its groups.
        every: record every k-th step (steps 0, k, 2k, ...), a positive int.
        metrics: names from `METRICS`; default `DEFAULT_METRICS`.
        path: JSON lines file, opened for writing (overwritten) at construction.
        tensorboard_dir: also write scalars there with torch.utils.tensorboard if tensorboard is
            installed (a warning otherwise); None for JSON lines only.
        threads: CPU intra-op threads while the "update" and "smoothness" statistics are
            computed (restored afterwards). 1, the default, suits the small per-layer SVDs: with
            more threads, MKL/OpenMP synchronization costs more than the work, worst on a busy
            machine. None keeps torch's setting (e.g. for large matrices on a many-core CPU).
            No effect on GPU tensors.

    References:
        arXiv 2606.04662 (Taylor check, NDS, layer split);
        Shen et al., arXiv 2505.23737 (nuclear/Frobenius ratio, J and L along training);
        Cesista (2025), Def. 6-7 (relative size, stable rank).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        every: int = 10,
        metrics: Iterable[str] = DEFAULT_METRICS,
        path: str | Path = "monitor.jsonl",
        tensorboard_dir: str | Path | None = None,
        threads: int | None = 1,
    ) -> None:
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
        chosen = tuple(metrics)
        unknown = [m for m in chosen if m not in METRICS]
        if unknown or not chosen:
            raise ValueError(
                f"Monitor: metrics={chosen!r}; each must be one of {tuple(METRICS)} (at least one)"
            )
        if not isinstance(path, (str, Path)):
            raise TypeError(f"Monitor: path={path!r}; need a str or pathlib.Path")
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ValueError(f"Monitor: threads={threads!r}; need a positive int or None")
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self.params = {n: p for n, p in model.named_parameters() if id(p) in in_optimizer}
        if not self.params:
            raise ValueError("Monitor: none of model's parameters are in optimizer's param_groups")
        self.model, self.optimizer, self.every, self.metrics = model, optimizer, every, chosen
        self.threads = threads
        self.steps = 0
        self._before = snapshot(self.params)  # W_t of the next recorded step, refreshed in place
        self._smooth_prev: _SmoothnessState | None = None
        self._writer = _tensorboard_writer(tensorboard_dir)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "w")  # noqa: SIM115 (closed in close())

    def step(
        self, loss_fn: Callable[[], torch.Tensor] | None = None
    ) -> dict[str, float | None] | None:
        """Account for one optimizer step; on a recorded step compute, write and return the record.

        Args:
            loss_fn: optional callable returning the loss from the current parameters (same
                batch as the step); needed for "taylor" and "layer_split".

        Returns:
            The dict written for this step ("step" and the metrics), or None when nothing was
            written.
        """
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError("Monitor.step: loss_fn must be callable or None")
        t = self.steps
        record: dict[str, float] = {}
        if self._smooth_prev is not None:
            with _intra_op_threads(self.threads):
                record.update(self._smoothness(self._smooth_prev))
            self._smooth_prev = None
        if t % self.every == 0:
            record.update(self._record(loss_fn))
        self.steps += 1
        if self.steps % self.every == 0:
            with torch.no_grad():
                names = list(self.params)
                torch._foreach_copy_(
                    [self._before[n] for n in names], [self.params[n].detach() for n in names]
                )
        if not record:
            return None
        line: dict[str, float | None] = {"step": t}
        line.update({k: _finite_or_none(v) for k, v in record.items()})
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in line.items():
                if key != "step" and value is not None:
                    self._writer.add_scalar(key, value, t)
        return line

    def _record(self, loss_fn: Callable[[], torch.Tensor] | None) -> dict[str, float]:
        out = {f"lr/{i}": float(g["lr"]) for i, g in enumerate(self.optimizer.param_groups)}
        if "update" in self.metrics or "smoothness" in self.metrics:
            with _intra_op_threads(self.threads):
                out.update(self._update_and_smoothness_state())
        if loss_fn is not None and ("taylor" in self.metrics or "layer_split" in self.metrics):
            out.update(self._curvature(loss_fn))
        return out

    def _update_and_smoothness_state(self) -> dict[str, float]:
        """The "update" statistics (one host copy); keeps what "smoothness" needs next step."""
        grads = {n: p.grad for n, p in self.params.items()}
        table = update_table(self.params, self._before, grads)
        out: dict[str, float] = {}
        if "update" in self.metrics:
            names = list(self.params)
            for name, stats in table_to_floats(table, names, keep=UPDATE_STATS).items():
                out.update({f"{name}/{k}": v for k, v in stats.items()})
        if "smoothness" in self.metrics and "grad_nuclear_rank" in table:
            names, nuclear_rank = table["grad_nuclear_rank"]
            spectral_names, spectral = table["update_spectral"]
            all_names, frobenius = table["update_frobenius"]
            device = frobenius.device
            where = {n: i for i, n in enumerate(spectral_names)}
            spectral = spectral[torch.tensor([where[n] for n in names], device=device)]
            where = {n: i for i, n in enumerate(all_names)}
            frobenius = frobenius[torch.tensor([where[n] for n in names], device=device)]
            copies = []
            for n in names:
                grad = grads[n]
                assert grad is not None
                copies.append(grad.detach().clone())
            self._smooth_prev = _SmoothnessState(names, copies, frobenius, spectral, nuclear_rank)
        return out

    def _smoothness(self, prev: _SmoothnessState) -> dict[str, float]:
        """The secant L and J of Shen et al. (arXiv 2505.23737) between W_t and W_{t+1}.

        L = ||dG||_F / ||dW||_F, J = ||dG||_* / ||dW||_2 (as `smoothness_estimates`), with the
        norms of dW = W_{t+1} - W_t taken from the update statistics of step t.
        """
        keep = [i for i, n in enumerate(prev.names) if self.params[n].grad is not None]
        if not keep:
            return {}
        names, dG = [], []
        for i in keep:
            name, g_prev = prev.names[i], prev.grads[i]
            grad = self.params[name].grad
            assert grad is not None
            dtype = svd_dtype(g_prev)
            names.append(name)
            dG.append(grad.detach().to(dtype) - g_prev.to(dtype))
        views = [matrix_view(x) for x in dG]
        S, _ = _padded_singular_values([v for v in views if v is not None])
        device = prev.update_frobenius.device
        index = torch.tensor(keep, device=device)
        dW_fro, dW_spec = prev.update_frobenius[index], prev.update_spectral[index]
        nan = torch.full_like(dW_fro, math.nan)
        moved = dW_fro > 0
        L = torch.where(moved, _stack_norms(dG, device) / dW_fro, nan)
        J = torch.where(moved, S.sum(-1).to(device) / dW_spec, nan)
        ratio = torch.where(L > 0, J / L, nan)
        advantage = torch.where(J > 0, prev.nuclear_rank[index] * L / J, nan)
        values = torch.stack([L, J, ratio, advantage]).tolist()
        out: dict[str, float] = {}
        for stat, row in zip(
            ("frobenius_smoothness", "spectral_smoothness", "smoothness_ratio", "muon_advantage"),
            values,
            strict=True,
        ):
            out.update({f"{name}/{stat}": v for name, v in zip(names, row, strict=True)})
        return out

    def _curvature(self, loss_fn: Callable[[], torch.Tensor]) -> dict[str, float]:
        names = list(self.params)
        params = [self.params[n] for n in names]
        after = [p.detach().clone() for p in params]
        direction = [self._before[n] - a for n, a in zip(names, after, strict=True)]
        out: dict[str, float] = {}
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

    def __exit__(self, *exc: object) -> None:
        self.close()


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


@contextmanager
def _intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the body with `threads` CPU intra-op threads (None: unchanged), then restore."""
    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _tensorboard_writer(log_dir: str | Path | None) -> _ScalarWriter | None:
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
    writer: _ScalarWriter = SummaryWriter(log_dir=str(log_dir))
    return writer
