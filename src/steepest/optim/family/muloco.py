"""MuLoCo: DiLoCo's outer loop around K workers that each train with a family member (Muon):
simulated in one process (MuLoCo), or one worker per rank of a process group
(DistributedMuLoCo)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from ..checks import check_choice, check_nonnegative, check_unit_interval
from ..engine import Steepest
from ..presets import optimizer
from ..quantize import dequantize, quantize, quantized_zeros

__all__ = ["COMPRESSIONS", "DistributedMuLoCo", "MuLoCo", "compress"]

#: How each worker's outer gradient is compressed before averaging (with error feedback).
COMPRESSIONS = (None, "topk", "int8")


class MuLoCo:
    """K simulated workers, each with its own copy of the parameters and its own inner
    optimizer (a preset, default "muon"); every ``sync_every`` steps an outer Nesterov-SGD step
    on the averaged parameter deltas.

    Math (global weights x, worker k's weights x_k, H = sync_every):
        inner: x_k <- inner_k.step(x_k, grad f_k(x_k))        H times, each worker its batch
        outer: Delta_k = x - x_k  (+ e_k, compressed to c_k, e_k <- Delta_k + e_k - c_k)
               Delta = mean_k c_k  (c_k = Delta_k without compression)
               x <- NesterovSGD(x, grad = Delta, lr = outer_lr, momentum = outer_momentum)
               x_k <- x for every k
    The model's parameters hold x between steps (and x_k while worker k's closure runs). With
    H = 1, outer_lr = 1 and outer_momentum = 0 the outer step is x <- mean_k x_k: the mean of
    the workers' inner steps, which is one synchronous data-parallel inner step when the
    workers see the same gradient (for Muon, msign of a mean of different gradients is not
    the mean of their msigns, so with different batches it is not data-parallel Muon).
    The inner optimizers keep their state across rounds (each its own momentum).

    Args:
        params: the model's parameters (a list of tensors).
        workers: K >= 1.
        sync_every: H >= 1 inner steps per outer step.
        outer_lr: the outer learning rate (> 0), default 0.7.
        outer_momentum: the outer Nesterov momentum in [0, 1), default 0.9.
        compression: None, "topk" (keep the ``topk_fraction`` largest entries of each
            tensor's delta) or "int8" (block-wise int8, steepest.optim.quantize), both with
            error feedback per worker.
        topk_fraction: the kept fraction for "topk", in (0, 1], default 0.1.
        inner: the preset name of the inner optimizer, default "muon".
        **inner_hyperparameters: passed to every worker's ``steepest.optimizer(inner, ...)``.

    Example:
        >>> import torch, steepest
        >>> w = torch.nn.Parameter(torch.zeros(4, 3))
        >>> opt = steepest.optim.MuLoCo([w], workers=2, sync_every=2, lr=0.02)
        >>> def closure(k):
        ...     def run():
        ...         loss = ((w - k) ** 2).sum()
        ...         loss.backward()
        ...         return loss
        ...     return run
        >>> _ = opt.step([closure(0), closure(1)])

    References: Thérien, Huang, Rish, Belilovsky, "MuLoCo: Muon is a practical inner
    optimizer for DiLoCo", arXiv 2505.23725; Douillard et al., "DiLoCo: Distributed
    Low-Communication Training of Language Models", arXiv 2311.08455 (the outer loop).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        workers: int,
        sync_every: int = 30,
        outer_lr: float = 0.7,
        outer_momentum: float = 0.9,
        compression: str | None = None,
        topk_fraction: float = 0.1,
        inner: str = "muon",
        **inner_hyperparameters: Any,
    ) -> None:
        who = "MuLoCo"
        for name, value in (("workers", workers), ("sync_every", sync_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{who}: {name}={value!r} must be an int >= 1")
        check_outer(who, outer_lr, outer_momentum, compression, topk_fraction)
        if isinstance(params, torch.Tensor):
            raise ValueError(f"{who}: params must be a non-empty list of tensors, not a Tensor")
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{who}: params must be a non-empty list of tensors")
        self.workers, self.sync_every = workers, sync_every
        self.compression, self.topk_fraction = compression, topk_fraction
        self.inner: list[Steepest] = [
            optimizer(inner, self.params, **inner_hyperparameters) for _ in range(workers)
        ]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            from steepest.distributed import configure

            for worker in self.inner:  # simulated in this process: no rank shares its steps
                configure(worker, share_replicated=False)
        with torch.no_grad():
            self.global_params = [p.detach().clone() for p in self.params]
            self.local = [[p.detach().clone() for p in self.params] for _ in range(workers)]
        self.errors = [[torch.zeros_like(p) for p in self.params] for _ in range(workers)]
        self.outer = torch.optim.SGD(
            self.global_params,
            lr=outer_lr,
            momentum=outer_momentum,
            nesterov=outer_momentum > 0,
        )
        self.steps = 0

    def step(self, closures: Sequence[Callable[[], Any]]) -> list[Any]:
        """One inner step of every worker (closure k computes worker k's loss and calls
        backward at x_k, which the model's parameters hold while it runs), then the outer
        step if H inner steps have passed. Returns the closures' losses."""
        if len(closures) != self.workers:
            raise ValueError(
                f"MuLoCo: step got {len(closures)} closures; need one per worker ({self.workers})"
            )
        losses = []
        for k, closure in enumerate(closures):
            self._load(self.local[k])
            self.inner[k].zero_grad()
            with torch.enable_grad():
                losses.append(closure())
            self.inner[k].step()
            with torch.no_grad():
                torch._foreach_copy_(self.local[k], self.params)
        self.steps += 1
        if self.steps % self.sync_every == 0:
            self._outer_step()
        self._load(self.global_params)
        return losses

    @torch.no_grad()
    def _outer_step(self) -> None:
        """x <- NesterovSGD(x, mean_k compressed(x - x_k)); every x_k <- x."""
        for i, x in enumerate(self.global_params):
            total = torch.zeros_like(
                x, dtype=torch.float32 if x.dtype != torch.float64 else x.dtype
            )
            for k in range(self.workers):
                error = self.errors[k][i]
                total += sent_delta(
                    x, self.local[k][i], error, self.compression, self.topk_fraction
                )
            x.grad = (total / self.workers).to(x.dtype)
        self.outer.step()
        for k in range(self.workers):
            torch._foreach_copy_(self.local[k], self.global_params)
        for x in self.global_params:
            x.grad = None

    @torch.no_grad()
    def _load(self, values: list[torch.Tensor]) -> None:
        torch._foreach_copy_(self.params, values)


def check_outer(
    who: str,
    outer_lr: float,
    outer_momentum: float,
    compression: str | None,
    topk_fraction: float,
) -> None:
    """Raise ValueError naming a bad outer-loop option (value and what is allowed)."""
    check_nonnegative(who, "outer_lr", outer_lr, 0.7)
    if outer_lr == 0:
        raise ValueError(f"{who}: outer_lr=0 must be > 0; try 0.7")
    check_unit_interval(who, "outer_momentum", outer_momentum, 0.9)
    if compression is not None:
        check_choice(who, "compression", compression, ("topk", "int8"))
    if isinstance(topk_fraction, bool) or not isinstance(topk_fraction, (int, float)):
        raise ValueError(f"{who}: topk_fraction={topk_fraction!r} must be in (0, 1]")
    if not 0 < topk_fraction <= 1:
        raise ValueError(f"{who}: topk_fraction={topk_fraction!r} must be in (0, 1]")


def sent_delta(
    x: torch.Tensor,
    local: torch.Tensor,
    error: torch.Tensor,
    compression: str | None,
    topk_fraction: float,
) -> torch.Tensor:
    """What a worker sends at an outer step: compressed(x - x_k + e_k) in float32 (float64 for
    float64 x); the error feedback e_k keeps what compression dropped."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    delta = (x - local).to(dtype) + error.to(dtype)
    sent = compress(delta, compression, topk_fraction)
    error.copy_(delta - sent)
    return sent


def compress(delta: torch.Tensor, compression: str | None, topk_fraction: float) -> torch.Tensor:
    """The part of delta a worker sends: all of it (None), its ceil(topk_fraction * numel)
    largest entries ("topk"), or its block-wise int8 copy ("int8")."""
    if compression is None:
        return delta
    if compression == "topk":
        count = max(1, math.ceil(topk_fraction * delta.numel()))
        flat = delta.reshape(-1)
        kept = torch.zeros_like(flat)
        index = flat.abs().topk(count).indices
        kept[index] = flat[index]
        return kept.view_as(delta)
    q = quantized_zeros(delta)
    quantize(delta, q["codes"], q["absmax"])
    return dequantize(q["codes"], q["absmax"], delta)


class DistributedMuLoCo:
    """One MuLoCo worker per rank of a torch.distributed process group: this rank's
    parameters are its worker's x_k, trained by its own inner optimizer (a preset, default
    "muon"); every ``sync_every`` steps the ranks all-reduce their parameter deltas and take
    the same outer Nesterov-SGD step.

    Math (global weights x, this rank's weights x_k, W ranks, H = sync_every):
        inner: x_k <- inner.step(x_k, grad f_k(x_k))           H times, each rank its batch
        outer: Delta_k = x - x_k  (+ e_k, compressed to c_k, e_k <- Delta_k + e_k - c_k)
               Delta = (1 / W) all_reduce_sum(c_k)              one all-reduce per round
               x <- NesterovSGD(x, grad = Delta, lr = outer_lr, momentum = outer_momentum)
               x_k <- x
    It computes what MuLoCo (the single-process simulation) computes with W workers whose
    closures see the ranks' batches (up to the order of the all-reduce's float sums). The
    inner steps communicate nothing (the inner optimizer is configured with
    ``share_replicated=False``). At
    construction every rank takes the first rank's parameters (a broadcast), so that the
    workers start from one x. Communication: one all-reduce of all deltas (float32, or
    float64 for float64 parameters) per outer step; the compressed deltas are sent dense
    (compression models the bandwidth saving and its error feedback exactly, as in the
    simulation).

    Args:
        params: this rank's model parameters (plain tensors, not DTensors).
        sync_every, outer_lr, outer_momentum, compression, topk_fraction, inner,
            **inner_hyperparameters: as in MuLoCo.
        process_group: the workers' group (None: the default group).

    Example (every rank, under torchrun):
        opt = DistributedMuLoCo(model.parameters(), sync_every=30, lr=0.02)
        loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()

    References: Thérien, Huang, Rish, Belilovsky, "MuLoCo: Muon is a practical inner
    optimizer for DiLoCo", arXiv 2505.23725; Douillard et al., "DiLoCo: Distributed
    Low-Communication Training of Language Models", arXiv 2311.08455 (the outer loop).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        sync_every: int = 30,
        outer_lr: float = 0.7,
        outer_momentum: float = 0.9,
        compression: str | None = None,
        topk_fraction: float = 0.1,
        inner: str = "muon",
        process_group: Any = None,
        **inner_hyperparameters: Any,
    ) -> None:
        import torch.distributed as dist

        from steepest.distributed import broadcast_, configure

        who = "DistributedMuLoCo"
        if isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1:
            raise ValueError(f"{who}: sync_every={sync_every!r} must be an int >= 1")
        check_outer(who, outer_lr, outer_momentum, compression, topk_fraction)
        if isinstance(params, torch.Tensor):
            raise ValueError(f"{who}: params must be a non-empty list of tensors, not a Tensor")
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{who}: params must be a non-empty list of tensors")
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                f"{who}: torch.distributed is not initialized; call "
                "torch.distributed.init_process_group first (or use MuLoCo to simulate "
                "workers in one process)"
            )
        for p in self.params:
            if type(p).__name__ == "DTensor":
                raise ValueError(
                    f"{who}: a parameter of shape {tuple(p.shape)} is a DTensor; each worker "
                    "needs whole (plain tensor) parameters"
                )
        self.group = process_group
        self.sync_every = sync_every
        self.compression, self.topk_fraction = compression, topk_fraction
        with torch.no_grad():
            broadcast_([p.data for p in self.params], process_group)
        self.inner: Steepest = optimizer(inner, self.params, **inner_hyperparameters)
        # the ranks' weights differ between outer steps: each inner step stays on its rank
        configure(self.inner, share_replicated=False)
        with torch.no_grad():
            self.global_params = [p.detach().clone() for p in self.params]
        self.errors = [torch.zeros_like(p) for p in self.params]
        self.outer = torch.optim.SGD(
            self.global_params,
            lr=outer_lr,
            momentum=outer_momentum,
            nesterov=outer_momentum > 0,
        )
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The inner optimizer's zero_grad."""
        self.inner.zero_grad(set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One inner step of this rank's worker (``closure``, if given, computes the loss and
        calls backward), then, every ``sync_every`` steps, the outer step (a collective: all
        ranks must call step equally often). Returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.inner.step()
        self.steps += 1
        if self.steps % self.sync_every == 0:
            self._outer_step()
        return loss

    @torch.no_grad()
    def _outer_step(self) -> None:
        """x <- NesterovSGD(x, mean over ranks of compressed(x - x_k)); x_k <- x."""
        from steepest.distributed import all_reduce_mean

        sent = []
        for x, local, error in zip(self.global_params, self.params, self.errors, strict=True):
            sent.append(sent_delta(x, local, error, self.compression, self.topk_fraction))
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for part in sent:
            by_dtype.setdefault(part.dtype, []).append(part)
        for members in by_dtype.values():
            all_reduce_mean(members, self.group)
        for x, part in zip(self.global_params, sent, strict=True):
            x.grad = part.to(x.dtype)
        self.outer.step()
        for x in self.global_params:
            x.grad = None
        torch._foreach_copy_(self.params, self.global_params)
