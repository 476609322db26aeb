"""Sharded dualization: each rank dualizes its share of every stack; the step's only collectives.

Two layouts, detected per tensor:

* replicated (DDP: plain tensors under an initialized process group; or DTensors placed
  ``Replicate()`` on a 1-D mesh): every rank holds the whole direction. Each stack of K
  same-shape matrices is padded to a multiple of the world size W; rank r dualizes matrices
  [r c, (r + 1) c) with c = ceil(K / W), and an all-gather gives every rank all K results.
* sharded (FSDP2: DTensors placed ``(Shard(0),)`` on a 1-D mesh; HSDP: ``(Replicate(),
  Shard(0))`` on a 2-D mesh, exchanged within the shard sub-mesh): the K same-shape tensors of a
  stack are owned c = ceil(K / W) per rank; a first all-to-all sends every row shard to its
  tensor's owner, the owner dualizes whole tensors (matrix views and row blocks as in the
  single-process engine), and a second all-to-all returns each rank its rows. Rows split as
  ``torch.chunk`` splits them, so uneven shards (and empty ones) work.

Every stack's first exchange is started before any is computed, and each stack's return
exchange runs while the next stack is dualized (async collectives).

References: the megabatched orthogonalization of microsoft/dion (``megabatch_base.py``);
MuonBP, arXiv 2510.16981 (block-periodic mode).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Replicate, Shard

from steepest.matrices.stacking import map_matrices

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

    from steepest.matrices.views import View


class Stacks(Protocol):
    """What the dualizer reads of the optimizer's stacks hook (steepest.optim.batching.Stacks):
    its step count and counted stack functions."""

    steps: int

    def counted(
        self, fn: Callable[[torch.Tensor], torch.Tensor], *, block: bool = False
    ) -> Callable[[torch.Tensor], torch.Tensor]: ...


#: (kind, exchange group, replica group) of one direction; see ``_layout``.
_Layout = tuple[str, "ProcessGroup | None", "ProcessGroup | None"]
#: Maps a (K, m, n) stack to its dualized, scaled stack.
_StackFn = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["COMM_DTYPES", "ShardedDualizer", "configure", "shard_rows"]

#: Dtypes that a ShardedDualizer may send (None keeps each tensor's own dtype).
COMM_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def shard_rows(rows: int, world: int) -> list[int]:
    """Rows per rank when `rows` are split over `world` ranks as torch.chunk (FSDP2, DTensor)
    does: ceil(rows / world) each, the last ranks short or empty."""
    chunk = -(-rows // world)
    return [max(0, min(chunk, rows - j * chunk)) for j in range(world)]


class ShardedDualizer:
    """Dualizes stacks shared across ranks; set on an optimizer by ``configure``.

    Args:
        block_period: None (default: every step dualizes whole matrices, exactly as one process
            would) or P >= 1: MuonBP block-periodic mode, where steps 1, P + 1, 2P + 1, ...
            dualize whole matrices and the other steps dualize each rank's local row shard on
            its own (no communication; the shape rule then reads the shard's shape). Applies to
            sharded (FSDP2) tensors; replicated ones are always whole.
        comm_dtype: None (send each tensor's dtype, exact) or a dtype to send in, e.g.
            torch.bfloat16 (half the bytes; the result is rounded to it).
        check_replicas: debug: before and after dualizing, check that every rank agrees on the
            stack plan and that replicas hold the same directions and updates (RuntimeError
            otherwise). Costs two all-reduces of every replicated tensor.
        share_replicated: True (default) splits plain tensors' stacks across the ranks of
            ``process_group`` (DDP); False dualizes them on every rank alone (for runs where
            ranks do not hold the same replicated parameters).
        process_group: the group of replicated plain tensors; None is the default group.

    References: arXiv 2510.16981 (MuonBP); microsoft/dion ``megabatch_base.py``.
    """

    def __init__(
        self,
        *,
        block_period: int | None = None,
        comm_dtype: torch.dtype | None = None,
        check_replicas: bool = False,
        share_replicated: bool = True,
        process_group: ProcessGroup | None = None,
    ) -> None:
        who = type(self).__name__
        if block_period is not None and (
            isinstance(block_period, bool) or not isinstance(block_period, int) or block_period < 1
        ):
            raise ValueError(
                f"{who}: block_period={block_period!r}; need None (always whole matrices) "
                "or an int >= 1, e.g. 4"
            )
        if comm_dtype is not None and comm_dtype not in COMM_DTYPES:
            raise ValueError(
                f"{who}: comm_dtype={comm_dtype!r}; use None (exact) or one of "
                f"{[str(d) for d in COMM_DTYPES]}"
            )
        for key, flag in (
            ("check_replicas", check_replicas),
            ("share_replicated", share_replicated),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{who}: {key}={flag!r}; need True or False")
        self.block_period = block_period
        self.comm_dtype = comm_dtype
        self.check_replicas = check_replicas
        self.share_replicated = share_replicated
        self.process_group = process_group
        #: stacks started so far (matrices or tensors); rotates which rank owns a stack's first
        #: share, so single-tensor stacks spread over the ranks. Same on every rank.
        self.cursor = 0

    def is_block_step(self, step: int) -> bool:
        """True if step (1-based) dualizes local shards only (MuonBP mode)."""
        return self.block_period is not None and (step - 1) % self.block_period != 0

    def agree_on_index(
        self, index: int | None, count: int, tensors: Sequence[torch.Tensor]
    ) -> int | None:
        """The smallest of the ranks' indices (None = none), so that every rank decides alike.

        Only when ranks step together: some tensor is a DTensor or ``share_replicated``.
        """
        shared = self.share_replicated or any(isinstance(t, DTensor) for t in tensors)
        if not shared or not dist.is_initialized() or dist.get_world_size() == 1:
            return index
        device = tensors[0].device if tensors else None
        value = torch.tensor([count if index is None else index], dtype=torch.int64, device=device)
        dist.all_reduce(value, dist.ReduceOp.MIN)
        return None if int(value) == count else int(value)

    def map(
        self,
        stacks: Stacks,
        fn: _StackFn,
        tensors: list[torch.Tensor],
        view: View,
        blocks: Sequence[int] | None,
    ) -> list[torch.Tensor]:
        """The Stacks.map of the distributed case: one update per tensor, same type/placement.

        Args:
            stacks: the optimizer's ``steepest.optim.batching.Stacks`` (counters, step).
            fn: maps a (K, m, n) stack to its dualized, scaled stack.
            tensors: directions, plain tensors or DTensors.
            view, blocks: the group's matrix view (views.py).
        """
        out: list[torch.Tensor | None] = [None] * len(tensors)
        whole = stacks.counted(fn)
        layouts = [_layout(t) for t in tensors]
        if self.check_replicas:
            _check_plan(tensors, layouts)
        replicated: dict[Any, list[int]] = {}
        sharded: dict[tuple[int, tuple[int, ...], torch.dtype], list[int]] = {}
        for i, (t, (kind, group, _)) in enumerate(zip(tensors, layouts, strict=True)):
            if kind == "plain":
                use = (self.process_group or dist.group.WORLD) if self.share_replicated else "local"
                replicated.setdefault(use, []).append(i)
            elif kind == "replicate":
                replicated.setdefault(group if group is not None else "local", []).append(i)
            else:
                sharded.setdefault((id(group), tuple(t.shape), t.dtype), []).append(i)
        for group, members in replicated.items():
            local = [_local(tensors[i]) for i in members]
            if group == "local" or _world(group) == 1:
                results = map_matrices(whole, local, view, blocks)
            else:
                shared = _share_stack(whole, group, self.comm_dtype, self)
                results = map_matrices(shared, local, view, blocks)
            if self.check_replicas:
                check_group = None if group == "local" else group
                _check_same(local, check_group, "directions of replicated parameters")
                _check_same(results, check_group, "updates of replicated parameters")
            for i, r in zip(members, results, strict=True):
                out[i] = _like(tensors[i], r)
        if sharded:
            keys = list(sharded)
            lists = [[cast(DTensor, tensors[i]) for i in sharded[k]] for k in keys]
            if self.is_block_step(stacks.steps):
                block = stacks.counted(fn, block=True)
                updates = [[_block_update(block, t, view, blocks) for t in ts] for ts in lists]
            else:
                updates = _exchange_and_dualize(
                    lambda ts: map_matrices(whole, ts, view, blocks),
                    lists,
                    [layouts[sharded[k][0]][1] for k in keys],
                    self,
                )
            for k, ts, rs in zip(keys, lists, updates, strict=True):
                replica_group = layouts[sharded[k][0]][2]
                if self.check_replicas and replica_group is not None:
                    _check_same(rs, replica_group, "updates of HSDP replicas")
                for i, t, r in zip(sharded[k], ts, rs, strict=True):
                    out[i] = _like(t, r)
        return cast(list[torch.Tensor], out)  # every index is in one group


def configure(optimizer: object, **options: Any) -> ShardedDualizer:
    """Set a ShardedDualizer with these options on a steepest optimizer (once, before
    stepping); returns it. Without this call the optimizer shares work with default options
    as soon as it sees DTensors or an initialized process group.

    Args:
        optimizer: a ``steepest.Steepest`` (or preset such as ``steepest.Muon``).
        **options: ShardedDualizer's keyword arguments.
    """
    stacks = getattr(optimizer, "stacks", None)
    if stacks is None or not hasattr(stacks, "distributed"):
        raise TypeError(
            f"configure: optimizer is a {type(optimizer).__name__}; need a steepest optimizer "
            "(steepest.Steepest or a preset such as steepest.Muon)"
        )
    dualizer = ShardedDualizer(**options)
    stacks.distributed = dualizer
    return dualizer


def _layout(t: torch.Tensor) -> _Layout:
    """(kind, exchange group, replica group) of a direction: "plain", "replicate" or "shard"."""
    if not isinstance(t, DTensor):
        return "plain", None, None
    mesh, placements = t.device_mesh, tuple(t.placements)
    if all(isinstance(p, Replicate) for p in placements):
        return "replicate", (mesh.get_group(0) if mesh.ndim == 1 else None), None
    if placements[-1] == Shard(0) and all(isinstance(p, Replicate) for p in placements[:-1]):
        if mesh.ndim == 1:
            return "shard", mesh.get_group(0), None
        if mesh.ndim == 2:
            return "shard", mesh.get_group(1), mesh.get_group(0)
    raise ValueError(
        f"ShardedDualizer: a DTensor of shape {tuple(t.shape)} has placements {placements} on "
        f"a {mesh.ndim}-D mesh; supported: (Shard(0),) (FSDP2), (Replicate(), Shard(0)) "
        "(HSDP) and Replicate() placements"
    )


def _world(group: ProcessGroup | None) -> int:
    return dist.get_world_size(group)


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _like(t: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """`local` as a tensor of t's kind: a DTensor with t's mesh, placements, shape, stride."""
    if not isinstance(t, DTensor):
        return local
    return DTensor.from_local(
        local, t.device_mesh, t.placements, shape=t.shape, stride=t.stride(), run_check=False
    )


def _share_stack(
    fn: _StackFn,
    group: ProcessGroup | None,
    comm_dtype: torch.dtype | None,
    dualizer: ShardedDualizer,
) -> _StackFn:
    """fn on a replicated (K, m, n) stack: this rank's ceil(K / W) matrices, then all-gather.
    Share c goes to rank (c + first) % W, first rotating with the dualizer's cursor."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)

    def shared(X: torch.Tensor) -> torch.Tensor:
        first = dualizer.cursor % world
        dualizer.cursor += X.shape[0]
        share = -(-X.shape[0] // world)
        chunk = (rank - first) % world
        mine = X[chunk * share : (chunk + 1) * share]
        send = X.new_zeros((share, *X.shape[1:]), dtype=comm_dtype or X.dtype)
        if mine.shape[0]:
            send[: mine.shape[0]] = fn(mine)
        parts = [torch.empty_like(send) for _ in range(world)]
        dist.all_gather(parts, send, group=group)
        order = [parts[(c + first) % world] for c in range(world)]
        return torch.cat(order)[: X.shape[0]].to(X.dtype)

    return shared


def _exchange_and_dualize(
    fn_tensors: Callable[[list[torch.Tensor]], list[torch.Tensor]],
    stacks: list[list[DTensor]],
    groups: list[ProcessGroup | None],
    dualizer: ShardedDualizer,
) -> list[list[torch.Tensor]]:
    """Per stack of same-shape Shard(0) DTensors: all-to-all whole tensors to their owners,
    fn_tensors on the owned ones, all-to-all the rows back. Returns local update shards."""
    plans = []
    for ts, group in zip(stacks, groups, strict=True):
        first = dualizer.cursor % dist.get_world_size(group)
        dualizer.cursor += len(ts)
        plans.append(_Exchange(ts, group, dualizer.comm_dtype, first))
    for plan in plans:
        plan.send_shards()
    for plan in plans:
        plan.dualize_and_return(fn_tensors)
    return [plan.receive_updates() for plan in plans]


class _Exchange:
    """The two all-to-alls of one stack of K same-shape row-sharded tensors.

    Share j = tensors [j c, (j + 1) c) with c = ceil(K / W) (the stack padded to a multiple of
    W) is owned by rank (j + first) % W.
    """

    def __init__(
        self,
        tensors: list[DTensor],
        group: ProcessGroup | None,
        comm_dtype: torch.dtype | None,
        first: int = 0,
    ) -> None:
        self.group, self.comm_dtype = group, comm_dtype
        self.world, self.rank = dist.get_world_size(group), dist.get_rank(group)
        self.shape, self.dtype = tuple(tensors[0].shape), tensors[0].dtype
        self.locals = [t.to_local() for t in tensors]
        self.sizes = shard_rows(self.shape[0], self.world)
        self.offsets = [sum(self.sizes[:j]) for j in range(self.world)]
        self.rest = math.prod(self.shape[1:])
        share = -(-len(tensors) // self.world)
        self.owned = [range(0)] * self.world
        for j in range(self.world):
            stop = min(len(tensors), (j + 1) * share)
            self.owned[(j + first) % self.world] = range(min(j * share, stop), stop)
        for t in self.locals:
            if t.shape[0] != self.sizes[self.rank]:
                raise ValueError(
                    f"ShardedDualizer: rank {self.rank} holds {t.shape[0]} rows of a tensor of "
                    f"shape {self.shape}; expected {self.sizes[self.rank]} (torch.chunk "
                    "split of dim 0 as FSDP2 does)"
                )

    def _all_to_all(
        self, send: torch.Tensor, out_splits: list[int], in_splits: list[int]
    ) -> tuple[torch.Tensor, dist.Work]:
        recv = send.new_empty(sum(out_splits))
        work = dist.all_to_all_single(
            recv, send, out_splits, in_splits, group=self.group, async_op=True
        )
        return recv, work

    def _flat(self, parts: list[torch.Tensor]) -> torch.Tensor:
        dtype = self.comm_dtype or self.dtype
        if not parts:
            return torch.empty(0, dtype=dtype, device=self.locals[0].device)
        return torch.cat([p.reshape(-1) for p in parts]).to(dtype)

    def send_shards(self) -> None:
        """Start all-to-all 1: my rows of every tensor go to that tensor's owner."""
        r, n = self.rank, [len(o) for o in self.owned]
        send = self._flat([self.locals[k] for o in self.owned for k in o])
        in_splits = [n[j] * self.sizes[r] * self.rest for j in range(self.world)]
        out_splits = [n[r] * self.sizes[j] * self.rest for j in range(self.world)]
        self.recv, self.work = self._all_to_all(send, out_splits, in_splits)
        self.out_splits = out_splits

    def dualize_and_return(
        self, fn_tensors: Callable[[list[torch.Tensor]], list[torch.Tensor]]
    ) -> None:
        """Wait for my whole tensors, dualize them, start all-to-all 2 (rows to their ranks)."""
        self.work.wait()
        r, n = self.rank, [len(o) for o in self.owned]
        pieces = self.recv.split(self.out_splits)  # type: ignore[no-untyped-call]
        whole = torch.cat(
            [p.view(n[r], self.sizes[j], *self.shape[1:]) for j, p in enumerate(pieces)], dim=1
        ).to(self.dtype)
        updates = torch.stack(fn_tensors(list(whole.unbind(0)))) if n[r] else whole
        send = self._flat(
            [
                updates[:, self.offsets[j] : self.offsets[j] + self.sizes[j]]
                for j in range(self.world)
            ]
        )
        in_splits = [n[r] * self.sizes[j] * self.rest for j in range(self.world)]
        out_splits = [n[j] * self.sizes[r] * self.rest for j in range(self.world)]
        self.recv, self.work = self._all_to_all(send, out_splits, in_splits)
        self.out_splits = out_splits

    def receive_updates(self) -> list[torch.Tensor]:
        """Wait for all-to-all 2; my row shard of every tensor's update, in stack order."""
        self.work.wait()
        local_shape = (self.sizes[self.rank], *self.shape[1:])
        out: list[torch.Tensor | None] = [None] * len(self.locals)
        for j, piece in enumerate(self.recv.split(self.out_splits)):  # type: ignore[no-untyped-call]
            rows = piece.view(len(self.owned[j]), *local_shape).to(self.dtype).unbind(0)
            for k, update in zip(self.owned[j], rows, strict=True):
                out[k] = update
        return cast(list[torch.Tensor], out)  # every tensor has one owner


def _block_update(
    fn: _StackFn, t: DTensor, view: View, blocks: Sequence[int] | None
) -> torch.Tensor:
    """MuonBP block step: fn on this rank's row shard read as its own matrices."""
    local = t.to_local()
    if local.numel() == 0:
        return torch.zeros_like(local)
    if isinstance(view, tuple):
        raise ValueError(
            f"ShardedDualizer: block_period does not support matrix_view={view!r} (a reshape "
            "of the whole tensor); use 'auto', 'flatten' or 'batch'"
        )
    if view == "transposed" and blocks is not None:
        raise ValueError(
            f"ShardedDualizer: block_period does not support blocks={list(blocks)!r} with "
            "matrix_view='transposed' (the blocks split columns of the stored, row-sharded "
            "tensor); drop blocks or block_period"
        )
    local_blocks: list[int] | None = None
    if blocks is not None:
        _, group, _ = _layout(t)
        sizes = shard_rows(t.shape[0], dist.get_world_size(group))
        start = sum(sizes[: dist.get_rank(group)])
        stop, edge = start + local.shape[0], 0
        local_blocks = []
        for b in blocks:
            overlap = min(edge + b, stop) - max(edge, start)
            if overlap > 0:
                local_blocks.append(overlap)
            edge += b
    return map_matrices(fn, [local], view, local_blocks)[0]


def _check_plan(tensors: Sequence[torch.Tensor], layouts: Sequence[_Layout]) -> None:
    """Raise unless every rank of the default group dualizes the same list of tensors."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return
    plan = [
        (kind, tuple(t.shape), str(t.dtype))
        for t, (kind, _, _) in zip(tensors, layouts, strict=True)
    ]
    plans: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(plans, plan)
    for rank, other in enumerate(plans):
        if other != plan:
            raise RuntimeError(
                f"ShardedDualizer: rank {rank} dualizes {other} but rank {dist.get_rank()} "
                f"dualizes {plan}; every rank must step the same parameters"
            )


def _check_same(tensors: list[torch.Tensor], group: ProcessGroup | None, what: str) -> None:
    """Raise RuntimeError unless the tensors are bitwise equal on every rank of group."""
    if group is None or not tensors or dist.get_world_size(group) == 1:
        return
    flat = torch.cat([t.reshape(-1).double() for t in tensors])
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, dist.ReduceOp.MAX, group=group)
    dist.all_reduce(low, dist.ReduceOp.MIN, group=group)
    if not torch.equal(high, low):
        gap = float((high - low).abs().max())
        raise RuntimeError(
            f"ShardedDualizer: {what} differ across ranks by up to {gap:.3g}; are gradients "
            "synchronized (DDP / FSDP2) and the same parameters stepped on every rank?"
        )
