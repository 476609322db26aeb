"""The engine: one torch.optim.Optimizer that runs the five update stages per param group.

grad -> [1 accumulate] -> [2 precondition] -> [3 dualize] -> [4 scale] -> [5 apply]
(docs/algorithms.md describes the stages). Each group names its ``algorithm`` (a key of
``ALGORITHMS``); matrix algorithms get their directions dualized in stacks of same-shape matrices
(one batched call per stack), delegating ones (AdamW) run their own step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, overload

import torch
from torch.optim import Optimizer
from torch.optim.optimizer import ParamsT

from steepest.matrices.views import check_view

from .batching import Stacks
from .checks import check_choice, check_flag
from .compat import TorchOptimBehaviour, check_param_items, warn_head_like
from .fast.options import FastPath
from .fast.runner import FastGroups
from .registry import ALGORITHMS, Algorithm, Group, State

__all__ = ["FastPathNotice", "GroupPath", "Steepest"]

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

#: One group's work for a step: (group, algorithm, params, grads, states) of params with a grad.
Work = tuple[dict[str, Any], Algorithm, list[torch.Tensor], list[torch.Tensor], list[State]]


class FastPathNotice(UserWarning):
    """The one-line notice of the first step that compiled or recorded groups by default."""


class GroupPath(NamedTuple):
    """One row of ``Steepest.fast_path_report()``: how a param group runs and why."""

    group: int
    algorithm: str
    path: str  # "compiled+recorded", "compiled", "recorded", "eager (stacks compiled)", "eager"
    reason: str  # why not compiled and recorded ("" when it is)
    device_check: bool  # whether the step reads the finiteness verdict on the device
    #: under torch.distributed: which rank dualizes what (the last step's plans:
    #: ranks, flops per rank, busiest over mean); "" in one process
    sharding: str = ""


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
            itself. On the compiled path of members that declare ``fused_momentum`` (Muon,
            PolarGrad) the check runs on the device instead (``FastPath.device_check``): the
            compiled step reads the verdict and, for a non-finite gradient, feeds each momentum
            buffer its own value and a zero learning rate (an exact no-op), so the step is
            queued before the host waits for the verdict and raises or skips.
        prefixes: algorithm name -> prefix of its hyperparameter names in error messages
            (a preset's "adamw_" keyword prefix).
        compile: torch.compile the five stages of each capturable matrix group as one graph
            (fullgraph, static shapes; lr and weight decay enter as 0-dim tensors, so
            schedules do not recompile; for other matrix groups and under torch.distributed,
            each stack's stages 3-4) with the inductor backend (True), a named backend (a str)
            or not at all (False). Default None: inductor for the capturable groups whose
            parameters are all on CUDA, nothing elsewhere. The first steps are slow
            (compilation).
        cuda_graph: record the five stages of each capturable matrix group on its first steps
            and replay the recording afterwards (fast/graphs.py): True, False, or None
            (default: for CUDA parameters). Learning rate and weight decay stay live; any
            other hyperparameter change re-records; so do new parameter or state storages.
            Which path each group took, and why, is ``fast_path_report()``; the first step
            that compiled or recorded by default says so once (a FastPathNotice warning).
        fast: the fast path's options (steepest.optim.fast.FastPath: streams, fused momentum,
            prescaled stacks, device-side check, recompile limit, kernels, recorder).
        master_weights: keep a float32 copy of every bfloat16/float16 parameter in its state
            (``"master_param"``), run all five stages on it with the gradient in float32,
            and write the rounded result back to the parameter, default False. Updates
            smaller than half a bf16 ulp then accumulate instead of being rounded away; all
            state of such a parameter is float32.

    Attributes:
        fast_options: the FastPath options.
        graphs: param group index -> its recording (fast/graphs.GroupGraph).
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
        compile: bool | str | None = None,
        cuda_graph: bool | None = None,
        master_weights: bool = False,
        fast: FastPath | None = None,
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
        if compile is not None and (not isinstance(compile, (bool, str)) or compile == ""):
            raise ValueError(
                f"{who}: compile={compile!r} must be None, True, False or a torch.compile "
                "backend name"
            )
        if cuda_graph is not None:
            check_flag(who, "cuda_graph", cuda_graph)
        check_flag(who, "master_weights", master_weights)
        if fast is not None and not isinstance(fast, FastPath):
            raise ValueError(f"{who}: fast={fast!r}; need a steepest.optim.fast.FastPath or None")
        self.master_weights = master_weights
        self.compile = compile
        self.cuda_graph = cuda_graph
        self.fast_options = fast if fast is not None else FastPath()
        self.skipped_steps = 0
        #: dualizes stacks (locally or across ranks, steepest.distributed) and counts them
        self.stacks = Stacks()
        #: how each matrix group runs: compiled, recorded or eager (a cache, not state)
        self._fast = FastGroups(self.fast_options, compile, cuda_graph, self.stacks)
        self._noticed = False
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
        masked = self._fast.masked([w[:3] for w in work], self.nonfinite != "ignore")
        grads = [g for w in work for g in w[3]]
        verdict = self._fast.start_check(grads) if masked else None  # the check on the device
        if self.nonfinite != "ignore" and verdict is None and not self._gradients_finite(work):
            self.skipped_steps += 1
            return loss
        self.stacks.start_step()
        counts = (self.stacks.orthogonalizations, self.stacks.block_orthogonalizations)
        for index in sorted(range(len(work)), key=lambda i: i not in masked):  # masked first
            group, algorithm, params, grads, states = work[index]
            if verdict is not None and index not in masked:  # the rest wait for the verdict
                if not self._verdict(verdict, work, counts):
                    return loss
                verdict = None
            if not params:
                continue
            masters = [s["master_param"] for s in states if "master_param" in s]
            if masters:  # master_weights: the stages run on the float32 copies
                low = [p for p, s in zip(params, states, strict=True) if "master_param" in s]
                grads = [_master_grad(p, s) for p, s in zip(params, states, strict=True)]
                params = [s.get("master_param", p) for p, s in zip(params, states, strict=True)]
            if not algorithm.matrix:  # a delegating member (AdamW) runs its own update
                algorithm.update(params, grads, states, group)
            else:
                finite = verdict[0] if verdict is not None and index in masked else None
                self._fast.run(index, group, algorithm, params, grads, states, finite)
            if masters:  # round the updated float32 copies into the 16-bit parameters
                torch._foreach_copy_(low, masters)
        if verdict is not None:
            self._verdict(verdict, work, counts)
        self._notice()
        return loss

    def fast_path_report(self) -> list[GroupPath]:
        """How each param group runs ("compiled+recorded", "compiled", "recorded", "eager
        (stacks compiled)" or "eager") and why it is not compiled and recorded; under
        torch.distributed also which rank dualizes what (``sharding``: the last step's plan,
        polar flops per rank).

        Example:
            >>> import torch, steepest
            >>> opt = steepest.Muon([torch.nn.Parameter(torch.randn(4, 4))])
            >>> opt.fast_path_report()[0].path  # CPU parameters stay eager by default
            'eager'
        """
        work = [(g, ALGORITHMS[g["algorithm"]], list(g["params"])) for g in self.param_groups]
        masked = self._fast.masked(work, self.nonfinite != "ignore")
        rows = []
        for index, (group, algorithm, params) in enumerate(work):
            if not algorithm.matrix:
                why = f"{algorithm.name!r} runs its own update (no matrix stages)"
                rows.append(GroupPath(index, algorithm.name, "eager", why, False))
                continue
            plan = self._fast.plan(group, algorithm, params)
            sharding = self._sharding(index) if plan.sharded or "distributed" in plan.reason else ""
            path = GroupPath(index, algorithm.name, plan.path, plan.reason, index in masked)
            rows.append(path._replace(sharding=sharding))
        return rows

    def _sharding(self, index: int) -> str:
        """The rank plans of group ``index``'s last step (steepest.distributed.balance)."""
        dualizer = self.stacks.distributed
        plans = getattr(dualizer, "plans", {}).get(index)
        if not plans:
            return "sharded across ranks; planned at the first step"
        return "sharded across ranks: " + "; ".join(p.summary() for p in plans)

    @property
    def graphs(self) -> dict[int, Any]:
        """param group index -> its recording (steepest.optim.fast.graphs.GroupGraph)."""
        return self._fast.graphs

    def _notice(self) -> None:
        """Once, after the first step: say what the default fast path compiled or recorded,
        and how to turn it off."""
        if self._noticed:
            return
        self._noticed = True
        fast = [
            row
            for row in self.fast_path_report()
            if (self.compile is None and row.path.startswith("compiled"))
            or (self.cuda_graph is None and row.path.endswith("recorded"))
        ]
        if fast:
            paths = ", ".join(f"group {r.group} ({r.algorithm}) {r.path}" for r in fast)
            warnings.warn(
                f"{type(self).__name__}: fast path on CUDA: {paths}; the first steps compile. "
                "Pass compile=False, cuda_graph=False to run eagerly; see fast_path_report().",
                FastPathNotice,
                stacklevel=5,  # the caller of step (through torch's no_grad and hook wrappers)
            )

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
        self._fast.clear()  # new state tensors: record again
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
