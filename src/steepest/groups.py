"""Parameter routing: which tensors of a model are matrices for Muon and which go to AdamW.

Rules, in order (the first that applies wins):

1. ``overrides``: a name pattern (fnmatch) mapped to "muon" or "adamw".
2. vectors and scalars (ndim < 2): adamw ("vector").
3. embedding tables (nn.Embedding, nn.EmbeddingBag), and any weight tied to one: adamw.
4. the output head: an nn.Linear whose out_features equals ``num_outputs`` (default: the
   largest embedding's num_embeddings, i.e. the vocabulary), or else the last nn.Linear
   registered in the model: adamw ("head").
5. conv weights (out, in, *k): muon, read as (out, in * prod(k)). A Hugging Face
   ``Conv1D`` (GPT-2; a module of that class name with an ``nf`` attribute, found without
   importing transformers) stores a linear weight as (d_in, d_out): muon, read through the
   "transposed" view as the (d_out, d_in) matrix.
6. 3D weights outside convs: muon, a batch of matrices (stacked experts).
7. every other weight with ndim >= 2: muon (Linear (out, in); ndim >= 4 flattened).

``blocks`` and ``heads`` split a matrix's rows: a fused QKV weight (3 d, d) with blocks
[d, d, d] is dualized as three (d, d) matrices; heads=h further splits each block into h
per-head matrices (head_dim = first block / h).

References: seeds/000_0ff94013880c6450.txt, §3.1 (Muon is for hidden-layer matrices) and
Condition 1 (the shape scale); arXiv 2502.16982 (Moonlight: embeddings and head on AdamW).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from steepest.matrices.views import check_view, matrix_shape
from steepest.optim.scaling import check_scale, scale_factor

__all__ = ["Route", "RoutingReport", "param_groups"]

_CONVS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


@dataclass(frozen=True)
class Route:
    """Where one parameter went: its matrices, algorithm and effective lr multiplier."""

    name: str
    shape: tuple[int, ...]
    algorithm: str
    reason: str
    matrices: tuple[tuple[int, ...], ...] = ()
    lr_multiplier: float = 1.0


class RoutingReport(list[Route]):
    """A list of Route; ``str(report)`` is a table, ``report.algorithm_of(name)`` looks one up."""

    def algorithm_of(self, name: str) -> str:
        for route in self:
            if route.name == name:
                return route.algorithm
        raise KeyError(f"param_groups report: no parameter named {name!r}")

    def names(self, algorithm: str) -> list[str]:
        return [r.name for r in self if r.algorithm == algorithm]

    def __str__(self) -> str:
        rows = [("parameter", "shape", "matrix view", "algorithm", "lr x", "why")]
        for r in self:
            view = " + ".join("x".join(map(str, m)) for m in r.matrices) or "-"
            shape = "x".join(map(str, r.shape)) or "scalar"
            rows.append((r.name, shape, view, r.algorithm, f"{r.lr_multiplier:.3g}", r.reason))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
        totals = {
            a: sum(math.prod(r.shape) for r in self if r.algorithm == a) for a in ("muon", "adamw")
        }
        lines.append(
            ", ".join(f"{a}: {len(self.names(a))} tensors, {n} numbers" for a, n in totals.items())
        )
        return "\n".join(lines)


def param_groups(
    model: nn.Module,
    *,
    num_outputs: int | None = None,
    overrides: dict[str, str] | None = None,
    blocks: dict[str, list[int]] | None = None,
    heads: dict[str, int] | None = None,
    scale: str | float | None = None,
) -> tuple[list[dict[str, Any]], RoutingReport]:
    """Route a model's parameters into "muon" and "adamw" param groups.

    Args:
        model: the module; shared (tied) parameters appear once, under their first name.
        num_outputs: out_features of the output head (vocabulary or number of classes);
            default: the largest embedding's num_embeddings, else the last nn.Linear is the head.
        overrides: fnmatch pattern of a parameter name -> "muon" or "adamw".
        blocks: pattern -> row sizes splitting the weight's matrix (fused QKV: [d, d, d]).
        heads: pattern -> number of heads; each row block (or the whole matrix) is split into
            per-head matrices that are orthogonalized separately.
        scale: if given, the Muon shape rule stored in the muon groups; the report's lr
            multipliers use it (default "spectral", Muon's default).

    Returns:
        (groups, report): groups for ``steepest.Muon`` / ``steepest.Steepest`` (each with
        ``algorithm``, ``param_names`` and, for muon, ``matrix_view`` and ``blocks``), and a
        RoutingReport that prints one line per parameter.
    """
    overrides, blocks, heads = dict(overrides or {}), dict(blocks or {}), dict(heads or {})
    for pattern, algorithm in overrides.items():
        if algorithm not in ("muon", "adamw"):
            raise ValueError(
                f"param_groups: overrides[{pattern!r}]={algorithm!r} is unknown; "
                "use 'muon' or 'adamw'"
            )
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
    heads_found = _find_heads(model, num_outputs)

    routes = RoutingReport()
    grouped: dict[tuple[str, str, tuple[int, ...] | None], list[tuple[str, nn.Parameter]]] = {}
    for key, (name, p) in named.items():
        if not p.requires_grad:
            continue
        algorithm, reason, view = _classify(name, p, owners[key], heads_found, overrides)
        row_blocks = _row_blocks(name, p, view, blocks, heads) if algorithm == "muon" else None
        matrices: tuple[tuple[int, ...], ...] = ()
        multiplier = 1.0
        if algorithm == "muon":
            check_view("param_groups", name, p.shape, view, row_blocks)
            full = matrix_shape(p.shape, view)
            sizes = row_blocks or [full[-2]]
            matrices = tuple((*full[:-2], r, full[-1]) for r in sizes)
            multiplier = scale_factor(rule, sizes[0], full[-1])
            if len(set(sizes)) > 1:
                reason += " (lr x of the first block)"
        routes.append(Route(name, tuple(p.shape), algorithm, reason, matrices, multiplier))
        group_key = (algorithm, view, tuple(row_blocks) if row_blocks else None)
        grouped.setdefault(group_key, []).append((name, p))

    groups: list[dict[str, Any]] = []
    for (algorithm, view, block_sizes), members in grouped.items():
        group: dict[str, Any] = {
            "params": [p for _, p in members],
            "param_names": [n for n, _ in members],
        }
        group["algorithm"] = algorithm
        if algorithm == "muon":
            group.update(matrix_view=view, blocks=list(block_sizes) if block_sizes else None)
            if scale is not None:
                group["scale"] = scale
        groups.append(group)
    return groups, routes


def _find_heads(model: nn.Module, num_outputs: int | None) -> set[int]:
    """ids of the output-head weights (see the module docstring, rule 4)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if num_outputs is None:
        sizes = [m.num_embeddings for m in model.modules() if isinstance(m, _EMBEDDINGS)]
        num_outputs = max(sizes) if sizes else None
    found = {
        id(m.weight) for m in linears if num_outputs is not None and m.out_features == num_outputs
    }
    if not found and linears:
        found = {id(linears[-1].weight)}
    return found


def _is_transposed_linear(p_name: str, module: nn.Module) -> bool:
    """True for the weight of a Hugging Face Conv1D: (d_in, d_out), y = x W + b."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and p_name == "weight"


def _classify(
    name: str,
    p: nn.Parameter,
    owners: list[tuple[str, nn.Module]],
    heads_found: set[int],
    overrides: dict[str, str],
) -> tuple[str, str, str]:
    """(algorithm, reason, matrix_view) of one parameter."""
    module_types = [type(m) for _, m in owners]
    transposed = p.ndim == 2 and any(_is_transposed_linear(n, m) for n, m in owners)
    if transposed:
        view = "transposed"
    elif any(isinstance(m, _CONVS) for _, m in owners):
        view = "flatten"
    elif p.ndim == 3:
        view = "batch"
    else:
        view = "auto"
    for pattern, algorithm in overrides.items():
        if fnmatch.fnmatchcase(name, pattern):
            return algorithm, f"override {pattern!r}", view
    if p.ndim < 2:
        return "adamw", "vector", view
    if any(issubclass(t, _EMBEDDINGS) for t in module_types):
        tied = len(owners) > 1
        return "adamw", "embedding (tied to head)" if tied else "embedding", view
    if id(p) in heads_found:
        return "adamw", "output head", view
    if transposed:
        return "muon", "hidden matrix (Conv1D, stored (d_in, d_out))", view
    if view == "flatten":
        return "muon", "conv", view
    if view == "batch":
        return "muon", "stacked matrices", view
    return "muon", "hidden matrix", view


def _row_blocks(
    name: str,
    p: nn.Parameter,
    view: str,
    blocks: dict[str, list[int]],
    heads: dict[str, int],
) -> list[int] | None:
    """Row sizes of the matrix blocks requested for this parameter by `blocks` and `heads`."""
    rows = matrix_shape(p.shape, view)[-2]
    sizes: list[int] | None = None
    for pattern, given in blocks.items():
        if fnmatch.fnmatchcase(name, pattern):
            sizes = list(given)
    for pattern, h in heads.items():
        if fnmatch.fnmatchcase(name, pattern):
            first = sizes[0] if sizes else rows
            if not isinstance(h, int) or h < 1 or first % h:
                raise ValueError(
                    f"param_groups: heads[{pattern!r}]={h!r} must be an int dividing the "
                    f"{first} rows of {name}'s first block"
                )
            head_dim = first // h
            if any(b % head_dim for b in (sizes or [rows])):
                raise ValueError(
                    f"param_groups: {name}'s row blocks {sizes or [rows]} are not multiples "
                    f"of head_dim {head_dim}"
                )
            sizes = [head_dim] * (rows // head_dim)
    return sizes
