"""Stage 1 of the fused Muon step in one pass per matrix: momentum, direction, stack and norm.

The fused step (``compile=True``) otherwise writes each float32 direction, reads it again for
its Frobenius norm and a third time to scale and cast it for msign: 26 bytes of traffic per
entry. ``momentum_stack`` reads G and M, writes M and the direction in a 16-bit dtype straight
into its stack, and sums the direction's squares on the way (14 bytes per entry); msign then
takes the norms instead of computing them (its ``frobenius`` argument). On CUDA the whole
stack is one Triton launch reading its tensors through tables of data pointers, cached by
address: GPT-2 small's four stacks 0.41 ms against 0.53 ms in 48 per-matrix launches on one
H100 (bench/results/kernels-gpt2-small-streams1-session10-*).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from steepest.polar.kernels import KERNELS, triton_available

from .device_tables import DeviceTables

__all__ = ["momentum_stack"]


def _triton_unsupported(grads: Sequence[torch.Tensor], buffers: Sequence[torch.Tensor]) -> str:
    """Why the Triton kernel cannot run on these tensors ("" when it can)."""
    if not triton_available():
        return "the triton package is not installed"
    for t in (*grads, *buffers):
        if t.device.type != "cuda":
            return f"a tensor is on {t.device}, the kernel needs CUDA tensors"
        if not t.is_contiguous():
            return "a gradient or buffer is not contiguous"
        if t.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return f"a tensor is {t.dtype}, the kernel computes in float32"
    return ""


def momentum_stack(
    grads: Sequence[torch.Tensor],
    buffers: Sequence[torch.Tensor],
    beta: float,
    nesterov: bool,
    dtype: torch.dtype,
    finite: torch.Tensor | None = None,
    *,
    matrix: tuple[int, int] | None = None,
    kernel: str = "auto",
    into: Sequence[torch.Tensor] | None = None,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Update the momentum buffers of K same-shape tensors and stack their directions' matrices.

    Math (per matrix, MomentumAlgorithm's): M <- beta M + (1 - beta) G, in place (or written
    into ``into``, M left as it was); the direction is D = (1 - beta) G + beta M with
    ``nesterov``, else M. With ``finite`` (a 0-dim bool tensor) a False value makes G := M, so
    M stays and D = M (the engine's no-op step).

    Args:
        grads, buffers: K >= 1 tensors of one shape with ndim >= 2; buffers are updated in
            place.
        beta: momentum in [0, 1).
        nesterov: the Nesterov direction, or M itself.
        dtype: dtype of the stacked directions (the fused step passes bfloat16 on CUDA).
        finite: optional 0-dim bool tensor, see above.
        matrix: the (m, n) shape the tensors are read as, b = numel / (m n) matrices each
            in memory order; default their last two dimensions.
        kernel: "auto" (the Triton kernel for contiguous 32- and 16-bit CUDA tensors, torch
            otherwise), "torch" or "triton" (ValueError where it cannot run).
        into: K tensors of the buffers' shape and dtype, none of them a buffer, to write the
            new momentum into (the engine's spare buffers); default: the buffers, in place.
            Eager calls only (not under torch.compile).
        out: (stack, norms) tensors to write the result into, shaped and typed as returned
            (the engine's persistent directions); default: new tensors. Eager calls only.

    Returns:
        (D, norms): the directions as one (K b, m, n) tensor in ``dtype`` and the Frobenius
        norm of each unrounded direction matrix, (K b,) float64 (summed in float64, so
        entries of any float32 magnitude neither overflow nor underflow).

    References: seeds/000_0ff94013880c6450.txt, Alg. 1 (momentum); arXiv 2505.16932,
    Algorithm 1 (the Frobenius normalization msign applies next).
    """
    if kernel not in KERNELS:
        raise ValueError(f"momentum_stack: kernel={kernel!r} is unknown; use one of {KERNELS}")
    if not grads or len(grads) != len(buffers):
        raise ValueError(
            f"momentum_stack: got {len(grads)} gradients and {len(buffers)} buffers; need "
            "the same number, at least one"
        )
    shape = grads[0].shape
    if any(t.shape != shape for t in (*grads, *buffers)) or len(shape) < 2:
        raise ValueError(
            "momentum_stack: every gradient and buffer must have one shape with ndim >= 2"
        )
    m, n = matrix if matrix is not None else (shape[-2], shape[-1])
    numel = grads[0].numel()
    if m * n == 0 or numel % (m * n) != 0:
        raise ValueError(
            f"momentum_stack: matrix={(m, n)} does not divide tensors of shape {tuple(shape)}"
        )
    _check_into_and_out(buffers, into, out, len(grads) * (numel // (m * n)), (m, n), dtype)
    reason = _triton_unsupported(grads, buffers) if kernel != "torch" else "kernel='torch'"
    if not reason and into is not None:
        reason = _triton_unsupported(grads, into)
    if kernel == "triton" and reason:
        raise ValueError(f"momentum_stack: kernel='triton' cannot run: {reason}")
    if reason:
        result = _momentum_stack_torch(
            grads, buffers, beta, nesterov, dtype, finite, (m, n), into
        )  # fmt: skip
    elif into is None and out is None:  # the compiled step's call: an opaque op for Inductor
        result = torch.ops.steepest.momentum_stack_triton(
            list(grads), list(buffers), float(beta), bool(nesterov), dtype, finite, m, n
        )
    else:
        kept = list(buffers)
        result = _launch(
            list(grads), kept, list(into) if into is not None else kept,
            float(beta), bool(nesterov), dtype, finite, m, n, out,
        )  # fmt: skip
    if out is None:
        return result
    if result[0] is not out[0]:
        out[0].copy_(result[0])
        out[1].copy_(result[1])
    return out


def _check_into_and_out(
    buffers: Sequence[torch.Tensor],
    into: Sequence[torch.Tensor] | None,
    out: tuple[torch.Tensor, torch.Tensor] | None,
    rows: int,
    matrix: tuple[int, int],
    dtype: torch.dtype,
) -> None:
    if into is not None:
        if len(into) != len(buffers) or any(
            t.shape != b.shape or t.dtype != b.dtype or t.device != b.device
            for t, b in zip(into, buffers, strict=True)
        ):
            raise ValueError(
                "momentum_stack: into must hold one tensor of each buffer's shape, dtype and device"
            )
        if any(t.data_ptr() == b.data_ptr() for t in into for b in buffers):
            raise ValueError("momentum_stack: into must not share memory with the buffers")
    if out is not None:
        stack, norms = out
        if stack.shape != (rows, *matrix) or stack.dtype != dtype or not stack.is_contiguous():
            raise ValueError(
                f"momentum_stack: out[0] is {tuple(stack.shape)} {stack.dtype}; need a "
                f"contiguous {(rows, *matrix)} tensor in {dtype}"
            )
        if norms.shape != (rows,) or norms.dtype != torch.float64:
            raise ValueError(
                f"momentum_stack: out[1] is {tuple(norms.shape)} {norms.dtype}; need "
                f"({rows},) float64"
            )


@torch.library.custom_op(
    "steepest::momentum_stack_triton",
    mutates_args=("buffers",),
    schema="(Tensor[] grads, Tensor(a!)[] buffers, float beta, bool nesterov, ScalarType dtype, "
    "Tensor? finite, int m, int n) -> (Tensor, Tensor)",
)
def _momentum_stack_triton(
    grads: list[torch.Tensor],
    buffers: list[torch.Tensor],
    beta: float,
    nesterov: bool,
    dtype: torch.dtype,
    finite: torch.Tensor | None,
    m: int,
    n: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton path of momentum_stack as one opaque op for torch.compile: the buffers are
    declared mutated, so Inductor neither clones them nor the stack around the launches (as it
    did for the bare kernel calls: slower than the unfused stage on an H100)."""
    return _launch(grads, buffers, buffers, beta, nesterov, dtype, finite, m, n, None)


def _launch(
    grads: list[torch.Tensor],
    buffers: list[torch.Tensor],
    into: list[torch.Tensor],
    beta: float,
    nesterov: bool,
    dtype: torch.dtype,
    finite: torch.Tensor | None,
    m: int,
    n: int,
    out: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton launches: one per stack through pointer tables, else one per matrix."""
    from ._momentum_triton import BLOCK, momentum_direction_triton, momentum_stack_table_triton

    per, size = grads[0].numel() // (m * n), m * n
    blocks = -(-size // BLOCK)
    device = grads[0].device
    stack = out[0] if out is not None else torch.empty(
        (len(grads) * per, m, n), dtype=dtype, device=device
    )  # fmt: skip
    partials = torch.empty((len(grads) * per, blocks), dtype=torch.float64, device=device)
    tables = _pointer_tables(grads, buffers, into)
    if tables is not None:  # one launch for the stack
        momentum_stack_table_triton(
            *tables, stack, partials, beta, nesterov, finite, per, size
        )  # fmt: skip
    else:
        row = 0
        for g, buf, new in zip(grads, buffers, into, strict=True):  # one launch per matrix
            for j in range(per):
                momentum_direction_triton(
                    g, buf, new, stack, partials, beta, nesterov, finite, size,
                    j * size, row * size, row * blocks,
                )  # fmt: skip
                row += 1
    if out is None:
        return stack, partials.sum(dim=-1).sqrt()
    torch.sqrt(partials.sum(dim=-1), out=out[1])
    return out


#: The one-launch kernel's pointer tables, keyed by device, dtypes and data pointers: a
#: model's stacks and, per stack, the gradients of recent steps.
_TABLES = DeviceTables(kept=64)


def _pointer_tables(
    grads: list[torch.Tensor], buffers: list[torch.Tensor], into: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.dtype, torch.dtype]] | None:
    """The int64 data-pointer tables of grads, buffers and the buffers the new momentum goes
    to on their device, and the two dtypes (steepest.optim.device_tables); None where the
    one-launch kernel cannot take them: on CPU (Triton's interpreter cannot cast integers to
    pointers), mixed dtypes, or a table not yet built while a CUDA graph records. Then the
    caller launches once per matrix."""
    device = grads[0].device
    types = (grads[0].dtype, buffers[0].dtype)
    if device.type != "cuda" or any(
        (g.dtype, b.dtype) != types for g, b in zip(grads, buffers, strict=True)
    ):
        return None
    tensors = (grads, buffers) if into is buffers else (grads, buffers, into)
    tables = _TABLES.get(
        (device, len(tensors), *types, *(t.data_ptr() for ts in tensors for t in ts)),
        lambda: tuple(
            torch.tensor([t.data_ptr() for t in ts], dtype=torch.int64, device=device)
            for ts in tensors
        ),
    )
    if tables is None:
        return None
    return tables[0], tables[1], tables[-1] if into is not buffers else tables[1], types


@_momentum_stack_triton.register_fake
def _momentum_stack_triton_fake(
    grads: list[torch.Tensor],
    buffers: list[torch.Tensor],
    beta: float,
    nesterov: bool,
    dtype: torch.dtype,
    finite: torch.Tensor | None,
    m: int,
    n: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    rows = len(grads) * (grads[0].numel() // (m * n))
    return (
        grads[0].new_empty((rows, m, n), dtype=dtype),
        grads[0].new_empty((rows,), dtype=torch.float64),
    )


def _momentum_stack_torch(
    grads: Sequence[torch.Tensor],
    buffers: Sequence[torch.Tensor],
    beta: float,
    nesterov: bool,
    dtype: torch.dtype,
    finite: torch.Tensor | None,
    matrix: tuple[int, int],
    into: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """momentum_stack in torch ops (CPU, and wherever the kernel cannot run)."""
    grads = list(grads)
    if finite is not None:
        grads = [torch.where(finite, g, m) for g, m in zip(grads, buffers, strict=True)]
    if into is None:
        torch._foreach_lerp_(list(buffers), grads, 1.0 - beta)
        into = buffers
    else:
        torch._foreach_copy_(list(into), torch._foreach_lerp(list(buffers), grads, 1.0 - beta))
    directions = torch._foreach_lerp(grads, list(into), beta) if nesterov else into
    D = torch.stack(list(directions)).reshape(-1, *matrix)
    norms = torch.linalg.vector_norm(D, dim=(-2, -1), dtype=torch.float64)
    return D.to(dtype), norms
