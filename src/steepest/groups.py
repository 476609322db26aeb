"""Parameter routing: which tensors of a model are matrices for Muon and which go to AdamW.

A tensor goes to Muon when it is the weight of a matmul-like module, read by the module's
own layout; everything else goes to AdamW. Rules, in order (the first that applies wins):

1. ``overrides``: a name pattern (fnmatch) mapped to "muon" or "adamw".
2. embedding tables (nn.Embedding, nn.EmbeddingBag), and any weight tied to one: adamw.
3. the output head: adamw. Found from the forward pass when ``example`` is given (the
   matmul whose result is the model's output, e.g. ``F.linear(x, emb.weight)`` or an
   ``lm_head``); else from the model's own API (Hugging Face ``get_output_embeddings()``,
   timm ``get_classifier()``); else the last nn.Linear registered.
4. weights of matmul-like modules: muon.
   * nn.Linear (out, in); its fused QKV (a Linear registered as ``qkv`` with 3 d outputs, as
     in timm) is split into three (d, in) matrices.
   * convolutions (out, in / groups, *k): each of the ``groups`` groups is its own
     (out / groups, in / groups * prod(k)) matrix (a depthwise conv: one row per channel).
   * Hugging Face ``Conv1D`` (GPT-2; found by class name and ``nf``, transformers is not
     imported) stores (d_in, d_out): read "transposed"; GPT-2's fused ``c_attn`` is split
     into its ``split_size`` blocks.
   * nn.MultiheadAttention's ``in_proj_weight`` (3 E, E): split into Q, K and V; the
     recurrent weights of nn.LSTM / nn.GRU split into their 4 / 3 gates; nn.Bilinear's
     (out, in1, in2) read as (out, in1 * in2).
   * expert stacks (E, ., .) of a Hugging Face experts module (``is_transposed`` tells
     (E, in, out) from (E, out, in); ``is_concatenated`` gate|up halves are split), or of
     any parameter whose layout is declared in ``layouts``; their biases go to AdamW.
   * parameters the forward pass of ``example`` uses as a matmul weight
     (``F.linear(x, W)`` and ``W @ x``: (out, in); ``x @ W``: (in, out), read "transposed");
     without ``example``, a 2-D parameter called ``weight`` of any other module, read
     (out, in) as nn.Linear's.
5. every other parameter: adamw (vectors, norms, biases, class and position tokens, and the
   weight of a mixture's router, a module whose class name ends in "Router": its rows score
   experts as a head's rows score classes).

The muon groups come first in the returned list (trainers that log one learning rate log the
first group's).

AdamW groups of biases, norms and embeddings get ``weight_decay=0`` (as Hugging Face's
Trainer excludes biases and norms), unless ``no_decay`` says otherwise.

References: K. Jordan et al., "Muon: An optimizer for hidden layers in neural networks"
(2024), hidden-layer matrices only; J. Liu et al., "Muon is Scalable for LLM Training",
arXiv 2502.16982 (embeddings and head on AdamW; the rms shape rule).
"""

from __future__ import annotations

import difflib
import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from steepest.matrices.views import View, check_view, matrix_shape
from steepest.optim.scaling import check_scale, scale_factor

__all__ = ["LAYOUTS", "NO_DECAY", "Route", "RoutingReport", "param_groups"]

_CONVS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)
#: ``layouts`` values: how a declared (E, ., .) stack stores each matrix.
LAYOUTS = ("out_in", "in_out")
#: Roles whose AdamW groups get weight_decay 0 by default.
NO_DECAY = ("bias", "norm", "embedding")
#: The prefix torch.compile's OptimizedModule puts before every parameter name.
_COMPILED_PREFIX = "_orig_mod."


@dataclass(frozen=True)
class Route:
    """Where one parameter went: its matrices, algorithm, effective lr multiplier, its role
    (matrix, head, embedding, norm, bias, vector, ...) and whether it is weight-decayed."""

    name: str
    shape: tuple[int, ...]
    algorithm: str
    reason: str
    matrices: tuple[tuple[int, ...], ...] = ()
    lr_multiplier: float = 1.0
    role: str = "matrix"
    decay: bool = True


class RoutingReport(list[Route]):
    """A list of Route; ``str(report)`` is a table, ``report.algorithm_of(name)`` looks one up."""

    def route_of(self, name: str) -> Route:
        for route in self:
            if route.name == name:
                return route
        raise KeyError(f"param_groups report: no parameter named {name!r}")

    def algorithm_of(self, name: str) -> str:
        return self.route_of(name).algorithm

    def names(self, algorithm: str) -> list[str]:
        return [r.name for r in self if r.algorithm == algorithm]

    def __str__(self) -> str:
        rows = [("parameter", "shape", "matrix view", "algorithm", "lr x", "wd", "why")]
        for r in self:
            view = " + ".join("x".join(map(str, m)) for m in r.matrices) or "-"
            shape = "x".join(map(str, r.shape)) or "scalar"
            rows.append(
                (
                    r.name,
                    shape,
                    view,
                    r.algorithm,
                    f"{r.lr_multiplier:.3g}",
                    "yes" if r.decay else "no",
                    r.reason,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
        totals = {
            a: sum(math.prod(r.shape) for r in self if r.algorithm == a) for a in ("muon", "adamw")
        }
        lines.append(
            ", ".join(f"{a}: {len(self.names(a))} tensors, {n} numbers" for a, n in totals.items())
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class _Decision:
    algorithm: str
    reason: str
    role: str
    view: View = "auto"
    blocks: tuple[int, ...] | None = None


def param_groups(
    model: nn.Module,
    *,
    example: Any = None,
    overrides: Mapping[str, str] | None = None,
    blocks: Mapping[str, list[int]] | None = None,
    heads: Mapping[str, int] | None = None,
    layouts: Mapping[str, str] | None = None,
    no_decay: Iterable[str] = NO_DECAY,
    scale: str | float | None = None,
) -> tuple[list[dict[str, Any]], RoutingReport]:
    """Route a model's parameters into "muon" and "adamw" param groups.

    Args:
        model: the module (a torch.compile'd one too); shared (tied) parameters appear once,
            under their first name.
        example: an input of the model (a tensor, a tuple of positional arguments or a dict of
            keyword arguments); when given, one forward pass (eval mode, no grad, modes
            restored) finds the output head and the matmul weights of custom modules.
        overrides: fnmatch pattern of a parameter name -> "muon" or "adamw".
        blocks: pattern -> row sizes splitting the weight's matrix (fused QKV: [d, d, d]);
            replaces the split found for known fused layouts.
        heads: pattern -> number of heads; each row block (or the whole matrix) is split into
            per-head matrices that are orthogonalized separately.
        layouts: pattern -> "out_in" or "in_out": a 3-D parameter outside a known experts
            module is an (E, out, in) or (E, in, out) stack of matrices for Muon.
        no_decay: roles whose AdamW groups get weight_decay 0: any of "bias", "norm",
            "embedding", "vector", "head"; default ("bias", "norm", "embedding"); () decays
            everything with the optimizer's AdamW weight decay.
        scale: if given, the Muon shape rule stored in the muon groups; the report's lr
            multipliers use it (default "spectral", Muon's default).

    Patterns match the parameter name with or without torch.compile's ``_orig_mod.`` prefix;
    a pattern that matches no parameter raises ValueError naming the closest names.

    Returns:
        (groups, report): groups for ``steepest.Muon`` / ``steepest.optimizer`` (each with
        ``algorithm``, ``param_names`` and, for muon, ``matrix_view`` and ``blocks``; AdamW
        groups of no-decay roles with ``weight_decay=0.0``), and a RoutingReport that prints
        one line per parameter.

    Example:
        >>> import torch, steepest
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
        ...                             torch.nn.Linear(16, 16), torch.nn.ReLU(),
        ...                             torch.nn.Linear(16, 4))
        >>> groups, report = steepest.param_groups(model)
        >>> [(g["algorithm"], g["param_names"]) for g in groups]  # doctest: +NORMALIZE_WHITESPACE
        [('muon', ['0.weight', '2.weight']), ('adamw', ['0.bias', '2.bias', '4.bias']),
         ('adamw', ['4.weight'])]
        >>> opt = steepest.Muon(groups, lr=0.02, adamw_lr=3e-4)
    """
    overrides, blocks = dict(overrides or {}), dict(blocks or {})
    heads, layouts = dict(heads or {}), dict(layouts or {})
    no_decay = tuple(no_decay)
    _check_options(overrides, layouts, no_decay)
    if scale is not None:
        check_scale("param_groups", scale)
    rule = "spectral" if scale is None else scale

    owners: dict[int, list[tuple[str, nn.Module]]] = {}
    named: dict[int, tuple[str, nn.Parameter]] = {}
    for mod_name, module in model.named_modules(remove_duplicate=False):
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            owners.setdefault(id(p), []).append((p_name, module))
            named.setdefault(id(p), (full, p))
    traced = _trace(model, example) if example is not None else None
    head_ids, head_how = (traced.heads, "the forward") if traced is not None else _api_heads(model)
    parents = _parents(model)
    used: set[str] = set()

    def match(table: Mapping[str, Any], name: str) -> list[str]:
        found = [pat for pat in table if _matches(name, pat)]
        used.update(found)
        return found

    routes = RoutingReport()
    grouped: dict[tuple[Any, ...], list[tuple[str, nn.Parameter]]] = {}
    for key, (name, p) in named.items():
        if not p.requires_grad:
            continue
        chosen = match(overrides, name)
        declared = match(layouts, name)
        decision = _classify(
            name,
            p,
            owners[key],
            (head_ids, head_how),
            traced,
            layouts[declared[-1]] if declared else None,
            parents,
        )
        if chosen:
            algorithm = overrides[chosen[-1]]
            decision = _Decision(
                algorithm,
                f"override {chosen[-1]!r}",
                "matrix" if algorithm == "muon" else decision.role,
                decision.view,
                decision.blocks,
            )
        matrices: tuple[tuple[int, ...], ...] = ()
        multiplier, row_blocks = 1.0, None
        reason = decision.reason
        if decision.algorithm == "muon":
            given = match(blocks, name)
            found = list(blocks[given[-1]]) if given else decision.blocks
            row_blocks = _row_blocks(name, p, decision.view, found, match(heads, name), heads)
            check_view("param_groups", name, p.shape, decision.view, row_blocks)
            full = matrix_shape(p.shape, decision.view)
            sizes = row_blocks or [full[-2]]
            matrices = tuple((*full[:-2], r, full[-1]) for r in sizes)
            multiplier = scale_factor(rule, sizes[0], full[-1])
            if len(set(sizes)) > 1:
                reason += " (lr x of the first block)"
        decay = decision.algorithm == "muon" or decision.role not in no_decay
        routes.append(
            Route(
                name,
                tuple(p.shape),
                decision.algorithm,
                reason,
                matrices,
                multiplier,
                decision.role,
                decay,
            )
        )
        blocks_key = tuple(row_blocks) if row_blocks else None
        group_key = (decision.algorithm, decision.view, blocks_key, decay)
        grouped.setdefault(group_key, []).append((name, p))
    _check_patterns(
        {"overrides": overrides, "blocks": blocks, "heads": heads, "layouts": layouts},
        used,
        [name for name, _ in named.values()],
    )
    return _build_groups(grouped, scale), routes


def _build_groups(
    grouped: Mapping[tuple[Any, ...], list[tuple[str, nn.Parameter]]], scale: str | float | None
) -> list[dict[str, Any]]:
    """One group per (algorithm, view, blocks, decay), the muon groups first: trainers that
    log one learning rate log the first group's (Hugging Face Trainer's "learning_rate")."""
    groups: list[dict[str, Any]] = []
    for (algorithm, view, block_sizes, decay), members in grouped.items():
        group: dict[str, Any] = {
            "params": [p for _, p in members],
            "param_names": [n for n, _ in members],
            "algorithm": algorithm,
        }
        if algorithm == "muon":
            group.update(matrix_view=view, blocks=list(block_sizes) if block_sizes else None)
            if scale is not None:
                group["scale"] = scale
        elif not decay:
            group["weight_decay"] = 0.0
        groups.append(group)
    return sorted(groups, key=lambda g: g["algorithm"] != "muon")


def _check_options(
    overrides: Mapping[str, str], layouts: Mapping[str, str], no_decay: tuple[str, ...]
) -> None:
    for pattern, algorithm in overrides.items():
        if algorithm not in ("muon", "adamw"):
            raise ValueError(
                f"param_groups: overrides[{pattern!r}]={algorithm!r} is unknown; "
                "use 'muon' or 'adamw'"
            )
    for pattern, layout in layouts.items():
        if layout not in LAYOUTS:
            raise ValueError(
                f"param_groups: layouts[{pattern!r}]={layout!r} is unknown; use 'out_in' "
                "((E, out, in), y = x W[e]^T) or 'in_out' ((E, in, out), y = x W[e])"
            )
    roles = ("bias", "norm", "embedding", "vector", "head")
    bad = [r for r in no_decay if r not in roles]
    if bad:
        raise ValueError(f"param_groups: no_decay={no_decay!r}: unknown {bad}; use {roles}")


def _matches(name: str, pattern: str) -> bool:
    short = name.removeprefix(_COMPILED_PREFIX)
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(short, pattern)


def _check_patterns(
    tables: Mapping[str, Mapping[str, Any]], used: set[str], names: list[str]
) -> None:
    """Raise ValueError for a pattern that matched no parameter, naming the closest names."""
    short = [n.removeprefix(_COMPILED_PREFIX) for n in names]
    for option, table in tables.items():
        for pattern in table:
            if pattern in used:
                continue
            close = difflib.get_close_matches(pattern, short, n=3, cutoff=0.4)
            hint = f"closest names: {close}" if close else f"names look like {short[:3]}"
            raise ValueError(
                f"param_groups: {option}[{pattern!r}] matches no parameter; {hint} "
                "(patterns are fnmatch, e.g. '*.qkv.weight')"
            )


def _classify(
    name: str,
    p: nn.Parameter,
    owners: list[tuple[str, nn.Module]],
    heads: tuple[set[int], str],
    traced: _Trace | None,
    layout: str | None,
    parents: Parents,
) -> _Decision:
    """The route of one parameter by the role it has in its module(s) (rules 2-5)."""
    p_name, module = owners[0]
    if any(isinstance(m, _EMBEDDINGS) for _, m in owners):
        tied = len(owners) > 1
        return _Decision("adamw", "embedding (tied to head)" if tied else "embedding", "embedding")
    if id(p) in heads[0]:
        return _Decision("adamw", f"output head (from {heads[1]})", "head")
    for attr, owner in owners:
        found = _matrix_of(attr, owner, p, layout, parents)
        if found is not None:
            return found
    kind = type(module).__name__
    if (
        kind.endswith("Router") and p.ndim >= 2
    ):  # its rows score experts, as a head's rows score classes
        return _Decision("adamw", f"router ({kind})", "head")
    if traced is not None and id(p) in traced.weights and p.ndim == 2:
        view = traced.weights[id(p)]
        how = "F.linear(x, W)" if view == "auto" else "x @ W, stored (in, out)"
        return _Decision("muon", f"matmul weight in the forward ({how})", "matrix", view)
    if p_name.endswith("bias") or p_name.startswith("bias_"):
        return _Decision("adamw", "bias", "bias")
    if "norm" in kind.lower():
        return _Decision("adamw", f"norm ({kind})", "norm")
    if p.ndim < 2:
        return _Decision("adamw", "vector", "vector")
    if p_name == "weight" and p.ndim == 2 and traced is None:
        return _Decision("muon", f"{kind}.weight, read (out, in) as nn.Linear's", "matrix")
    hint = "; declare layouts= for an expert stack" if p.ndim == 3 else ""
    return _Decision(
        "adamw",
        f"{kind}.{p_name}: not a matmul weight (e.g. a class or position token){hint}",
        "embedding",
    )


def _matrix_of(
    attr: str, module: nn.Module, p: torch.Tensor, layout: str | None, parents: Parents
) -> _Decision | None:
    """The muon route of p as parameter ``attr`` of ``module`` when that makes it the weight
    of a matmul-like module, else None."""
    if layout is not None and p.ndim == 3:
        view: View = "batch" if layout == "out_in" else "transposed"
        return _Decision("muon", f"expert stack, declared {layout}", "matrix", view)
    if isinstance(module, nn.Linear) and attr == "weight":
        rows, cols = p.shape
        if parents.get(id(module), ("", None))[0] == "qkv" and rows % 3 == 0:
            return _Decision("muon", "fused QKV (Linear 'qkv')", "matrix", "auto", (rows // 3,) * 3)
        return _Decision("muon", "Linear", "matrix")
    if isinstance(module, _CONVS) and attr == "weight":
        g = module.groups
        if g == 1:
            return _Decision("muon", "conv", "matrix", "flatten")
        per = (g, p.shape[0] // g, math.prod(p.shape[1:]))
        kind = "depthwise" if g == p.shape[0] else f"grouped ({g} groups)"
        return _Decision("muon", f"{kind} conv, one matrix per group", "matrix", per)
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf") and attr == "weight":
        where, parent = parents.get(id(module), ("", None))
        split = getattr(parent, "split_size", None)
        if where == "c_attn" and isinstance(split, int) and p.shape[1] % split == 0:
            parts = (split,) * (p.shape[1] // split)
            return _Decision(
                "muon",
                "fused QKV (Conv1D c_attn, stored (d_in, d_out))",
                "matrix",
                "transposed",
                parts,
            )
        return _Decision("muon", "Conv1D, stored (d_in, d_out)", "matrix", "transposed")
    if isinstance(module, nn.RNNBase) and attr.startswith(("weight_ih", "weight_hh")):
        gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
        split = (p.shape[0] // gates,) * gates if gates > 1 else None
        return _Decision("muon", f"{module.mode} {attr[:9]} (gates split)", "matrix", "auto", split)
    if isinstance(module, nn.RNNBase) and attr.startswith("weight_hr"):
        return _Decision("muon", "LSTM projection", "matrix")
    if isinstance(module, nn.Bilinear) and attr == "weight":
        return _Decision("muon", "Bilinear, read (out, in1 * in2)", "matrix", "flatten")
    if isinstance(module, nn.MultiheadAttention):
        if attr == "in_proj_weight":
            e = module.embed_dim
            return _Decision("muon", "fused QKV (MultiheadAttention)", "matrix", "auto", (e, e, e))
        if attr in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
            return _Decision("muon", "MultiheadAttention projection", "matrix")
    if _is_experts(module) and p.ndim == 3:
        transposed = bool(getattr(module, "is_transposed", False))
        view = "transposed" if transposed else "batch"
        layout_text = "(E, in, out)" if transposed else "(E, out, in)"
        kind = type(module).__name__
        rows = matrix_shape(p.shape, view)[-2]
        if "gate_up" in attr and rows % 2 == 0:
            if getattr(module, "is_concatenated", True):
                return _Decision(
                    "muon", f"{kind} {layout_text}, gate|up split", "matrix", view, (rows // 2,) * 2
                )
            return _Decision(
                "muon", f"{kind} {layout_text}, gate|up interleaved: one matrix", "matrix", view
            )
        return _Decision("muon", f"{kind} {layout_text}", "matrix", view)
    return None


def _is_experts(module: nn.Module) -> bool:
    """A Hugging Face experts module (transformers' use_experts_implementation sets
    ``is_transposed`` on it)."""
    return isinstance(getattr(module, "is_transposed", None), bool)


#: id of a module -> (its attribute name in its parent, the parent)
Parents = dict[int, tuple[str, nn.Module]]


def _parents(model: nn.Module) -> Parents:
    return {
        id(child): (attr, parent)
        for parent in model.modules()
        for attr, child in parent.named_children()
    }


def _row_blocks(
    name: str,
    p: nn.Parameter,
    view: View,
    sizes: Iterable[int] | None,
    head_patterns: list[str],
    heads: Mapping[str, int],
) -> list[int] | None:
    """Row sizes of the matrix blocks of this parameter: the known or given split, further
    cut into per-head blocks by ``heads``."""
    rows = matrix_shape(p.shape, view)[-2]
    out = list(sizes) if sizes is not None else None
    for pattern in head_patterns:
        h = heads[pattern]
        first = out[0] if out else rows
        if not isinstance(h, int) or h < 1 or first % h:
            raise ValueError(
                f"param_groups: heads[{pattern!r}]={h!r} must be an int dividing the "
                f"{first} rows of {name}'s first block"
            )
        head_dim = first // h
        if any(b % head_dim for b in (out or [rows])):
            raise ValueError(
                f"param_groups: {name}'s row blocks {out or [rows]} are not multiples "
                f"of head_dim {head_dim}"
            )
        out = [head_dim] * (rows // head_dim)
    return out


def _api_heads(model: nn.Module) -> tuple[set[int], str]:
    """ids of the output-head weights from the model's API (rule 3 without ``example``),
    and where they came from."""
    inner = getattr(model, "_orig_mod", model)
    for getter in ("get_output_embeddings", "get_classifier"):
        fn = getattr(inner, getter, None)
        if callable(fn):
            head = fn()
            weight = getattr(head, "weight", None)
            found = {id(weight)} if isinstance(weight, torch.Tensor) else set()
            return found, f"{getter}()"
    inside = {  # torch's attention and transformer layers end in hidden Linears, not heads
        id(m)
        for layer in model.modules()
        if isinstance(layer, _TORCH_BLOCKS)
        for m in layer.modules()
    }
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and id(m) not in inside]
    found = {id(linears[-1].weight)} if linears else set()
    return found, "the last nn.Linear; example= finds it from a forward"


_TORCH_BLOCKS = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


# --- the forward pass of ``example`` -------------------------------------------------------

#: Functions whose result is their first tensor argument reshaped, cast or scaled elementwise
#: (the output head's logits may pass through these: views, softcapping, scaling, dropout).
_PASS_THROUGH = {
    "view",
    "reshape",
    "flatten",
    "contiguous",
    "to",
    "float",
    "transpose",
    "permute",
    "squeeze",
    "unsqueeze",
    "__getitem__",
    "tanh",
    "clone",
    "dropout",
    "mul",
    "__mul__",
    "__rmul__",
    "div",
    "__truediv__",
    "type_as",
}


@dataclass
class _Trace:
    #: id of a parameter used as a matmul weight -> its view ("auto": F.linear; "transposed")
    weights: dict[int, View]
    #: ids of the output head's weight (empty: none)
    heads: set[int]


class _Recorder(TorchFunctionMode):
    """Records which parameters the forward uses as matmul weights, and from which weight
    each result came (through _PASS_THROUGH functions)."""

    def __init__(self, params: set[int]) -> None:
        super().__init__()
        self.params = params
        self.weights: dict[int, View] = {}
        self.source: dict[int, int] = {}
        self.keep: list[Any] = []  # results stay alive, so their ids stay unique

    def _param(self, t: Any) -> int | None:
        while isinstance(t, torch.Tensor):
            if id(t) in self.params:
                return id(t)
            t = t._base
        return None

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Iterable[type],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        weight: tuple[int | None, View] = (None, "auto")
        if name == "linear" and len(args) > 1:
            weight = (self._param(args[1]), "auto")
        elif name == "addmm" and len(args) > 2:
            weight = (self._param(args[2]), "transposed")
        elif name in ("matmul", "__matmul__", "mm", "bmm") and len(args) > 1:
            right = self._param(args[1])  # x @ W: W stored (in, out); else W @ x: (out, in)
            weight = (right, "transposed") if right is not None else (self._param(args[0]), "auto")
        elif name.startswith("conv") and len(args) > 1:
            weight = (self._param(args[1]), "flatten")
        if weight[0] is not None:
            self.weights.setdefault(weight[0], weight[1])
            self.source[id(out)] = weight[0]
            self.keep.append(out)
        elif name in _PASS_THROUGH and args and isinstance(out, torch.Tensor):
            scalar_op = name in ("mul", "__mul__", "__rmul__", "div", "__truediv__")
            others = [a for a in args[1:] if isinstance(a, torch.Tensor) and a.numel() > 1]
            if id(args[0]) in self.source and not (scalar_op and others):
                self.source[id(out)] = self.source[id(args[0])]
                self.keep.append(out)
        return out


def _trace(model: nn.Module, example: Any) -> _Trace:
    """One forward pass of ``example`` (eval mode, no grad; modes restored after)."""
    params = {id(p) for p in model.parameters()}
    modes = {m: m.training for m in model.modules()}
    recorder = _Recorder(params)
    try:
        model.eval()
        with torch.no_grad(), recorder:
            if isinstance(example, Mapping):
                out = model(**example)
            elif isinstance(example, tuple):
                out = model(*example)
            else:
                out = model(example)
    finally:
        for m, training in modes.items():
            m.train(training)
    result = _output_tensor(out)
    head = recorder.source.get(id(result)) if result is not None else None
    return _Trace(recorder.weights, {head} if head is not None else set())


def _output_tensor(out: Any) -> torch.Tensor | None:
    """The model output's main tensor: itself, ``logits`` of a mapping, or the first one."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        logits = out.get("logits")
        if isinstance(logits, torch.Tensor):
            return logits
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return next((o for o in out if isinstance(o, torch.Tensor)), None)
    return None
