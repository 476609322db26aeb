"""How each matrix group of one optimizer runs: eagerly, compiled, recorded, or both.

The compiled step is ``steepest.optim.stages.run_stages`` under torch.compile (fullgraph,
static shapes) with lr and weight decay as 0-dim tensors refreshed before every step, so
schedules neither recompile nor re-record; on CUDA each same-shape stack runs on a side
stream. The recording (``cuda_graph``) replays the same function (graphs.GroupGraph). Groups
whose member declares ``fused_momentum`` run stage 1 fused and may take the finiteness
verdict on the device. Which group takes which path, and why, is ``FastGroups.plan``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch

from steepest.distributed import shared_row_scales
from steepest.matrices.kept import KeptForTensors
from steepest.matrices.stacking import matrix_count
from steepest.matrices.views import local_part, local_state, matrix_shape

from ..batching import Stacks, uses_distributed
from ..registry import Algorithm, Group, State
from ..stages import Dualize, run_stages, same_shape
from .finite_check import all_finite_into
from .graphs import GroupGraph, cuda_capture, recording_key
from .options import FastPath
from .sharded_step import (
    dualize_directions,
    local_stages_1_2,
    local_stages_5,
    stack_dtype,
    stage_pieces,
)

__all__ = ["FastGroups", "Plan", "compiled"]

F = TypeVar("F", bound=Callable[..., Any])
#: a sharded fused group's stage-1 dtypes, prescales and per-tensor prescale views
StageOneLayout = tuple[
    list[torch.dtype], list[torch.Tensor | None], list[torch.Tensor | None], bool
]

#: (backend, function name) -> its torch.compile; (backend, name, limit) -> the call wrapper.
_COMPILED: dict[tuple[str, str], Callable[..., Any]] = {}
_CALLS: dict[tuple[str, str, int], Callable[..., Any]] = {}


def compiled(backend: bool | str, fn: F, recompile_limit: int) -> F:
    """fn under torch.compile (fullgraph, static shapes), one per (backend, function).

    Each shape and setting is its own compilation; the calls raise Dynamo's per-function
    recompile limit to ``recompile_limit`` so that a model with many shapes, or several
    optimizers in one process, keeps everything compiled."""
    key = ("inductor" if backend is True else str(backend), fn.__name__)
    call = _CALLS.get((key[0], key[1], recompile_limit))
    if call is None:
        if key not in _COMPILED:
            _COMPILED[key] = torch.compile(fn, backend=key[0], fullgraph=True, dynamic=False)
        graph = _COMPILED[key]

        def call(*args: Any, **kwargs: Any) -> Any:
            with torch._dynamo.config.patch(recompile_limit=recompile_limit):
                return graph(*args, **kwargs)

        _CALLS[(key[0], key[1], recompile_limit)] = call
    return cast(F, call)


def dualize_and_scale(algorithm: Algorithm, X: torch.Tensor, group: Group) -> torch.Tensor:
    """Stages 3 and 4 on one (K, m, n) stack, written in one pass into a contiguous tensor
    (so that stage 5's foreach ops take their fast path on the split pieces)."""
    D = algorithm.dualize(X, group)
    out = torch.empty_like(D, memory_format=torch.contiguous_format)
    m, n = X.shape[-2:]
    return torch.mul(D, algorithm.scale(m, n, group), out=out)


@dataclass(frozen=True)
class Plan:
    """How one matrix group runs this step.

    Attributes:
        whole: the group can run its five stages compiled and recorded (its member declares
            these settings capturable, and one process dualizes it alone).
        backend: the torch.compile backend of the five stages (``whole``) or of each stack's
            stages 3-4 (other groups, with an explicit ``compile``), or False.
        recorded: whether the five stages run from a recording.
        fused: whether stage 1 may run fused (compiled, and the member declares
            ``fused_momentum``).
        reason: why the group is not both compiled and recorded ("" when it is).
        sharded: the group is shared across ranks (torch.distributed): its local stages run
            compiled and recorded as planned, the exchange of whole matrices between them
            (sharded_step.py).
    """

    whole: bool
    backend: bool | str
    recorded: bool
    fused: bool
    reason: str
    sharded: bool = False

    @property
    def fast(self) -> bool:
        """Whether the five stages run with live lr and weight decay (compiled or recorded)."""
        return self.whole and (bool(self.backend) or self.recorded)

    @property
    def path(self) -> str:
        """One of "compiled+recorded", "compiled", "recorded", "eager (stacks compiled)",
        "eager"."""
        if not self.fast:
            return "eager (stacks compiled)" if self.backend else "eager"
        if self.backend and self.recorded:
            return "compiled+recorded"
        return "compiled" if self.backend else "recorded"


class FastGroups:
    """The fast-path state of one optimizer: its options, recordings, live scalars, streams,
    prescales and device-side verdict flags (caches, not optimizer state).

    Args:
        options: the FastPath options.
        compile: the optimizer's ``compile`` (None: on for CUDA groups that can).
        cuda_graph: the optimizer's ``cuda_graph`` (None: on for CUDA groups that can).
        stacks: the optimizer's Stacks (its counters advance on replays too).
    """

    def __init__(
        self, options: FastPath, compile: bool | str | None, cuda_graph: bool | None, stacks: Stacks
    ) -> None:
        self.options = options
        self.compile = compile
        self.cuda_graph = cuda_graph
        self.stacks = stacks
        #: param group index -> its recording
        self.graphs: dict[int, GroupGraph] = {}
        self._scalars: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._streams: dict[torch.device, list[torch.cuda.Stream]] = {}
        self._finite: dict[torch.device, torch.Tensor] = {}
        self._finite_host: dict[torch.device, torch.Tensor] = {}
        self._prescales: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
        #: param group index -> its sharded stage-1 layout, kept for its parameters and the
        #: options it was made for (``_stage_1_layout``)
        self._stage_1_layouts: KeptForTensors[StageOneLayout] = KeptForTensors()
        #: param group index -> the recording of a sharded group's stage 5 (its stages 1-2
        #: are ``graphs[index]``)
        self.apply_graphs: dict[int, GroupGraph] = {}
        #: (group index, stack shape, dtype, n-th such stack of the step, how many values
        #: come with it: squared norms, prescales, row factors) -> the recording of an owned
        #: stack's stages 3-4
        self.stack_graphs: dict[tuple[int, tuple[int, ...], torch.dtype, int, int], GroupGraph] = {}
        #: (group index, n-th stack of the step with shared row scales) -> the recording of
        #: its scales' arithmetic (steepest.distributed.shared_row_scales)
        self.scale_graphs: dict[tuple[int, int], GroupGraph] = {}

    def clear(self) -> None:
        """Forget every recording (new state tensors: record again)."""
        self.graphs.clear()
        self.apply_graphs.clear()
        self.stack_graphs.clear()
        self.scale_graphs.clear()

    # -- which path ---------------------------------------------------------------------------

    def plan(self, group: Group, algorithm: Algorithm, params: list[torch.Tensor]) -> Plan:
        """The path of one matrix group with these parameters, and why not a faster one."""
        cuda = bool(params) and all(p.is_cuda for p in params)
        backend = self.compile if self.compile is not None else ("inductor" if cuda else False)
        if torch.compiler.is_compiling():  # the caller compiles the step: trace it eagerly
            return Plan(False, False, False, False, "inside the caller's torch.compile")
        sharded = self.stacks.distributed is not None or uses_distributed(params)
        why = algorithm.uncapturable(group)
        if sharded and not why and not algorithm.fused_momentum:
            why = f"{algorithm.name!r} has state-dependent stages 2 or 4"
        if sharded and why:
            why = f"torch.distributed: stacks are dualized across ranks eagerly ({why})"
        if why:  # eager; with an explicit compile each stack's stages 3-4 are compiled
            return Plan(False, self.compile or False, False, False, why)
        wanted = self.cuda_graph if self.cuda_graph is not None else cuda
        recorded = wanted and (self.options.capture is not cuda_capture or cuda)
        fused = bool(backend) and algorithm.fused_momentum and self.options.fused_momentum
        if backend and recorded:
            reason = ""
        elif not cuda and (self.compile is None or self.cuda_graph is None or wanted):
            where = params[0].device if params else "no device"
            reason = f"parameters on {where}: compiling and recording by default is for CUDA"
        else:
            reason = "compile=False" if not backend else "cuda_graph=False"
        return Plan(True, backend, recorded, fused, reason, sharded)

    def masked(
        self, work: Sequence[tuple[Group, Algorithm, list[torch.Tensor]]], check: bool
    ) -> set[int]:
        """Indices of the groups whose compiled step takes the device-side finiteness verdict
        (all or none: the verdict covers every gradient, on one device): compiled groups of
        members declaring ``fused_momentum``, whose masked step is an exact no-op."""
        if not check or not self.options.device_check:
            return set()
        with_params = [i for i, (_, _, ps) in enumerate(work) if ps]
        masked = set()
        for i in with_params:
            group, algorithm, params = work[i]
            if algorithm.matrix and algorithm.fused_momentum:
                plan = self.plan(group, algorithm, params)
                if plan.whole and plan.backend:
                    masked.add(i)
        devices = {p.device for i in with_params for p in work[i][2]}
        return masked if len(devices) == 1 else set()

    # -- running a group ----------------------------------------------------------------------

    def run(
        self,
        index: int,
        group: Group,
        algorithm: Algorithm,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[State],
        finite: torch.Tensor | None = None,
    ) -> None:
        """The five stages of one matrix group on its planned path (``finite``: a masked
        group's device-side verdict)."""
        plan = self.plan(group, algorithm, params)
        if plan.sharded:
            self._run_sharded(index, plan, group, algorithm, params, grads, states, finite)
            return
        if not plan.fast:
            stacked = self.stack_dualizer(algorithm, group, plan.backend, index)
            lr, wd = group["lr"], group["weight_decay"]
            run_stages(algorithm, params, grads, states, group, lr, wd, dualize=stacked)
            return
        lr_t, wd_t = self._live_scalars(index, group, params)
        fused = plan.fused and group["momentum"] > 0 and self._fusable(group, grads, states)
        pieces = same_shape(grads)
        prescales = (
            [self._prescale(index, piece, grads) for piece in pieces]
            if fused and self.options.prescaled_stacks
            else []
        )
        limit, kernels = self.options.recompile_limit, self.options.kernels
        step = compiled(plan.backend, run_stages, limit) if plan.backend else run_stages
        dualize: Dualize | None = None  # compiled: locally, stack by stack
        if not plan.backend:
            dualize = self.stack_dualizer(algorithm, group, False)
        forked = plan.backend and len(pieces) > 1 and self.options.streams > 1 and params[0].is_cuda

        def stages(grads: list[torch.Tensor]) -> None:
            if plan.backend:  # counted here: a replay adds the count GroupGraph recorded
                self.stacks.orthogonalizations += _matrix_count(grads, group)
            if not forked:
                step(algorithm, params, grads, states, group, lr_t, wd_t, finite, fused,
                     prescales, dualize, kernels)  # fmt: skip
                return
            # fork: stack k on stream k % streams (each allocates and reads its own
            # temporaries only), then join; a recording captures the branches as such
            main = torch.cuda.current_stream()
            side = self._side_streams(params[0].device)
            for k, piece in enumerate(pieces):
                stream = side[k % len(side)]
                stream.wait_stream(main)
                with torch.cuda.stream(stream):
                    step(
                        algorithm,
                        [params[i] for i in piece],
                        [grads[i] for i in piece],
                        [states[i] for i in piece],
                        group,
                        lr_t,
                        wd_t,
                        finite,
                        fused,
                        prescales[k : k + 1],
                        None,
                        kernels,
                    )
            for stream in side[: len(pieces)]:
                main.wait_stream(stream)

        if plan.recorded:
            graph = self.graphs.setdefault(index, GroupGraph(self.options.capture))
            graph.run(stages, params, grads, states, group, self.stacks)
        else:
            stages(grads)

    def stack_dualizer(
        self, algorithm: Algorithm, group: Group, backend: bool | str, index: int | None = None
    ) -> Dualize:
        """Stages 3 and 4 over a group's directions through the optimizer's Stacks (shared
        across ranks under torch.distributed, counted; ``index`` names the group's rank
        plan), each stack compiled with ``backend``."""
        if algorithm.update_in_stage2:

            def counted(directions: list[torch.Tensor]) -> list[torch.Tensor]:
                self.stacks.orthogonalizations += _matrix_count(directions, group)
                return directions

            return counted
        fn = (
            compiled(backend, dualize_and_scale, self.options.recompile_limit)
            if backend
            else dualize_and_scale
        )

        def run(X: torch.Tensor) -> torch.Tensor:
            return fn(algorithm, X, group)

        def dualize(directions: list[torch.Tensor]) -> list[torch.Tensor]:
            return self.stacks.map(
                run, directions, group["matrix_view"], group["blocks"], key=index
            )

        return dualize

    def _run_sharded(
        self,
        index: int,
        plan: Plan,
        group: Group,
        algorithm: Algorithm,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[State],
        finite: torch.Tensor | None,
    ) -> None:
        """A group shared across ranks: stages 1-2 on this rank's parts (compiled, recorded
        as planned), the exchange and dualization of whole matrices
        (steepest.distributed.ShardedDualizer.map_local: the collectives, outside every
        recording; each owned stack's stages 3-4 compiled and recorded as planned), then
        stage 5 on this rank's parts (compiled, recorded as planned)."""
        dualizer = self.stacks.sharing()
        local_params = [local_part(p) for p in params]
        local_grads = [local_part(g) for g in grads]
        local_states = [local_state(s) for s in states]
        lr_t, wd_t = self._live_scalars(index, group, local_params)
        fused = plan.fused and group["momentum"] > 0 and self._fusable(group, grads, states)
        dtypes: list[torch.dtype] | None = None
        prescales: list[torch.Tensor | None] = []
        scales: list[torch.Tensor | None] | None = None
        shared = False
        if fused:
            dtypes, prescales, scales, shared = self._stage_1_layout(
                index, group, algorithm, params, local_grads
            )
        limit, kernels = self.options.recompile_limit, self.options.kernels
        first = (
            compiled(plan.backend, local_stages_1_2, limit) if plan.backend else local_stages_1_2
        )
        last = compiled(plan.backend, local_stages_5, limit) if plan.backend else local_stages_5
        owner = (
            compiled(plan.backend, dualize_directions, limit)
            if plan.backend
            else dualize_directions
        )
        scales_of = (
            compiled(plan.backend, shared_row_scales, limit) if plan.backend else shared_row_scales
        )

        def stages_1_2(
            gs: list[torch.Tensor],
        ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
            return first(
                algorithm, gs, local_states, group, finite, dtypes, kernels, prescales, shared
            )

        def stage_5(us: list[torch.Tensor]) -> None:
            last(local_params, us, group, lr_t, wd_t, finite)

        # what the recordings of this step depend on, found once (the owners' read no
        # parameter or state)
        key = recording_key(group, local_params, local_states) if plan.recorded else None
        owner_key = None if key is None else (key[0], (), ())
        if plan.recorded:
            graph = self.graphs.setdefault(index, GroupGraph(self.options.capture))
            replay = graph.run(
                stages_1_2, local_params, local_grads, local_states, group, self.stacks, key
            )
            directions, squares = cast(tuple[list[torch.Tensor], list[torch.Tensor | None]], replay)
        else:
            directions, squares = stages_1_2(local_grads)
        # a fused group's update leaves its owner in the directions' dtype (the polar
        # iteration's, 16 bits on CUDA): half the bytes to send and for stage 5 to read than
        # the parameters' float32, at one rounding of the scaled polar factor
        dtype = params[0].dtype

        def update_dtype(X: torch.Tensor) -> torch.dtype:
            return X.dtype if fused else dtype

        seen: dict[tuple[tuple[int, ...], torch.dtype], int] = {}

        def replayed(
            graphs: dict[Any, GroupGraph],
            key: Any,
            fn: Callable[[list[torch.Tensor]], object],
            inputs: list[torch.Tensor],
        ) -> object:
            # a recording of a function of tensors between the collectives (reads no state)
            graph = graphs.setdefault(key, GroupGraph(self.options.capture))
            return graph.run(fn, [], inputs, [], group, self.stacks, owner_key)

        def dualize(X: torch.Tensor, *given: torch.Tensor) -> torch.Tensor:
            if not plan.recorded:
                return owner(algorithm, X, group, update_dtype(X), fused, *given)
            # one recording per owned stack (inputs that moved are copied into the recorded); two
            # stacks of one shape get two, so that neither overwrites the other's output
            nth = seen[tuple(X.shape), X.dtype] = seen.get((tuple(X.shape), X.dtype), -1) + 1
            key = (index, tuple(X.shape), X.dtype, nth, len(given))
            replay = replayed(
                self.stack_graphs,
                key,
                lambda xs: owner(algorithm, xs[0], group, update_dtype(xs[0]), fused, *xs[1:]),
                [X, *given],
            )
            return cast(torch.Tensor, replay)

        scale_stacks = itertools.count()  # numbers the stacks with shared row scales in order

        def row_scales(
            table: torch.Tensor, sizes: list[int], owned: tuple[int, int], into: torch.Tensor
        ) -> tuple[torch.Tensor, ...]:
            if not plan.recorded:
                return cast(tuple[torch.Tensor, ...], scales_of(table, sizes, owned, into))
            # recorded, one per stack (a compiled call costs the host more than a replay);
            # the next prescales are written into ``into``, which stays in place
            replay = replayed(
                self.scale_graphs,
                (index, next(scale_stacks)),
                lambda xs: scales_of(xs[0], sizes, owned, xs[1]),
                [table, into],
            )
            return cast(tuple[torch.Tensor, ...], replay)

        view, blocks = group["matrix_view"], group["blocks"]
        updates = dualizer.map_local(
            self.stacks,
            dualize,
            directions,
            params,
            view,
            blocks,
            index,
            reuse=True,
            streams=self.options.streams,
            squares=squares,
            update_dtypes=dtypes,
            scales=scales,
            row_scales=row_scales,
        )
        if plan.recorded:
            graph = self.apply_graphs.setdefault(index, GroupGraph(self.options.capture))
            graph.run(stage_5, local_params, updates, local_states, group, self.stacks, key)
        else:
            stage_5(updates)

    def _fusable(self, group: Group, grads: list[torch.Tensor], states: list[State]) -> bool:
        """The fused stage 1 needs the default matrix view, matrices, and float momentum
        buffers (a momentum raised from 0 by a schedule creates them in an unfused step)."""
        return (
            group["matrix_view"] == "auto"
            and group["blocks"] is None
            and all(g.ndim >= 2 for g in grads)
            and all("momentum_buffer" in s for s in states)
        )

    def _prescale(self, index: int, piece: list[int], grads: list[torch.Tensor]) -> torch.Tensor:
        """The float32 prescale of group ``index``'s same-shape stack ``piece``: one entry per
        stacked matrix, zeros when new (momentum_stack's ``prescale``; the same tensor every
        step, as a recording reads its address)."""
        key = (index, tuple(piece))
        shape = grads[piece[0]].shape
        rows = len(piece) * (grads[piece[0]].numel() // math.prod(matrix_shape(tuple(shape))[-2:]))
        prescale = self._prescales.get(key)
        if prescale is None or prescale.shape != (rows,) or prescale.device != grads[0].device:
            prescale = torch.zeros(rows, dtype=torch.float32, device=grads[0].device)
            self._prescales[key] = prescale
        return prescale

    def _stage_1_layout(
        self,
        index: int,
        group: Group,
        algorithm: Algorithm,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
    ) -> StageOneLayout:
        """A sharded fused group's stage-1 dtype per tensor (one per shape, gradient dtype and
        whether prescaled: a prescaled float16 stack, as in one process, where every rank
        holds the tensor whole, so each matrix's scale is kept where its direction is made,
        or, in a group exchanged by rows (``shared``), where a tensor is one matrix, whose
        row parts share one scale), its prescales (one per stage_pieces stack:
        ``_prescale`` where the stack is float16, else None), per tensor the view of its
        matrices' prescale entries (or None; an empty row part of a shared one gets its own
        zero) and ``shared``. Kept while the same parameters, gradient dtypes and polar
        options come again."""
        options = (
            tuple(g.dtype for g in grads),
            group["polar_dtype"],
            group.get("polar_form", "direct"),
            self.options.prescaled_stacks,
        )
        kept = self._stage_1_layouts.get(index, params, options)
        if kept is not None:
            return kept
        dualizer = self.stacks.sharing()
        may_prescale = self.options.prescaled_stacks and algorithm.scale_invariant
        # a group exchanged by rows prescales its single matrices (their row parts share
        # scales); any other prescales what every rank holds whole
        shared = may_prescale and all(dualizer.shards_rows(p) for p in params)
        share = dualizer.shares_row_scale if shared else dualizer.shares_whole
        chosen: dict[tuple[tuple[int, ...], torch.dtype, bool], torch.dtype] = {}
        dtypes = []
        for g, p in zip(grads, params, strict=True):
            kind = (tuple(p.shape), g.dtype, may_prescale and share(p))
            if kind not in chosen:
                chosen[kind] = stack_dtype(group, g, p.shape, kind[2])
            dtypes.append(chosen[kind])
        prescales: list[torch.Tensor | None] = []
        scales: list[torch.Tensor | None] = [None] * len(grads)
        for piece in stage_pieces(grads, dtypes):
            if dtypes[piece[0]] != torch.float16:
                prescales.append(None)
                continue
            prescale = self._prescale(index, piece, grads)
            prescales.append(prescale)
            for i, view in zip(piece, prescale.view(len(piece), -1).unbind(0), strict=True):
                scales[i] = view
        if shared:  # every rank sends a scale for every tensor, with rows or not
            for i, g in enumerate(grads):
                if g.numel() == 0 and dtypes[i] == torch.float16:
                    scales[i] = torch.zeros(1, dtype=torch.float32, device=g.device)
        layout = (dtypes, prescales, scales, shared)
        return self._stage_1_layouts.put(index, params, layout, options)

    def _side_streams(self, device: torch.device) -> list[torch.cuda.Stream]:
        """``options.streams`` streams on device, made once (a recording forks into them)."""
        streams = self._streams.get(device)
        if streams is None:
            with torch.cuda.device(device):
                streams = [torch.cuda.Stream() for _ in range(self.options.streams)]  # type: ignore[no-untyped-call]
            self._streams[device] = streams
        return streams

    def _live_scalars(
        self, index: int, group: Group, params: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The group's lr and weight_decay as 0-dim tensors on its device, refreshed now.

        float64 when a parameter is float64, else float32; the same tensors every step (a
        recording reads their addresses)."""
        dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
        pair = self._scalars.get(index)
        if pair is None or pair[0].device != params[0].device or pair[0].dtype != dtype:
            device = params[0].device
            pair = (
                torch.zeros((), dtype=dtype, device=device),
                torch.zeros((), dtype=dtype, device=device),
            )
            self._scalars[index] = pair
        pair[0].fill_(group["lr"])
        pair[1].fill_(group["weight_decay"])
        return pair

    # -- the device-side finiteness verdict ---------------------------------------------------

    def start_check(
        self, grads: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None]:
        """Start the finiteness check without waiting: (device flag, host copy, event); the
        check pass is steepest.optim.fast.finite_check (one Triton launch on CUDA). Under
        torch.distributed the ranks' flags are then combined on the device (an all-reduce of
        the flag, steepest.distributed), so every rank reads the same verdict."""
        shared = uses_distributed(grads)
        local = [local_part(g) for g in grads]
        device = local[0].device
        local = [g for g in local if g.numel()]
        flag = self._finite.get(device)
        if flag is None:  # one tensor per device for good: recordings read its address
            flag = self._finite[device] = torch.ones((), dtype=torch.bool, device=device)
        all_finite_into(flag, local, self.options.kernels)
        if shared:
            self.stacks.sharing().agree_on_flag(flag, grads)
        if device.type != "cuda":
            return flag, flag, None
        host = self._finite_host.get(device)
        if host is None:  # reused: every step waits for its copy before returning
            host = self._finite_host[device] = torch.empty(
                (), dtype=torch.bool, device="cpu", pin_memory=True
            )
        host.copy_(flag, non_blocking=True)
        event = torch.cuda.Event()  # type: ignore[no-untyped-call]  # torch stub: untyped
        event.record()
        return flag, host, event


def _matrix_count(grads: list[torch.Tensor], group: Group) -> int:
    return matrix_count(grads, group["matrix_view"], group["blocks"])
