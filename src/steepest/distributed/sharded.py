"""Sharded dualization: each rank dualizes its share of every stack; the step's only collectives.

Two layouts, detected per tensor:

* replicated (DDP: plain tensors under an initialized process group; or DTensors placed
  ``Replicate()`` on a 1-D mesh): every rank holds the whole direction. The matrices of each
  stack of same-shape matrices are assigned to ranks by the plan (balance.py); each rank
  dualizes its matrices and an all-gather gives every rank all results.
* sharded (FSDP2: DTensors placed ``(Shard(0),)`` on a 1-D mesh; HSDP: ``(Replicate(),
  Shard(0))`` on a 2-D mesh, exchanged within the shard sub-mesh): the plan assigns each
  tensor of a stack of same-shape tensors to one owner; a first all-to-all sends every row
  shard to its tensor's owner, the owner dualizes whole tensors (matrix views and row blocks
  as in the single-process engine), and a second all-to-all returns each rank its rows. Rows
  split as ``torch.chunk`` splits them, so uneven shards (and empty ones) work.

The plan (balance.py) gives each matrix or tensor to the rank with the least polar-iteration
flops so far (largest first), continuing over the groups of one step. Collectives are async:
stack i + 1's inputs (all-to-all) or stack i's results (all-gather) travel while a stack is
dualized; on CUDA they are packed and issued from a side stream (``_Lane``) ordered by
stream waits.

References: the megabatched orthogonalization of microsoft/dion (``megabatch_base.py``);
MuonBP, arXiv 2510.16981 (block-periodic mode).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Replicate, Shard

from steepest.matrices.kept import KeptForTensors
from steepest.matrices.stacking import map_matrices
from steepest.matrices.views import join_matrices, local_part, matrix_shape, split_matrices

from .balance import RankPlan, balance, polar_flops

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

    from steepest.matrices.views import View


class Stacks(Protocol):
    """What the dualizer reads of the optimizer's stacks hook (steepest.optim.batching.Stacks):
    its step count and counted stack functions."""

    steps: int

    def counted(
        self, fn: Callable[..., torch.Tensor], *, block: bool = False
    ) -> Callable[..., torch.Tensor]: ...


#: (kind, exchange group, replica group) of one direction; see ``_layout``.
_Layout = tuple[str, "ProcessGroup | None", "ProcessGroup | None"]
#: (layouts, replicated indices by group, sharded indices by kind); see ``_grouped``.
_Grouping = tuple[
    list[_Layout],
    dict[Any, list[int]],
    dict[tuple[int, tuple[int, ...], torch.dtype, torch.dtype], list[int]],
]
#: Maps a (K, m, n) stack to its dualized, scaled stack; ``map_local`` with ``squares``
#: calls it as fn(X, squares), with the (K,) float64 squared Frobenius norms of X's matrices.
_StackFn = Callable[..., torch.Tensor]
#: shared_row_scales or a compilation of it
_RowScalesFn = Callable[..., tuple[torch.Tensor, ...]]


__all__ = ["COMM_DTYPES", "ShardedDualizer", "configure", "shard_rows", "shared_row_scales"]

#: Dtypes that a ShardedDualizer may send (None keeps each tensor's own dtype).
COMM_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def shard_rows(rows: int, world: int) -> list[int]:
    """Rows per rank when `rows` are split over `world` ranks as torch.chunk (FSDP2, DTensor)
    does: ceil(rows / world) each, the last ranks short or empty."""
    chunk = -(-rows // world)
    return [max(0, min(chunk, rows - j * chunk)) for j in range(world)]


def shared_row_scales(
    table: torch.Tensor, sizes: Sequence[int], owned: tuple[int, int], prescales: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The shared prescales of a stack of K row-sharded matrices, from the (W, K, 2) float64
    table of every rank's (squared norm q, scale a) of its row part (rows split by ``sizes``;
    a part stored times a has squared norm q; a = 0 marks a zero part). Each matrix's common
    scale c is the smallest a of its parts (powers of two, so the factors c / a <= 1 are
    exact); the next step's prescale is 2^-e for the whole norm f 2^e, f in [1/2, 1) (0 for a
    zero or non-finite norm: each part then takes its own), written into ``prescales`` (this
    rank's (K,) float32 entries). Returns, for the owned matrices ``owned`` = (start, stop):
    their squared norms at the common scale, their next prescales and their (n, rows)
    float32 row factors. The same arithmetic on the same table on every rank, so every rank
    holding rows of a matrix sets one value; map_local's ``row_scales`` (the fast path passes
    it compiled and records it per stack)."""
    held = [j for j, size in enumerate(sizes) if size]
    if len(held) < len(sizes):
        table = table[held]
    q, a = table.unbind(-1)
    stored = a > 0
    common = torch.where(stored, a, math.inf).amin(dim=0)
    factor = torch.where(stored, common / a, 1.0)  # (parts, K)
    squares = (q * factor.square()).sum(dim=0)
    norms = torch.where(stored, q / a.square(), 0.0).sum(dim=0).sqrt()
    _, exponent = torch.frexp(norms)
    exact = torch.ldexp(torch.ones_like(norms), -exponent.clamp(-126, 126))
    following = torch.where((norms > 0) & norms.isfinite(), exact, 0.0)
    prescales.copy_(following)
    start, stop = owned
    parts = factor[:, start:stop].to(torch.float32).T
    rows = [parts[:, j : j + 1].expand(-1, sizes[h]) for j, h in enumerate(held)]
    return squares[start:stop], following[start:stop], torch.cat(rows, dim=1)


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
        #: key (the fast path's param group index) -> the rank plans of its last step
        #: (steepest.distributed.balance.RankPlan; shown by ``fast_path_report``)
        self.plans: dict[object, list[RankPlan]] = {}
        self._step = -1
        #: flops planned so far this step per process group (the plans of later groups of
        #: the step continue from them, so small groups spread over the ranks)
        self._loads: dict[int, list[float]] = {}
        #: (group, world, costs, start loads) -> its plan (``_plan``)
        self._plans: dict[object, RankPlan] = {}
        #: key -> a received or stacked tensor kept across steps (``_buffer``)
        self._buffers: dict[object, torch.Tensor] = {}
        #: key -> the grouping of its layout tensors with their direction dtypes (``_grouped``)
        self._groupings: KeptForTensors[_Grouping] = KeptForTensors()
        #: (device, compute streams) -> the lane of its collectives (``_lane``)
        self._lanes: dict[tuple[torch.device, int], _Lane] = {}
        #: key -> the place (shape, strides, offset) of its tensors' stacked view
        #: (``_stack_tensors``)
        self._stacked: KeptForTensors[tuple[tuple[int, ...], tuple[int, ...], int]] = (
            KeptForTensors()
        )
        #: process group -> (its size, this rank in it) (``_world_and_rank``)
        self._ranks: dict[object, tuple[int, int]] = {}

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

    def agree_on_flag(self, flag: torch.Tensor, tensors: Sequence[torch.Tensor]) -> None:
        """flag (a 0-dim bool tensor, this rank's finiteness verdict) := every rank's flag
        is True: a MIN all-reduce on the flag's device, without a host synchronisation.

        Only when ranks step together, as ``agree_on_index``."""
        shared = self.share_replicated or any(isinstance(t, DTensor) for t in tensors)
        if not shared or not dist.is_initialized() or dist.get_world_size() == 1:
            return
        value = flag.to(torch.int32)
        dist.all_reduce(value, dist.ReduceOp.MIN)
        flag.copy_(value.bool())

    def map(
        self,
        stacks: Stacks,
        fn: _StackFn,
        tensors: list[torch.Tensor],
        view: View,
        blocks: Sequence[int] | None,
        key: object = None,
    ) -> list[torch.Tensor]:
        """The Stacks.map of the distributed case: one update per tensor, same type/placement.

        Args:
            stacks: the optimizer's ``steepest.optim.batching.Stacks`` (counters, step).
            fn: maps a (K, m, n) stack to its dualized, scaled stack.
            tensors: directions, plain tensors or DTensors.
            view, blocks: the group's matrix view (views.py).
            key: names the plan in ``plans`` (the fast path passes its param group index).
        """
        local = [local_part(t) for t in tensors]
        updates = self.map_local(stacks, fn, local, tensors, view, blocks, key)
        return [_like(t, u) for t, u in zip(tensors, updates, strict=True)]

    def map_local(
        self,
        stacks: Stacks,
        fn: _StackFn,
        directions: list[torch.Tensor],
        layouts_of: Sequence[torch.Tensor],
        view: View,
        blocks: Sequence[int] | None,
        key: object = None,
        reuse: bool = False,
        streams: int = 1,
        squares: Sequence[torch.Tensor | None] | None = None,
        update_dtypes: Sequence[torch.dtype] | None = None,
        scales: Sequence[torch.Tensor | None] | None = None,
        row_scales: _RowScalesFn = shared_row_scales,
    ) -> list[torch.Tensor]:
        """``map`` on local tensors: ``directions[i]`` is this rank's part (whole when
        replicated, its rows under FSDP2) of a tensor laid out as ``layouts_of[i]`` (the
        parameter, a plain tensor or DTensor); returns this rank's part of each update, a
        plain tensor. The fast path's step calls this between its local stages, so the
        collectives stay here, outside its compiled and recorded functions.

        Directions that lie back to back in one buffer (a same-shape stack of the fast
        path's stages 1-2) are exchanged and dualized as that stack, without copying it.
        ``reuse`` (with a ``key``): the received stacks, and so the updates returned, are
        tensors kept for this key and overwritten by its next call (the fast path's step,
        whose recordings then find them where they recorded them). ``streams``: on CUDA,
        stack i is orthogonalized on compute stream i % streams (1: on the current stream),
        so that stacks overlap. ``squares``: per direction None or the float64 squared
        Frobenius norms of its local matrices under the default view (one per matrix; a row
        shard's part of its matrix's): for the tensors whose directions all come with them
        (default view, no row blocks), they travel with the directions and an owner calls
        fn(X, squares of X's matrices) instead of fn(X). ``update_dtypes``: per direction,
        the dtype fn returns its update in, which travels in it (unless ``comm_dtype``) and
        comes back in it; default its layout's (the parameter's). ``scales``: per direction
        None or a view of its matrices' entries of the fused stage 1's prescale, which
        travel with its squares. For a tensor that ``shares_whole``: the next step's
        prescale, and an owner calls fn(X, squares, scales). For one that
        ``shares_row_scale``: the power of two each rank's rows were stored times; every rank
        of the exchange gets every part's squares and scale, the owner brings its stack's
        parts to one scale per matrix and calls fn(X, squares, next prescales, row factors),
        and every rank sets its views to the next step's prescale, from the whole matrix's
        norm, the same on every rank that holds rows of it (``row_scales``:
        ``shared_row_scales`` or a compilation of it).
        """
        out: list[torch.Tensor | None] = [None] * len(directions)
        with_squares = squares is not None and view == "auto" and blocks is None
        whole = stacks.counted(fn)
        layouts, replicated, sharded = self._grouped(directions, layouts_of, key if reuse else None)
        if self.check_replicas:
            _check_plan(list(layouts_of), layouts)
        if stacks.steps != self._step:  # a new step: the plans start from idle ranks
            self._step, self._loads = stacks.steps, {}
        plans: list[RankPlan] = []
        for group, members in replicated.items():
            local = [directions[i] for i in members]
            if group == "local":
                results = map_matrices(whole, local, view, blocks)
            else:
                dtypes = [
                    update_dtypes[i] if update_dtypes is not None else layouts_of[i].dtype
                    for i in members
                ]
                tag = (key, "replicated", id(group)) if reuse and key is not None else None
                known = _all_known(squares, members) if with_squares else None
                scaled = [scales[i] for i in members] if known and scales is not None else None
                results = self._replicated(
                    whole, local, dtypes, view, blocks, group, plans, tag, streams, known, scaled
                )
            if self.check_replicas:
                check_group = None if group == "local" else group
                _check_same(local, check_group, "directions of replicated parameters")
                _check_same(results, check_group, "updates of replicated parameters")
            for i, r in zip(members, results, strict=True):
                out[i] = r
        if sharded:
            keys = list(sharded)
            lists = [[directions[i] for i in sharded[k]] for k in keys]
            likes = [[cast(DTensor, layouts_of[i]) for i in sharded[k]] for k in keys]
            if self.is_block_step(stacks.steps):
                block = stacks.counted(fn, block=True)
                updates = [
                    [_block_update(block, d, t, view, blocks) for d, t in zip(ds, ts, strict=True)]
                    for ds, ts in zip(lists, likes, strict=True)
                ]
            else:
                updates = self._sharded(
                    whole,
                    lists,
                    likes,
                    [layouts[sharded[k][0]][1] for k in keys],
                    view,
                    blocks,
                    plans,
                    (key, "sharded") if reuse and key is not None else None,
                    streams,
                    [_all_known(squares, sharded[k]) if with_squares else None for k in keys],
                    [
                        update_dtypes[sharded[k][0]]
                        if update_dtypes is not None
                        else layouts_of[sharded[k][0]].dtype
                        for k in keys
                    ],
                    [_all_known(scales, sharded[k]) if with_squares else None for k in keys],
                    row_scales,
                )
            for k, rs in zip(keys, updates, strict=True):
                replica_group = layouts[sharded[k][0]][2]
                if self.check_replicas and replica_group is not None:
                    _check_same(rs, replica_group, "updates of HSDP replicas")
                for i, r in zip(sharded[k], rs, strict=True):
                    out[i] = r
        if key is not None and plans:
            self.plans[key] = plans
        return cast(list[torch.Tensor], out)  # every index is in one group

    def shares_whole(self, t: torch.Tensor) -> bool:
        """Whether map_local dualizes `t` (a parameter) as a replicated tensor shared across
        ranks: each rank holds it whole and the owner of each matrix is planned across
        the group, so values of whole matrices kept by every rank (a prescale) can go
        with its directions (``scales``)."""
        kind, group, _ = _layout(t)
        if kind == "plain":
            return self.share_replicated
        return kind == "replicate" and group is not None

    def shards_rows(self, t: torch.Tensor) -> bool:
        """Whether map_local exchanges `t` (a parameter) by rows: a Shard(0) DTensor (FSDP2,
        HSDP) whose rows the ranks hold."""
        return _layout(t)[0] == "shard"

    def shares_row_scale(self, t: torch.Tensor) -> bool:
        """Whether `t` (a parameter) is one matrix whose rows are sharded over ranks (a
        Shard(0) DTensor that is not 3-D), so that one power of two per matrix, the same on
        every rank, can scale its row parts (map_local's ``scales``)."""
        return self.shards_rows(t) and t.ndim != 3

    def _world_and_rank(self, group: ProcessGroup | None) -> tuple[int, int]:
        """The size of `group` (None: the default group) and this rank in it, looked up once
        per group (torch.distributed's lookups cost the host microseconds per call)."""
        key = group if group is not None else dist.group.WORLD
        known = self._ranks.get(key)
        if known is None:
            known = self._ranks[key] = (dist.get_world_size(group), dist.get_rank(group))
        return known

    def _grouped(
        self, directions: list[torch.Tensor], layouts_of: Sequence[torch.Tensor], key: object
    ) -> _Grouping:
        """Each tensor's layout, and the indices of the replicated tensors by the group they
        share (or "local") and of the sharded ones by (exchange group, shape, direction and
        update dtype). Kept for `key` (not None) while the same layout tensors (the fast
        path's parameters) and direction dtypes come again."""
        dtypes = tuple(d.dtype for d in directions)
        kept = self._groupings.get(key, layouts_of, dtypes) if key is not None else None
        if kept is not None:
            return kept
        layouts = [_layout(t) for t in layouts_of]
        # an update has its layout's dtype (the parameter's, or the direction's in ``map``),
        # whichever dtype the exchange and the dualization used: the same on every rank
        replicated: dict[Any, list[int]] = {}
        sharded: dict[tuple[int, tuple[int, ...], torch.dtype, torch.dtype], list[int]] = {}
        for i, (t, (kind, group, _)) in enumerate(zip(layouts_of, layouts, strict=True)):
            if kind == "plain":
                use = (self.process_group or dist.group.WORLD) if self.share_replicated else "local"
                replicated.setdefault(use, []).append(i)
            elif kind == "replicate":
                replicated.setdefault(group if group is not None else "local", []).append(i)
            else:
                sharded.setdefault((id(group), tuple(t.shape), dtypes[i], t.dtype), []).append(i)
        grouping = (layouts, replicated, sharded)
        if key is not None:
            self._groupings.put(key, layouts_of, grouping, dtypes)
        return grouping

    def _lane(self, device: torch.device, streams: int) -> _Lane:
        """The lane of the collectives on device with `streams` compute streams (made once:
        on CUDA it owns its streams)."""
        lane = self._lanes.get((device, streams))
        if lane is None:
            lane = self._lanes[device, streams] = _Lane(device, streams)
        return lane

    def _plan(self, costs: list[list[float]], group: ProcessGroup | None) -> RankPlan:
        """The LPT plan of these items over group's ranks, continuing this step's loads (the
        same costs and loads give the same plan: it is made once and kept)."""
        world, _ = self._world_and_rank(group)
        start = tuple(self._loads.get(id(group), [0.0] * world))
        key = (id(group), world, tuple(map(tuple, costs)), start)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = balance(costs, world, start)
        self._loads[id(group)] = list(plan.totals)
        return plan

    def _buffer(
        self, key: object, shape: Sequence[int], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """An uninitialized tensor kept for `key` while its shape, dtype and device stay
        (None key: a new one). Received and gathered stacks go into the same tensors every
        step, so a recording that reads them finds them where it recorded them (no copy)."""
        if key is None:
            return torch.empty(tuple(shape), dtype=dtype, device=device)
        buffer = self._buffers.get(key)
        if (
            buffer is None
            or buffer.shape != tuple(shape)
            or buffer.dtype != dtype
            or buffer.device != device
        ):
            buffer = self._buffers[key] = torch.empty(tuple(shape), dtype=dtype, device=device)
        return buffer

    def _replicated(
        self,
        fn: _StackFn,
        tensors: list[torch.Tensor],
        dtypes: list[torch.dtype],
        view: View,
        blocks: Sequence[int] | None,
        group: ProcessGroup | None,
        plans: list[RankPlan],
        reuse: object,
        streams: int,
        squares: list[torch.Tensor] | None = None,
        scales: list[torch.Tensor | None] | None = None,
    ) -> list[torch.Tensor]:
        """fn on every stack of replicated tensors' matrices: each rank its planned matrices
        (a consecutive range of the stack), then an all-gather of the results into the stack
        of updates (tensor i's update in ``dtypes[i]``, sent in it unless ``comm_dtype``).
        ``squares``: tensor i's matrices' squared norms (reshaped views only), handed to fn
        with its range; so are ``scales`` (tensor i's matrices' prescales or None), with
        the squares of stacks whose every tensor has them.
        The all-gather of stack i runs while stack i + 1 is dualized (explicit order:
        compute i, issue gather i, compute i + 1, ...; then wait for every gather in order).
        ``reuse``: None, or a key under which the stacks' buffers are kept across steps."""
        world, rank = self._world_and_rank(group)
        # each tensor's matrices as one (k, m, n) view where the view is a reshape
        reshaped = blocks is None and view != "transposed"
        if reshaped:  # each tensor's matrices are a (k, m, n) reshape of it
            pieces = [[t] for t in tensors]
            items = tensors
            units = [matrix_shape(t.shape, view)[-2:] for t in tensors]
        else:
            pieces = [split_matrices(t, view, blocks) for t in tensors]
            items = [m.reshape(-1, *m.shape[-2:]) for ms in pieces for m in ms]
            units = [X.shape[-2:] for X in items]
        sizes = [X.numel() // math.prod(u) for X, u in zip(items, units, strict=True)]
        out_dtypes = [d for ms, d in zip(pieces, dtypes, strict=True) for _ in ms]
        by_shape: dict[tuple[tuple[int, ...], torch.dtype, torch.dtype], list[int]] = {}
        for i, (X, u, d) in enumerate(zip(items, units, out_dtypes, strict=True)):
            by_shape.setdefault((tuple(u), X.dtype, d), []).append(i)
        stacks, known = [], []
        scaled: list[torch.Tensor | None] = []
        for s, ((unit, _, _), members) in enumerate(by_shape.items()):
            tag = None if reuse is None else (reuse, "stack", s)
            if reshaped:  # kept place: the same tensors come again every step
                stacks.append(self._stack_tensors([items[i] for i in members], tag, unit))
            else:
                stacks.append(self._stack([items[i] for i in members], tag))
            if squares is not None and reshaped:
                tag = None if reuse is None else (reuse, "squares", s)
                known.append(self._stack_tensors([squares[i] for i in members], tag, ()))
            given = _all_known(scales, members) if squares is not None and reshaped else None
            tag = None if reuse is None else (reuse, "scales", s)
            scaled.append(None if given is None else self._stack_tensors(given, tag, ()))
        plan = self._plan([[polar_flops(*X.shape[-2:])] * X.shape[0] for X in stacks], group)
        plans.append(plan)
        lane = self._lane(items[0].device, streams)
        gathers = []
        for s, (X, (_, _, d)) in enumerate(zip(stacks, by_shape, strict=True)):
            counts = [len(plan.mine(s, r)) for r in range(world)]
            start = sum(counts[:rank])
            tag = None if reuse is None else (reuse, "gathered", s)
            dtype = self.comm_dtype or d
            owned = slice(start, start + counts[rank])
            with lane.computing(s):
                if not counts[rank]:
                    Y = X[:0].to(d)
                elif known and scaled[s] is not None:
                    scale = cast(torch.Tensor, scaled[s])
                    Y = fn(X[owned], known[s][owned], scale[owned]).to(d)
                elif known:
                    Y = fn(X[owned], known[s][owned]).to(d)
                else:
                    Y = fn(X[owned]).to(d)
                gathers.append(
                    lane.all_gather(
                        functools.partial(self._buffer, tag, X.shape, dtype, X.device),
                        Y,
                        counts,
                        group,
                        dtype,
                    )
                )
        ordered: list[torch.Tensor | None] = [None] * len(items)
        for ((_, _, out_dtype), stack_members), gather in zip(
            by_shape.items(), gathers, strict=True
        ):
            results = lane.wait(gather).to(out_dtype)
            split = [sizes[i] for i in stack_members]
            parts: list[torch.Tensor] = list(results.split(split))  # type: ignore[no-untyped-call]
            for i, part in zip(stack_members, parts, strict=True):
                ordered[i] = part
        if reshaped:
            updates = zip(ordered, tensors, strict=True)
            return [cast(torch.Tensor, u).reshape(t.shape) for u, t in updates]
        out, start = [], 0
        for t, ms in zip(tensors, pieces, strict=True):
            mine = [
                cast(torch.Tensor, ordered[start + j]).reshape(m.shape) for j, m in enumerate(ms)
            ]
            out.append(join_matrices(mine, t.shape, view))
            start += len(ms)
        return out

    def _stack_tensors(
        self, tensors: Sequence[torch.Tensor], key: object, unit: Sequence[int] | None = None
    ) -> torch.Tensor:
        """The tensors' items of shape `unit` concatenated along dim 0 (``_stack`` of their
        (-1, *unit) views); unit None: the same-shape tensors stacked along a new dim 0.
        Where the result is a view and `key` names it, the view's place is kept while the
        same tensor objects come again (the fast path's recorded stages 1-2 return theirs
        every step), so that a step rebuilds it with one call instead of checking every
        tensor's place."""
        place = self._stacked.get(key, tensors) if key is not None else None
        if place is not None:
            return tensors[0].as_strided(*place)
        if unit is None:
            parts = [t.reshape(1, *t.shape) for t in tensors]
        else:
            parts = [t.reshape(-1, *unit) for t in tensors]
        view = _consecutive(parts)
        if view is None:
            return self._concatenated(parts, key)
        if key is not None:
            place = (tuple(view.shape), view.stride(), int(view.storage_offset()))
            self._stacked.put(key, tensors, place)
        return view

    def _stack(self, parts: list[torch.Tensor], key: object) -> torch.Tensor:
        """The (k_i, ...) parts concatenated along dim 0: a view where they lie back to back
        in one contiguous buffer (the fast path's stages 1-2 hand over their stacks so),
        else one copy (into the buffer kept for `key`)."""
        view = _consecutive(parts)
        return view if view is not None else self._concatenated(parts, key)

    def _concatenated(self, parts: list[torch.Tensor], key: object) -> torch.Tensor:
        """The (k_i, ...) parts copied into one (sum k_i, ...) tensor, the buffer kept for
        `key`."""
        shape = (sum(p.shape[0] for p in parts), *parts[0].shape[1:])
        out = self._buffer(key, shape, parts[0].dtype, parts[0].device)
        return torch.cat(parts, out=out)

    def _sharded(
        self,
        fn_stack: _StackFn,
        stacks: list[list[torch.Tensor]],
        likes: list[list[DTensor]],
        groups: list[ProcessGroup | None],
        view: View,
        blocks: Sequence[int] | None,
        plans: list[RankPlan],
        reuse: object,
        streams: int,
        squares: list[list[torch.Tensor] | None],
        update_dtypes: list[torch.dtype],
        scales: list[list[torch.Tensor] | None],
        row_scales: _RowScalesFn,
    ) -> list[list[torch.Tensor]]:
        """Per stack of same-shape Shard(0) tensors (local rows): all-to-all whole tensors to
        their planned owners, fn_stack on each owner's (k, *shape) stack of them, all-to-all
        the rows back. ``squares[s]``: stack s's local squared norms (or None), which go to
        the owners with the rows; ``update_dtypes[s]``: the dtype of its updates;
        ``scales[s]``: None or its row parts' shared prescales (map_local's ``scales``).

        Explicit order: issue exchange 1 of stack 0; then for each stack i: issue exchange 1
        of stack i + 1, wait for exchange 1 of stack i, dualize it, issue its exchange 2;
        finally wait for every exchange 2. So stack i + 1's inputs travel while stack i is
        dualized, and stack i's results travel while stack i + 1 is."""
        per_group: dict[int, list[int]] = {}
        for s, group in enumerate(groups):
            per_group.setdefault(id(group), []).append(s)
        counts: list[list[int]] = [[] for _ in stacks]
        for members in per_group.values():
            group = groups[members[0]]
            costs = [
                [_tensor_flops(likes[s][0].shape, view, blocks)] * len(stacks[s]) for s in members
            ]
            plan = self._plan(costs, group)
            plans.append(plan)
            for j, s in enumerate(members):
                counts[s] = [len(plan.mine(j, r)) for r in range(len(plan.loads))]
        lane = self._lane(stacks[0][0].device, streams)
        exchanges = [
            _Exchange(
                self,
                ds,
                likes[s][0],
                group,
                counts[s],
                lane,
                None if reuse is None else (reuse, s),
                squares[s],
                update_dtypes[s],
                scales[s] if squares[s] is not None else None,
                row_scales,
            )
            for s, (ds, group) in enumerate(zip(stacks, groups, strict=True))
        ]
        if exchanges:
            exchanges[0].send_shards()
        for i, exchange in enumerate(exchanges):
            if i + 1 < len(exchanges):
                exchanges[i + 1].send_shards()
            with lane.computing(i):
                exchange.dualize_and_return(
                    lambda X, *known: _map_stack(fn_stack, X, view, blocks, *known)
                )
        return [exchange.receive_updates() for exchange in exchanges]


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


def _like(t: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """`local` as a tensor of t's kind: a DTensor with t's mesh, placements, shape, stride."""
    if not isinstance(t, DTensor):
        return local
    return DTensor.from_local(
        local, t.device_mesh, t.placements, shape=t.shape, stride=t.stride(), run_check=False
    )


class _Exchange:
    """The two all-to-alls of one stack of K same-shape row-sharded tensors; rank j owns
    ``counts[j]`` consecutive tensors of the stack (ranks in order) and dualizes them whole.
    Directions travel in their dtype and updates in ``update_dtype`` (default ``like``'s, the
    parameter's), each unless the dualizer's ``comm_dtype``. Buffers: a stack of the local
    rows (a view when they lie back to back), the owner's received rows, whole stack and
    update rows, and the received update rows, which in stack order are this rank's
    (K, rows, ...) stack of updates; kept under ``reuse`` across steps (None: new each
    step). ``squares``: the local matrices'
    squared Frobenius norms of each tensor (default view), sent to the owner with the rows:
    a 3-D tensor's rows are whole matrices, whose values the owner puts in order; another
    tensor is one matrix, whose row parts' values the owner adds. ``scales`` (with squares,
    tensors of one matrix): each tensor's row part was stored times this power of two (a
    view of a shared prescale); then every rank gets every part's squares and scale and
    ``row_scales`` (``shared_row_scales`` or its compilation) sets the views to the next
    step's prescale."""

    def __init__(
        self,
        dualizer: ShardedDualizer,
        locals_: list[torch.Tensor],
        like: torch.Tensor,
        group: ProcessGroup | None,
        counts: list[int],
        lane: _Lane,
        reuse: object,
        squares: list[torch.Tensor] | None = None,
        update_dtype: torch.dtype | None = None,
        scales: list[torch.Tensor] | None = None,
        row_scales: _RowScalesFn = shared_row_scales,
    ) -> None:
        self.dualizer, self.group, self.lane = dualizer, group, lane
        self.squares, self.scales, self.row_scales = squares, scales, row_scales
        self.comm_dtype = dualizer.comm_dtype
        self.world, self.rank = dualizer._world_and_rank(group)
        self.shape, self.dtype = tuple(like.shape), locals_[0].dtype
        self.update_dtype = like.dtype if update_dtype is None else update_dtype
        self.locals = locals_
        self.device = locals_[0].device
        self.sizes = shard_rows(self.shape[0], self.world)
        self.offsets = [sum(self.sizes[:j]) for j in range(self.world)]
        self.rest = math.prod(self.shape[1:])
        self.counts = counts
        self.reuse = reuse
        for t in self.locals:
            if t.shape[0] != self.sizes[self.rank]:
                raise ValueError(
                    f"ShardedDualizer: rank {self.rank} holds {t.shape[0]} rows of a tensor of "
                    f"shape {self.shape}; expected {self.sizes[self.rank]} (torch.chunk "
                    "split of dim 0 as FSDP2 does)"
                )

    def _buffer(self, name: str, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        key = None if self.reuse is None else (self.reuse, name)
        return self.dualizer._buffer(key, shape, dtype, self.device)

    def send_shards(self) -> None:
        """Issue all-to-all 1: my rows of every tensor go to that tensor's owner (the stack
        of my rows, in stack order, is the send buffer)."""
        r, n = self.rank, self.counts
        in_splits = [n[j] * self.sizes[r] * self.rest for j in range(self.world)]
        out_splits = [n[r] * self.sizes[j] * self.rest for j in range(self.world)]
        dtype = self.comm_dtype or self.dtype
        stack = self.dualizer._stack_tensors(self.locals, self._key("send directions"))
        self.pending = self.lane.all_to_all(
            stack.reshape(-1).to(dtype),
            lambda: self._buffer("recv directions", [sum(out_splits)], dtype),
            out_splits,
            in_splits,
            self.group,
        )
        self.out_splits = out_splits
        if self.scales is not None:
            self._send_table()
        elif self.squares is not None:
            self._send_squares()

    def _send_table(self) -> None:
        """Issue the all-gather of every tensor's (squared norm, scale) of its row part
        (float64, (K, 2) per rank), as the rows go."""
        stack = self.dualizer._stack_tensors
        squares = stack(cast(list[torch.Tensor], self.squares), self._key("send squares"))
        #: this rank's scales as one (k,) tensor: a view of its prescale entries where they lie
        #: back to back (the next ones are written into it), else a copy
        self.scale_stack = stack(cast(list[torch.Tensor], self.scales), self._key("send scales"))
        k = len(self.locals)
        sent = [squares.reshape(-1), self.scale_stack.reshape(-1).to(torch.float64)]
        # into a kept buffer: without peers it is the table a recording reads in place
        table = torch.stack(sent, dim=1, out=self._buffer("send table", [k, 2], torch.float64))
        self.pending_squares = self.lane.all_gather(
            lambda: self._buffer("recv table", [self.world * k, 2], torch.float64),
            table,
            [k] * self.world,
            self.group,
            torch.float64,
        )

    def _row_scales(self, owned: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """Wait for the table of every part's squares and scale; set this rank's next
        prescales; the owned matrices' squares, next prescales and row factors
        (``shared_row_scales``)."""
        k = len(self.locals)
        table = self.lane.wait(self.pending_squares).view(self.world, k, 2)
        into = self.scale_stack.view(k)
        known = self.row_scales(table, self.sizes, owned, into)
        targets = cast(list[torch.Tensor], self.scales)
        if into.data_ptr() != targets[0].data_ptr():  # a copy: write the entries back
            torch._foreach_copy_(targets, list(into.view(k, 1).unbind(0)))
        return known

    def _values(self, rank: int) -> int:
        """How many squared norms rank `rank` holds of each tensor: one per local matrix."""
        return self.sizes[rank] if len(self.shape) == 3 else 1

    def _send_squares(self) -> None:
        """Issue the all-to-all of the squared norms (float64), as the rows go."""
        r, n = self.rank, self.counts
        squares = cast(list[torch.Tensor], self.squares)
        in_splits = [n[j] * self._values(r) for j in range(self.world)]
        out_splits = [n[r] * self._values(j) for j in range(self.world)]
        stack = self.dualizer._stack_tensors(squares, self._key("send squares"))
        self.pending_squares = self.lane.all_to_all(
            stack.reshape(-1),
            lambda: self._buffer("recv squares", [sum(out_splits)], torch.float64),
            out_splits,
            in_splits,
            self.group,
        )
        self.squares_splits = out_splits

    def _owned_squares(self) -> torch.Tensor:
        """Wait for the squared norms; those of my whole tensors' matrices, in stack order."""
        recv = self.lane.wait(self.pending_squares)
        r, n = self.rank, self.counts
        # into a kept buffer, so that a recording of the owner's stack reads it in place
        if len(self.shape) != 3:  # each rank's part of each of my matrices: add them
            if self.world == 1:
                return recv
            out = self._buffer("owned squares", [n[r]], torch.float64)
            return torch.sum(recv.view(self.world, n[r]), dim=0, out=out)
        order = self._in_tensor_order(recv, self.squares_splits, (), "owned squares")
        return order.reshape(-1)  # a 3-D tensor's rows are its matrices

    def _rank_order_is_tensor_order(self) -> bool:
        """Whether rows in rank order are rows in tensor order for this owner: it owns at
        most one tensor of the stack, or one rank holds every row."""
        return self.counts[self.rank] <= 1 or sum(1 for s in self.sizes if s) == 1

    def _in_tensor_order(
        self, recv: torch.Tensor, splits: list[int], rest: Sequence[int], name: str
    ) -> torch.Tensor:
        """What this owner received, rank j's rows of each of its tensors before rank
        j + 1's, as (tensors, rows, *rest) in tensor order: a view where it already is (one
        tensor, or one rank holds every row), else reordered into the buffer kept as `name`."""
        r, n = self.rank, self.counts
        if self._rank_order_is_tensor_order():
            return recv.view(n[r], self.shape[0], *rest)
        pieces = [
            p.view(n[r], self.sizes[j], *rest)
            for j, p in enumerate(recv.split(splits))  # type: ignore[no-untyped-call]
            if self.sizes[j]
        ]
        out = self._buffer(name, (n[r], self.shape[0], *rest), recv.dtype)
        return torch.cat(pieces, dim=1, out=out)

    def _key(self, name: str) -> object:
        return None if self.reuse is None else (self.reuse, name)

    def dualize_and_return(self, fn_stack: _StackFn) -> None:
        """Wait for my whole tensors, dualize them as one stack, issue all-to-all 2 (rows to
        their ranks)."""
        recv = self.lane.wait(self.pending)
        r, n = self.rank, self.counts
        whole = self._in_tensor_order(recv, self.out_splits, self.shape[1:], "whole")
        whole = whole.to(self.dtype)
        if self.scales is not None:  # every rank sets its next prescales
            known = self._row_scales((sum(n[:r]), sum(n[: r + 1])))
        if not n[r]:
            if self.squares is not None and self.scales is None:  # waited for like any other
                self.lane.wait(self.pending_squares)
            updates = whole.to(self.update_dtype)
        elif self.scales is not None:
            updates = fn_stack(whole, *known).to(self.update_dtype)
        elif self.squares is not None:
            updates = fn_stack(whole, self._owned_squares()).to(self.update_dtype)
        else:
            updates = fn_stack(whole).to(self.update_dtype)
        in_splits = [n[r] * self.sizes[j] * self.rest for j in range(self.world)]
        out_splits = [n[j] * self.sizes[r] * self.rest for j in range(self.world)]
        dtype = self.comm_dtype or self.update_dtype

        if self._rank_order_is_tensor_order():
            send = updates.reshape(-1).to(dtype)  # already in rank order
        else:
            send = self._buffer("send updates", [updates.numel()], dtype)
            start = 0
            for o, size in zip(self.offsets, self.sizes, strict=True):
                rows = updates[:, o : o + size]
                send[start : start + rows.numel()].view(rows.shape).copy_(rows)
                start += rows.numel()
        self.pending = self.lane.all_to_all(
            send,
            lambda: self._buffer("recv updates", [sum(out_splits)], dtype),
            out_splits,
            in_splits,
            self.group,
        )

    def receive_updates(self) -> list[torch.Tensor]:
        """Wait for all-to-all 2; my row shard of every tensor's update, in stack order
        (views of one received stack)."""
        recv = self.lane.wait(self.pending)
        local_shape = (len(self.locals), self.sizes[self.rank], *self.shape[1:])
        return list(recv.view(local_shape).to(self.update_dtype).unbind(0))


@dataclass
class _Pending:
    """An issued collective: the buffer it receives into, the buffers it allocated on the
    side stream (kept for the waiting stream on ``wait``), its work handle, and what runs
    after it (or None)."""

    received: torch.Tensor
    buffers: list[torch.Tensor]
    work: dist.Work | None
    finish: Callable[[], None] | None = None
    #: on CUDA: recorded on the side stream right after the collective's issue (without
    #: peers: on the stream that packed the send buffer)
    issued: torch.cuda.Event | None = None


class _Lane:
    """Where the collectives are issued and the stacks computed: on CUDA the collectives
    from a side stream and stack i on compute stream i % streams; on CPU all in order.

    Ordering on CUDA: the caller packs the send buffer on its current stream (the main one,
    or the compute stream of the stack whose results it sends); the side stream waits for
    that stream, so the buffer holds finished results (and a kept receive buffer is no
    longer read by the previous step), issues the collective and records an event; ``wait``
    makes the waiting stream wait for that event (not for later work on the side stream)
    and marks the receive buffers as used by it (so the allocator keeps them until its
    kernels ran). A compute stream first waits for the current stream (the directions are
    written there). So two stacks' orthogonalizations may overlap, as the single-process
    step's streams do, and the current stream, which waits for every stack's last
    collective, follows them all. A collective of a one-rank group sends nothing: its
    result is the send buffer, which ``wait`` orders after the stream that packed it (no
    side stream is involved). On CPU (gloo) the collective runs on gloo's thread while this
    one computes.

    The host issues a handful of CUDA calls per collective: one event orders a stream after
    another (recorded again for each wait: a stream's wait holds the record made just
    before it), and the events of collectives already waited for are recorded again by
    later issues.
    """

    def __init__(self, device: torch.device, streams: int) -> None:
        self.device = device
        self.side = None
        self.compute: list[torch.cuda.Stream] = []
        self._signal: torch.cuda.Event | None = None
        self._spare: list[torch.cuda.Event] = []
        if device.type == "cuda":
            #: the device's index (an int: the current-stream lookup skips parsing a device)
            self.index = device.index if device.index is not None else torch.cuda.current_device()
            with torch.cuda.device(self.index):
                self.side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
                if streams > 1:
                    self.compute = [torch.cuda.Stream() for _ in range(streams)]  # type: ignore[no-untyped-call]
            self._signal = torch.cuda.Event()  # type: ignore[no-untyped-call]

    def _current(self) -> torch.cuda.Stream:
        """The lane's device's current stream."""
        return torch.cuda.current_stream(self.index)

    @contextmanager
    def _on(self, stream: torch.cuda.Stream) -> Iterator[None]:
        """The body on `stream` (of the lane's device), which first waits for the current
        stream's work: torch.cuda.stream's switch without its device lookups and new event,
        where the lane's device is the current device (else torch.cuda.stream)."""
        previous = self._current()
        signal = cast(torch.cuda.Event, self._signal)
        signal.record(previous)
        stream.wait_event(signal)
        if torch.cuda.current_device() != self.index:
            with torch.cuda.stream(stream):
                yield
            return
        torch.cuda.set_stream(stream)
        try:
            yield
        finally:
            torch.cuda.set_stream(previous)

    @contextmanager
    def computing(self, stack: int) -> Iterator[None]:
        """Run the body on stack `stack`'s compute stream (CUDA, several streams), after the
        current stream's work; elsewhere on the current stream."""
        if not self.compute:
            yield
            return
        with self._on(self.compute[stack % len(self.compute)]):
            yield

    def _event(self) -> torch.cuda.Event:
        """An event of a collective already waited for, or a new one."""
        return self._spare.pop() if self._spare else torch.cuda.Event()  # type: ignore[no-untyped-call]

    def _without_peers(self, send: torch.Tensor) -> _Pending:
        """The collective of a one-rank group: `send` is the result, ready (on CUDA) when the
        current stream's work so far is."""
        pending = _Pending(send, [send], None)
        if self.side is not None:
            pending.issued = self._event()
            pending.issued.record(self._current())
        return pending

    def _issue(self, send: torch.Tensor, run: Callable[[], _Pending]) -> _Pending:
        """run() (the collective of the packed `send`) on the side stream after the current
        stream's work; `send` is marked as used by the side stream (the allocator keeps it)."""
        if self.side is None:
            return run()
        send.record_stream(self.side)
        with self._on(self.side):
            pending = run()
            pending.issued = self._event()
            pending.issued.record(self.side)
        return pending

    def all_to_all(
        self,
        send: torch.Tensor,
        receive: Callable[[], torch.Tensor],
        out_splits: list[int],
        in_splits: list[int],
        group: ProcessGroup | None,
    ) -> _Pending:
        """Issue an all-to-all of the flat buffer `send` into the flat buffer receive() gives
        (async). Without peers (a group of one rank) nothing is sent: `send` is the result."""
        send = send.contiguous()  # NCCL takes contiguous buffers only
        if len(out_splits) == 1:  # a group of one rank
            return self._without_peers(send)

        def run() -> _Pending:
            recv = receive()
            work = dist.all_to_all_single(
                recv, send, out_splits, in_splits, group=group, async_op=True
            )
            return _Pending(recv, [recv], work)

        return self._issue(send, run)

    def all_gather(
        self,
        receive: Callable[[], torch.Tensor],
        Y: torch.Tensor,
        counts: list[int],
        group: ProcessGroup | None,
        dtype: torch.dtype,
    ) -> _Pending:
        """Issue an all-gather of this rank's results Y (rank j has counts[j] rows) into the
        stack receive() gives (all rows in rank order, in `dtype`; async). Equal counts
        gather straight into it; unequal ones are padded to the largest count and cut into it
        on ``wait``. Without peers nothing is sent: Y (in `dtype`) is the stack."""
        world, most = len(counts), max(counts)
        send = Y.to(dtype).contiguous()  # NCCL takes contiguous buffers only
        if world == 1:
            return self._without_peers(send)

        def run() -> _Pending:
            stack = receive()
            if all(c == most for c in counts):
                work = dist.all_gather_into_tensor(stack, send, group=group, async_op=True)
                return _Pending(stack, [stack], work)
            padded_send = send.new_zeros((most, *Y.shape[1:]))
            padded_send[: Y.shape[0]] = send
            padded = send.new_empty((world * most, *Y.shape[1:]))
            work = dist.all_gather_into_tensor(padded, padded_send, group=group, async_op=True)

            def cut() -> None:
                start = 0
                for j, c in enumerate(counts):
                    stack[start : start + c].copy_(padded[j * most : j * most + c])
                    start += c

            return _Pending(stack, [stack, padded, padded_send], work, cut)

        return self._issue(send, run)

    def wait(self, pending: _Pending) -> torch.Tensor:
        """Wait for an issued collective; the buffer it received into."""
        if pending.work is not None:
            pending.work.wait()
        if pending.issued is not None:
            current = self._current()
            current.wait_event(pending.issued)
            self._spare.append(pending.issued)  # recorded again by a later issue
            pending.issued = None
            for b in pending.buffers:
                b.record_stream(current)
        if pending.finish is not None:
            pending.finish()
        return pending.received


def _tensor_flops(shape: Sequence[int], view: View, blocks: Sequence[int] | None) -> float:
    """Polar flops of one tensor's matrices under its view and row blocks."""
    *batch, m, n = matrix_shape(tuple(shape), view)
    rows = list(blocks) if blocks is not None else [m]
    return math.prod(batch) * sum(polar_flops(b, n) for b in rows)


def _block_update(
    fn: _StackFn, local: torch.Tensor, t: DTensor, view: View, blocks: Sequence[int] | None
) -> torch.Tensor:
    """MuonBP block step: fn on this rank's row shard (`local`, of t) read as its own
    matrices."""
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


def _consecutive(parts: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """The (k_i, ...) parts as one (sum k_i, ...) tensor without copying, if they lie back
    to back, each contiguous, in one storage (in order); else None."""
    first = parts[0]
    if first.numel() == 0 or first.dtype != parts[-1].dtype:
        return None
    end = first.data_ptr()
    for p in parts:
        if (
            not p.is_contiguous()
            or p.dtype != first.dtype
            or p.shape[1:] != first.shape[1:]
            or p.data_ptr() != end
        ):
            return None
        end += p.numel() * p.element_size()
    if len(parts) == 1:
        return first
    storage = first.untyped_storage()  # back to back within it: one buffer (storages are
    if end > storage.data_ptr() + storage.nbytes():  # disjoint), else two that touch
        return None
    shape = (sum(p.shape[0] for p in parts), *first.shape[1:])
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    return first.as_strided(shape, strides, first.storage_offset())


def _map_stack(
    fn: _StackFn, X: torch.Tensor, view: View, blocks: Sequence[int] | None, *known: torch.Tensor
) -> torch.Tensor:
    """fn on the matrices of a (c, ...) stack of whole tensors read under view and blocks,
    as one (K, m, n) stack where that is a reshape of X; the (c, ...) results. ``known``
    (the reshape case only): the K matrices' squared norms and what goes with them, passed
    on to fn."""
    if blocks is None and view != "transposed":
        m, n = matrix_shape(tuple(X.shape[1:]), view)[-2:]
        return fn(X.reshape(-1, m, n), *known).reshape(X.shape)
    return torch.stack(map_matrices(fn, list(X.unbind(0)), view, blocks))


def _all_known(
    values: Sequence[torch.Tensor | None] | None, members: Sequence[int]
) -> list[torch.Tensor] | None:
    """The members' values (squared norms, prescales) when every member has them, else
    None."""
    if values is None:
        return None
    known = [values[i] for i in members]
    return None if any(q is None for q in known) else cast(list[torch.Tensor], known)
