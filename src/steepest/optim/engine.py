"""The engine: one torch.optim.Optimizer that runs the five update stages per param group.

grad -> [1 accumulate] -> [2 precondition] -> [3 dualize] -> [4 scale] -> [5 apply]
(../shared/DESIGN.md, "One update, five stages"). Each group names its ``algorithm`` (a key of
``ALGORITHMS``); matrix algorithms get their directions dualized in stacks of same-shape matrices
(one batched call per stack), delegating ones (AdamW) run their own step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast, overload

import torch
from torch.optim import Optimizer
from torch.optim.optimizer import ParamsT

from steepest.polar.msign import iteration_dtype

from .batching import Stacks, map_matrices, matrix_count, uses_distributed
from .checks import check_choice, check_flag
from .compat import TorchOptimBehaviour, check_param_items, warn_head_like
from .finite_check import all_finite_into
from .fused_momentum import momentum_stack
from .graphs import GroupGraph, cuda_capture
from .momentum import MomentumAlgorithm
from .registry import ALGORITHMS, Algorithm, Group, State
from .views import check_view, matrix_shape

__all__ = ["Steepest"]

#: Group keys of matrix algorithms that say how a tensor is read as matrices (see views.py).
VIEW_DEFAULTS = {"matrix_view": "auto", "blocks": None}
#: Keys a group may carry besides its algorithm's hyperparameters (torch's names and schedulers').
EXTRA_KEYS = {
    "params",
    "param_names",
    "algorithm",
    "initial_lr",
    "max_lr",
    "min_lr",
    "base_momentum",
    "max_momentum",
}

#: Stages 3 and 4 on one stack: (algorithm, (K, m, n) directions, group) -> scaled updates.
DualizeAndScale = Callable[[Algorithm, torch.Tensor, Group], torch.Tensor]
#: One group's work for a step: (group, algorithm, params, grads, states) of params with a grad.
Work = tuple[dict[str, Any], Algorithm, list[torch.Tensor], list[torch.Tensor], list[State]]


class Steepest(TorchOptimBehaviour, Optimizer):
    """Steepest descent under a chosen norm, one algorithm per param group.

    Routing: a group with an ``algorithm`` key keeps it. Plain parameters (or a group without
    the key, also in ``add_param_group``) are split: tensors with ndim >= 2 go to
    ``matrix_algorithm``, the rest to ``vector_algorithm``, each group keeping the other keys
    given; plain tensors shaped like embeddings or heads warn once. Route embeddings and output
    heads yourself, or use ``steepest.param_groups(model)`` which does.

    State is created eagerly when a parameter is added, so ``state_dict()`` has the same keys
    before and after the first step. ``state_dict()`` also stores ``skipped_steps``. Pickled
    or deep-copied optimizers keep every option and step as the original. A step first checks
    that no parameter changed dtype since its state was made (``model.to(torch.bfloat16)``
    mid-training raises TypeError naming it, before any write). Momentum written by
    OneCycleLR / CyclicLR goes to each group's own key (AdamW's betas[0], Muon's momentum).

    Args:
        params: tensors, (name, tensor) pairs, or dicts (param groups).
        hyperparameters: algorithm name -> its defaults for this optimizer, overriding the
            algorithm's own; groups may override any key again.
        matrix_algorithm: algorithm for plain tensors with ndim >= 2, default "muon".
        vector_algorithm: algorithm for plain tensors with ndim < 2, default "adamw".
        nonfinite: "raise" (a non-finite gradient raises FloatingPointError naming the
            parameter, before anything is written), "skip" (the whole step is skipped and
            counted in ``skipped_steps``) or "ignore" (no check, as torch.optim: non-finite
            values reach the weights). The check costs one host synchronisation per step,
            which a small, launch-bound model pays in full (the CPU can no longer run ahead of
            the GPU); "ignore" avoids it, e.g. with GradScaler, which skips overflowed steps
            itself. On the compiled path (``compile``) of the Muon and PolarGrad groups the
            check runs on the device instead: their compiled step reads the verdict and, for a
            non-finite gradient, feeds each momentum buffer its own value and a zero learning
            rate (an exact no-op), so the step is queued before the host waits for the verdict
            and raises or skips.
        prefixes: algorithm name -> prefix of its hyperparameter names in error messages
            (a preset's "adamw_" keyword prefix).
        compile: torch.compile all five stages of each capturable matrix group as one graph
            (fullgraph, static shapes; lr and weight decay enter as 0-dim tensors, so
            schedules do not recompile; for other groups and under torch.distributed, each
            stack's dualize-and-scale) with the
            inductor backend (True), a named backend (a str), or not at all (False, default).
            The first steps are slow (compilation). On CUDA each same-shape stack's compiled
            step runs on its own stream (STACK_STREAMS), so that stacks overlap.
        cuda_graph: record stages 1-4 of each matrix group (all five with ``compile``) on its
            first steps and replay the recording afterwards (graphs.py), default False.
            Applies to CUDA parameters of capturable groups (the Muon members with an
            iterative polar backend) in a single process; other groups, CPU tensors and
            distributed runs stay eager. Learning rate
            and weight decay stay live; any other hyperparameter change re-records.
        master_weights: keep a float32 copy of every bfloat16/float16 parameter in its state
            (``"master_param"``), run all five stages on it with the gradient in float32,
            and write the rounded result back to the parameter, default False. Updates
            smaller than half a bf16 ulp then accumulate instead of being rounded away; all
            state of such a parameter is float32.

    Attributes:
        graph_capture: the recorder used by ``cuda_graph`` (``graphs.cuda_capture``; the CPU
            tests put ``graphs.closure_capture`` here, which also records CPU tensors).
    """

    def __init__(
        self,
        params: ParamsT,
        hyperparameters: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        matrix_algorithm: str = "muon",
        vector_algorithm: str = "adamw",
        nonfinite: str = "raise",
        prefixes: Mapping[str, str] | None = None,
        compile: bool | str = False,
        cuda_graph: bool = False,
        master_weights: bool = False,
    ) -> None:
        who = type(self).__name__
        hyperparameters = dict(hyperparameters or {})
        for key, name in (
            ("matrix_algorithm", matrix_algorithm),
            ("vector_algorithm", vector_algorithm),
        ):
            check_choice(who, key, name, ALGORITHMS)
        for name, hp in hyperparameters.items():
            check_choice(who, "hyperparameters key", name, ALGORITHMS)
            unknown = set(hp) - set(ALGORITHMS[name].defaults)
            if unknown:
                raise ValueError(
                    f"{who}: unknown {name} hyperparameters {sorted(unknown)}; "
                    f"known: {sorted(ALGORITHMS[name].defaults)}"
                )
        self._hyperparameters = hyperparameters
        for name in hyperparameters:
            prefix = (prefixes or {}).get(name, "")
            ALGORITHMS[name].validate(who, self._defaults_for(name), prefix)
        check_choice(who, "nonfinite", nonfinite, ("raise", "skip", "ignore"))
        self.nonfinite = nonfinite
        if not isinstance(compile, (bool, str)) or compile == "":
            raise ValueError(
                f"{who}: compile={compile!r} must be True, False or a torch.compile backend name"
            )
        check_flag(who, "cuda_graph", cuda_graph)
        check_flag(who, "master_weights", master_weights)
        self.master_weights = master_weights
        self.compile = compile
        self.cuda_graph = cuda_graph
        self.graph_capture = cuda_capture
        #: param group index -> its recording (cuda_graph=True)
        self.graphs: dict[int, GroupGraph] = {}
        #: param group index -> (lr, weight_decay) as 0-dim tensors (the compiled path)
        self._scalars: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        #: device -> the side streams of STACK_STREAMS (made on first use)
        self._streams: dict[torch.device, list[torch.cuda.Stream]] = {}
        #: device -> 0-dim bool tensor, "every gradient is finite", read by masked steps
        self._finite: dict[torch.device, torch.Tensor] = {}
        self._finite_host: dict[torch.device, torch.Tensor] = {}  # its pinned host copy (CUDA)
        #: (param group index, stack's parameter indices) -> the stack's prescale (the fused
        #: step's float16 directions, momentum_stack), a cache: not part of the state
        self._prescales: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
        self.skipped_steps = 0
        #: dualizes stacks (locally or across ranks, steepest.distributed) and counts them
        self.stacks = Stacks()
        self._routes = (matrix_algorithm, vector_algorithm)
        self._group_dtypes = []
        # torch's defaults: schedulers read them (OneCycleLR cycles "momentum" if present).
        super().__init__(self._route(params), self._defaults_for(matrix_algorithm))

    def _defaults_for(self, name: str) -> dict[str, Any]:
        return {**ALGORITHMS[name].defaults, **self._hyperparameters.get(name, {})}

    def _route(self, params: ParamsT) -> list[dict[str, Any]]:
        """Split plain tensors and algorithm-less groups into matrix and vector groups."""
        if isinstance(params, torch.Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable, not a Tensor")
        items: list[Any] = list(params)  # tensors, (name, tensor) pairs or group dicts
        check_param_items(type(self).__name__, items)
        groups: list[dict[str, Any]] = (
            items if items and isinstance(items[0], dict) else [{"params": items}]
        )
        routed: list[dict[str, Any]] = []
        for group in groups:
            if "algorithm" in group:
                routed.append(group)
                continue
            members = list(group["params"])
            is_matrix = [(m[1] if isinstance(m, tuple) else m).ndim >= 2 for m in members]
            for name, want in zip(self._routes, (True, False), strict=True):
                chosen = [m for m, flag in zip(members, is_matrix, strict=True) if flag == want]
                if chosen:
                    routed.append({**group, "params": chosen, "algorithm": name})
                if chosen and want and not ALGORITHMS[name].vectors and ALGORITHMS[name].matrix:
                    warn_head_like(type(self).__name__, chosen, name)
        return routed

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Check a group, fill its algorithm's defaults, add it and create its state eagerly."""
        group = dict(param_group)
        index = len(self.param_groups)
        members = (
            [group["params"]] if isinstance(group["params"], torch.Tensor) else group["params"]
        )
        if isinstance(members, set):
            raise TypeError(f"{type(self).__name__}: params must be a list, not a set")
        members = list(members)
        group["params"] = members
        tensors = [m[1] if isinstance(m, tuple) else m for m in members]
        names = list(group.get("param_names") or []) or [
            m[0] if isinstance(m, tuple) else f"param_groups[{index}][{i}]"
            for i, m in enumerate(members)
        ]
        name = group.get("algorithm")
        if name is None:
            kinds = {t.ndim >= 2 for t in tensors}
            if len(kinds) > 1:  # a matrix and its bias: routed per tensor, as in __init__
                group.pop("param_names", None)
                named = [*zip(names, tensors, strict=True)]
                for piece in self._route([{**group, "params": named}]):
                    self.add_param_group(piece)
                return
            name = self._routes[0] if kinds.pop() else self._routes[1]
            group["algorithm"] = name
        who = f"{type(self).__name__}: param group {index}"
        check_choice(who, "algorithm", name, ALGORITHMS)
        algorithm = ALGORITHMS[name]
        if not algorithm.matrix:  # an elementwise update reads no matrix view
            for key in VIEW_DEFAULTS:
                group.pop(key, None)
        known = dict(self._defaults_for(name), **(VIEW_DEFAULTS if algorithm.matrix else {}))
        unknown = set(group) - set(known) - EXTRA_KEYS
        if unknown:
            raise ValueError(
                f"{who}: unknown keys {sorted(unknown)} for {name!r}; known: {sorted(known)}"
            )
        for key, value in known.items():
            group.setdefault(key, value)
        algorithm.validate(f"{who} ({name})", group)
        for t, pname in zip(tensors, names, strict=True):
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                raise TypeError(
                    f"{who}: {pname} is {getattr(t, 'dtype', type(t).__name__)}; "
                    "need a real floating tensor (complex parameters are not supported)"
                )
            if algorithm.matrix and (t.ndim >= 2 or not algorithm.vectors):
                check_view(who, pname, t.shape, group["matrix_view"], group["blocks"])
        self._names_like_groups(group, tensors, names)
        saved, self.defaults = self.defaults, {}  # defaults were filled per algorithm above
        try:
            super().add_param_group(group)
        finally:
            self.defaults = saved
        added = self.param_groups[-1]
        for p in added["params"]:
            self.state[p] = self._init_state(algorithm, p, added)
        self._record_dtypes()

    def _init_state(self, algorithm: Algorithm, p: torch.Tensor, group: Group) -> State:
        """The algorithm's fresh state of p; with master_weights and a 16-bit p, the state of
        a float32 copy of p, kept under "master_param"."""
        if not (self.master_weights and p.dtype in HALF_DTYPES):
            return algorithm.init_state(p, group)
        master = p.detach().to(torch.float32, copy=True)
        return {**algorithm.init_state(master, group), "master_param": master}

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter with a gradient; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._before_step(type(self).__name__)
        work = self._gather()
        masked = self._masked_groups(work)
        verdict = self._finite_on_device(work) if masked else None
        if self.nonfinite != "ignore" and verdict is None and not self._gradients_finite(work):
            self.skipped_steps += 1
            return loss
        self.stacks.start_step()
        counts = (self.stacks.orthogonalizations, self.stacks.block_orthogonalizations)
        order = sorted(range(len(work)), key=lambda i: i not in masked)  # masked groups first
        for index in order:
            group, algorithm, params, grads, states = work[index]
            if verdict is not None and index not in masked:
                if not self._verdict(verdict, work, counts):
                    return loss
                verdict = None
            if not params:
                continue
            low = [p for p, s in zip(params, states, strict=True) if "master_param" in s]
            if low:  # master_weights: the stages run on the float32 copies
                grads = [_master_grad(p, s) for p, s in zip(params, states, strict=True)]
                params = [s.get("master_param", p) for p, s in zip(params, states, strict=True)]
            finite = verdict[0] if verdict is not None and index in masked else None
            self._update_group(index, group, algorithm, params, grads, states, finite)
            if low:  # round the updated float32 copies into the 16-bit parameters
                masters = [s["master_param"] for s in states if "master_param" in s]
                torch._foreach_copy_(low, masters)
        if verdict is not None:
            self._verdict(verdict, work, counts)
        return loss

    def _masked_groups(self, work: list[Work]) -> set[int]:
        """Indices of the groups whose compiled step takes the device-side finiteness verdict
        (all or none: the verdict covers every gradient, on one device)."""
        if self.nonfinite == "ignore" or not self.compile:
            return set()
        with_params = [i for i, w in enumerate(work) if w[2]]
        masked = {
            i for i in with_params if _maskable(work[i][1], work[i][0]) and self._local(work[i][2])
        }
        devices = {g.device for i in with_params for g in work[i][3]}
        return masked if len(devices) == 1 else set()

    def _finite_on_device(
        self, work: list[Work]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None]:
        """Start the finiteness check without waiting: (device flag, host copy, event); the
        check pass is steepest.optim.finite_check (one Triton launch on CUDA)."""
        grads = [g for w in work for g in w[3] if g.numel()]
        device = grads[0].device
        flag = self._finite.get(device)
        if flag is None:  # one tensor per device for good: recordings read its address
            flag = self._finite[device] = torch.ones((), dtype=torch.bool, device=device)
        all_finite_into(flag, grads)
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

    def _verdict(
        self,
        verdict: tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None],
        work: list[Work],
        counts: tuple[int, int],
    ) -> bool:
        """Wait for the device-side check; True if every gradient was finite. Otherwise the
        masked groups left everything unchanged: undo the step's count, then raise naming the
        parameter ("raise") or count the skip ("skip") and return False."""
        _, host, event = verdict
        if event is not None:
            event.synchronize()
        if bool(host):
            return True
        self.stacks.steps -= 1
        self.stacks.orthogonalizations, self.stacks.block_orthogonalizations = counts
        self._gradients_finite(work)  # raises for "raise"
        self.skipped_steps += 1
        return False

    def _update_group(
        self,
        index: int,
        group: Group,
        algorithm: Algorithm,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[State],
        finite: torch.Tensor | None = None,
    ) -> None:
        """The five stages of one param group (or the delegating algorithm's update); with
        ``finite`` (a masked group, see _masked_groups) the compiled step reads that verdict."""
        if not algorithm.matrix:
            algorithm.update(params, grads, states, group)
            return

        if self.compile and _capturable(algorithm, group) and self._local(params):
            self._fused_step(index, group, algorithm, params, grads, states, finite)
            return

        def stages(grads: list[torch.Tensor]) -> list[torch.Tensor]:
            directions = algorithm.accumulate(grads, states, group)  # 1
            directions = algorithm.precondition(directions, states, group)  # 2
            updates = self._dualize_and_scale(algorithm, directions, group)  # 3, 4
            return algorithm.rescale(updates, states, group)  # 4 (state-dependent)

        if self._recordable(algorithm, group, params):
            graph = self.graphs.setdefault(index, GroupGraph(self.graph_capture))
            updates = graph.run(stages, params, grads, states, group, self.stacks)
        else:
            updates = stages(grads)
        algorithm.apply(params, updates, group)  # 5

    def _fused_step(
        self,
        index: int,
        group: Group,
        algorithm: Algorithm,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[State],
        finite: torch.Tensor | None = None,
    ) -> None:
        """All five stages of a capturable local group as one compiled graph (and, with
        cuda_graph, one recording). The learning rate and weight decay enter as 0-dim tensors
        refreshed before every step, so schedules neither recompile nor re-record, and
        torch.compile fuses the shape scale, weight decay and update into one pass over each
        parameter."""
        lr, wd = self._live_scalars(index, group, params)
        step = _compiled(self.compile, local_step)
        pieces = _same_shape(grads)
        prescales = [self._prescale(index, piece, grads) for piece in pieces]

        def stages(grads: list[torch.Tensor]) -> list[torch.Tensor]:
            # counted here: a replay skips stages and adds the count GroupGraph recorded
            count = matrix_count(grads, group["matrix_view"], group["blocks"])
            self.stacks.orthogonalizations += count
            if len(pieces) < 2 or STACK_STREAMS <= 1 or not params[0].is_cuda:
                step(algorithm, params, grads, states, group, lr, wd, finite, prescales)
                return []
            # fork: stack k on stream k % STACK_STREAMS (each allocates and reads its own
            # temporaries only), then join; a recording captures the branches as such
            main = torch.cuda.current_stream()
            streams = self._side_streams(params[0].device)
            for k, piece in enumerate(pieces):
                stream = streams[k % len(streams)]
                stream.wait_stream(main)
                with torch.cuda.stream(stream):
                    step(
                        algorithm,
                        [params[i] for i in piece],
                        [grads[i] for i in piece],
                        [states[i] for i in piece],
                        group,
                        lr,
                        wd,
                        finite,
                        [prescales[k]],
                    )
            for stream in streams[: len(pieces)]:
                main.wait_stream(stream)
            return []

        if self._recordable(algorithm, group, params):
            graph = self.graphs.setdefault(index, GroupGraph(self.graph_capture))
            graph.run(stages, params, grads, states, group, self.stacks)
        else:
            stages(grads)

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

    def _side_streams(self, device: torch.device) -> list[torch.cuda.Stream]:
        """STACK_STREAMS streams on device, made once (a recording forks into the same ones)."""
        streams = self._streams.get(device)
        if streams is None:
            with torch.cuda.device(device):
                streams = [torch.cuda.Stream() for _ in range(STACK_STREAMS)]  # type: ignore[no-untyped-call]
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

    def _recordable(self, algorithm: Algorithm, group: Group, params: list[torch.Tensor]) -> bool:
        """True if this group's stages 1-4 run from a recording (cuda_graph=True)."""
        if not self.cuda_graph or not _capturable(algorithm, group):
            return False
        if not self._local(params):
            return False
        return self.graph_capture is not cuda_capture or all(p.is_cuda for p in params)

    def _local(self, params: list[torch.Tensor]) -> bool:
        """True when this process dualizes these parameters alone (no torch.distributed)."""
        return self.stacks.distributed is None and not uses_distributed(params)

    def _dualize_and_scale(
        self, algorithm: Algorithm, directions: list[torch.Tensor], group: Group
    ) -> list[torch.Tensor]:
        """Stages 3 and 4: split each direction into its matrices, dualize every stack of
        same-shape matrices in one call (shared across ranks under torch.distributed),
        multiply by the shape rule, reassemble."""
        fn = _compiled(self.compile, dualize_and_scale) if self.compile else dualize_and_scale

        def run(X: torch.Tensor) -> torch.Tensor:
            return fn(algorithm, X, group)

        return self.stacks.map(run, directions, group["matrix_view"], group["blocks"])

    def _gather(self) -> list[Work]:
        """Per group: (group, algorithm, params, grads, states) of params with a gradient.

        Parameters with no elements are left out: their update is empty."""
        work: list[Work] = []
        for index, group in enumerate(self.param_groups):
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            for i, p in enumerate(group["params"]):
                g = p.grad
                if g is None:
                    continue
                if g.is_sparse or g.is_complex():
                    kind = "sparse" if g.is_sparse else "complex"
                    raise TypeError(
                        f"{type(self).__name__}: {self._name(index, i)} has a {kind} gradient; "
                        "only dense real gradients are supported (use a dense embedding)"
                    )
                if p.numel() > 0:
                    params.append(p)
                    grads.append(g)
            states = [self.state[p] for p in params]
            work.append((group, ALGORITHMS[group["algorithm"]], params, grads, states))
        return work

    def _gradients_finite(self, work: list[Work]) -> bool:
        """True if every gradient is finite; raise FloatingPointError naming one if not and
        nonfinite == "raise". Under torch.distributed every rank reaches the same verdict."""
        grads = [g for _, _, _, gs, _ in work for g in gs]
        bad = self.stacks.first_nonfinite(grads)
        if bad is None:
            return True
        if self.nonfinite == "skip":
            return False
        raise FloatingPointError(
            f"{type(self).__name__}: non-finite gradient (inf or nan) in "
            f"{self._find(grads[bad])}; nothing was updated. Pass nonfinite='skip' to skip "
            "such steps"
        )

    def _name(self, index: int, i: int) -> str:
        group = self.param_groups[index]
        p = group["params"][i]
        if "param_names" in group:
            return f"{group['param_names'][i]!r} (shape {tuple(p.shape)})"
        return f"param_groups[{index}]['params'][{i}] (shape {tuple(p.shape)})"

    def _find(self, grad: torch.Tensor) -> str:
        for index, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                if p.grad is grad:
                    return self._name(index, i)
        return "a parameter"

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus ``skipped_steps``."""
        state = super().state_dict()
        state["skipped_steps"] = self.skipped_steps
        state["stacks"] = self.stacks.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load torch's state dict and ``skipped_steps`` (0 if absent).

        torch casts every floating-point state tensor to its parameter's dtype. Each state
        tensor is instead taken again from ``state_dict`` and cast once to the dtype of a
        freshly created state (int8 quantized momentum, float64 preconditioners, float32
        master copies and their state stay as they were saved), so a resume is bit-identical."""
        super().load_state_dict(state_dict)
        self.graphs.clear()  # new state tensors: record again
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))
        self._record_dtypes()
        self.stacks.load_state_dict(state_dict.get("stacks", {}))
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        for group, ids in zip(
            self.param_groups, _split_like(saved_ids, self.param_groups), strict=True
        ):
            algorithm = ALGORITHMS[group["algorithm"]]
            for p, saved_id in zip(group["params"], ids, strict=True):
                state = self.state.get(p)
                if not state:
                    continue
                saved = state_dict["state"].get(saved_id, {})
                fresh = self._init_state(algorithm, p, group)
                for key, value in state.items():
                    like, original = fresh.get(key), saved.get(key, value)
                    if isinstance(original, torch.Tensor) and isinstance(like, torch.Tensor):
                        state[key] = original.to(device=value.device, dtype=like.dtype)


def _split_like(flat: list[Any], groups: Sequence[Group]) -> list[list[Any]]:
    """flat cut into consecutive pieces as long as the groups' param lists."""
    out, start = [], 0
    for group in groups:
        out.append(flat[start : start + len(group["params"])])
        start += len(group["params"])
    return out


#: Parameter dtypes that get a float32 master copy under master_weights=True.
HALF_DTYPES = (torch.bfloat16, torch.float16)


def _master_grad(p: torch.Tensor, state: State) -> torch.Tensor:
    """p's gradient, in float32 when p has a master copy."""
    grad = p.grad
    assert grad is not None
    return grad.to(torch.float32) if "master_param" in state else grad


def local_step(
    algorithm: Algorithm,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    states: list[State],
    group: Group,
    lr: torch.Tensor,
    weight_decay: torch.Tensor,
    finite: torch.Tensor | None = None,
    prescales: Sequence[torch.Tensor] = (),
) -> None:
    """Stages 1-5 of a matrix group on one process with lr and weight decay as 0-dim tensors:
    Algorithm.apply's math (decoupled or cautious decay, then p <- p - lr u), written so that
    torch.compile fuses the shape scale, the decay and the update into one pass per parameter
    and reads the dualizer's low-precision output directly.

    With ``finite`` (a 0-dim bool tensor, for algorithms where _maskable holds) a False value
    makes the step an exact no-op: each gradient is replaced by its momentum buffer (zero
    without one), so M <- M + w (M - M) = M, the direction is M (finite), and lr and weight
    decay are 0, so p <- p * 1 - 0 * u = p. ``prescales``: one per same-shape stack of
    params, in _same_shape's order, for the fused stage 1 (momentum_stack's prescale)."""
    if finite is not None:
        lr = torch.where(finite, lr, 0.0)
        weight_decay = torch.where(finite, weight_decay, 0.0)
    if _fusable(algorithm, group, grads, states):
        updates = _fused_stages_1_to_4(algorithm, grads, states, group, finite, prescales)
    else:
        if finite is not None:
            grads = [
                torch.where(finite, g, s["momentum_buffer"] if "momentum_buffer" in s else 0.0)
                for g, s in zip(grads, states, strict=True)
            ]
        directions = algorithm.accumulate(grads, states, group)  # 1
        directions = algorithm.precondition(directions, states, group)  # 2

        def run(X: torch.Tensor) -> torch.Tensor:
            m, n = X.shape[-2:]
            return algorithm.dualize(X, group) * algorithm.scale(m, n, group)

        updates = map_matrices(run, directions, group["matrix_view"], group["blocks"])  # 3, 4
    updates = algorithm.rescale(updates, states, group)  # 4 (state-dependent)
    if group.get("cautious_weight_decay", False):  # 5
        for p, u in zip(params, updates, strict=True):
            p.sub_((u * p >= 0).to(p.dtype) * p * (lr * weight_decay))
    else:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    # foreach: Inductor writes every parameter from one horizontally fused kernel, not one each
    torch._foreach_sub_(params, torch._foreach_mul(updates, lr))


#: On CUDA the compiled step of a group runs each same-shape stack on its own stream (at most
#: this many, reused in turn), so that one stack's memory-bound passes (momentum, update)
#: overlap another's products; 0 or 1: all stacks on the current stream. The kernels and their
#: results are the same either way. GPT-2 small on an H100 (bench/ab_step.py): 2.85-2.93 ms
#: per step pipelined with 4 streams against 3.19-3.21 ms with one; 2 streams 2.91 ms;
#: splitting stacks into halves or quarters, or running all momentum passes on one
#: low-priority stream ahead of the products, measured slower (bench/results/ab_step-*streams*).
STACK_STREAMS = 4


def _same_shape(tensors: list[torch.Tensor]) -> list[list[int]]:
    """Indices of tensors grouped by (shape, dtype), in order of first appearance."""
    pieces: dict[tuple[tuple[int, ...], torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        pieces.setdefault((tuple(t.shape), t.dtype), []).append(i)
    return list(pieces.values())


#: The fused step runs stage 1 of Muon as momentum_stack (one pass per matrix: momentum,
#: direction, stack and Frobenius norm; steepest.optim.fused_momentum) where _fusable holds.
FUSED_MOMENTUM = True

#: The fused stage 1 stores float16 directions times a power-of-two prescale where the
#: iteration computes in float16 (read at each call; off: bfloat16 directions and msign's
#: normalized float16 copy, as before session 13).
PRESCALED_STACKS = True


def _fusable(
    algorithm: Algorithm, group: Group, grads: list[torch.Tensor], states: list[State]
) -> bool:
    """Whether local_step may run stages 1-4 as _fused_stages_1_to_4: plain EMA momentum
    (_maskable) whose float buffers exist (a momentum raised from 0 by a schedule creates them
    in the unfused step first), an algorithm that takes known norms, the default matrix view."""
    return (
        FUSED_MOMENTUM
        and group["momentum"] > 0
        and _maskable(algorithm, group)
        and algorithm.takes_norms(group)
        and group["matrix_view"] == "auto"
        and group["blocks"] is None
        and all(g.ndim >= 2 for g in grads)
        and all("momentum_buffer" in s for s in states)
    )


def _fused_stages_1_to_4(
    algorithm: Algorithm,
    grads: list[torch.Tensor],
    states: list[State],
    group: Group,
    finite: torch.Tensor | None,
    prescales: Sequence[torch.Tensor] = (),
) -> list[torch.Tensor]:
    """Stages 1-4 with stage 1 as momentum_stack per same-shape stack: the directions are
    written once, with their norms, and the dualizer takes both (Algorithm.dualize_normed).
    Where the polar iteration computes in float16 (msign's Gram form on CUDA) and the
    dualizer is scale invariant, the directions are stored in float16, each times a power
    of two (the stack's entry of ``prescales``), and msign folds their normalization into
    its first products; other 16-bit iterations take bfloat16 directions, float32 and
    float64 ones their own dtype. The result matches accumulate + dualize up to that
    rounding of the direction."""
    polar_dtype, form = group.get("polar_dtype"), group.get("polar_form", "direct")
    updates: list[torch.Tensor] = list(grads)  # every entry is replaced below
    for k, members in enumerate(_same_shape(grads)):
        shape, dtype = grads[members[0]].shape, grads[members[0]].dtype
        m, n = matrix_shape(tuple(shape))[-2:]
        compute = iteration_dtype(m, n, grads[0].device, polar_dtype, form)
        prescale = None
        if (
            PRESCALED_STACKS
            and compute == torch.float16
            and algorithm.scale_invariant
            and prescales
        ):
            prescale = prescales[k]
        if prescale is not None:
            stack_dtype = torch.float16
        elif compute in (torch.bfloat16, torch.float16):
            stack_dtype = torch.bfloat16
        else:
            stack_dtype = compute
        D, norms = momentum_stack(
            [grads[i] for i in members],
            [states[i]["momentum_buffer"] for i in members],
            group["momentum"],
            group["nesterov"],
            stack_dtype,
            finite,
            matrix=(m, n),
            prescale=prescale,
        )
        U = algorithm.dualize_normed(D, norms, dtype, group, unit_scaled=prescale is not None)
        # the directions' norms: with a prescale the stored ones are scaled, and the updated
        # prescale is 2^-e for a norm f 2^e, f in [1/2, 1): its reciprocal is within 2x
        U = algorithm.damp(U, norms if prescale is None else prescale.reciprocal(), group)
        U = U * algorithm.scale(m, n, group)
        U = U.reshape(len(members), *shape)
        for k, i in enumerate(members):
            updates[i] = U[k]
    return updates


def dualize_and_scale(algorithm: Algorithm, X: torch.Tensor, group: Group) -> torch.Tensor:
    """Stages 3 and 4 on one (K, m, n) stack: the algorithm's dualizer times its shape rule,
    written in one pass into a contiguous tensor (so that stage 5's foreach ops take their
    fast path on the split pieces)."""
    D = algorithm.dualize(X, group)
    out = torch.empty_like(D, memory_format=torch.contiguous_format)
    m, n = X.shape[-2:]
    return torch.mul(D, algorithm.scale(m, n, group), out=out)


def _maskable(algorithm: Algorithm, group: Group) -> bool:
    """True when a step whose gradients are replaced by their momentum buffers (zero without
    one) and whose lr is 0 provably leaves parameters and state unchanged: capturable float EMA
    momentum (MomentumAlgorithm's lerp toward the buffer itself) and no state in stages 2-4
    (Muon, PolarGrad; not NorMuon, whose rescale keeps a second moment). Capturable already
    excludes 8-bit momentum, whose re-quantization would not be exact."""
    if not (_capturable(algorithm, group) and isinstance(algorithm, MomentumAlgorithm)):
        return False
    kind = type(algorithm)
    return (
        kind.accumulate is MomentumAlgorithm.accumulate
        and kind.update_momentum is MomentumAlgorithm.update_momentum
        and kind.precondition is Algorithm.precondition
        and kind.rescale is Algorithm.rescale
    )


def _capturable(algorithm: Algorithm, group: Group) -> bool:
    """The algorithm's ``capturable(group)`` (False for algorithms that define none): True when
    stages 1-4 are free of host synchronisation and Python-side state."""
    capturable = getattr(algorithm, "capturable", None)
    return bool(capturable(group)) if callable(capturable) else False


_COMPILED: dict[tuple[str, str], Callable[..., Any]] = {}
#: Compilations of one function allowed per process (stack shapes x settings x groups).
RECOMPILE_LIMIT = 256

F = TypeVar("F", bound=Callable[..., Any])


def _compiled(backend: bool | str, fn: F) -> F:
    """fn under torch.compile (fullgraph, static shapes), one per (backend, function).

    Each shape and setting is its own compilation; the calls raise Dynamo's per-function
    recompile limit to RECOMPILE_LIMIT so that a model with many shapes, or several
    optimizers in one process, keeps everything compiled."""
    key = ("inductor" if backend is True else str(backend), fn.__name__)
    if key not in _COMPILED:
        compiled = torch.compile(fn, backend=key[0], fullgraph=True, dynamic=False)

        def call(*args: Any) -> Any:
            with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
                return compiled(*args)

        _COMPILED[key] = call
    return cast(F, _COMPILED[key])
