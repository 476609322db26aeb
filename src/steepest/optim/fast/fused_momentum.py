"""Stage 1 of the fused Muon step in one pass per matrix: momentum, direction, stack and norm.

Unfused, the step writes each float32 direction, reads it again for its Frobenius norm and a
third time to scale and cast it for msign (26 bytes of traffic per entry). ``momentum_stack``
reads G and M, writes M and the direction in a 16-bit dtype straight into its stack, and sums
the direction's squares on the way (14 bytes per entry); msign then takes the norms (its
``frobenius`` argument). On CUDA a whole stack is one Triton launch (steepest.kernels.momentum)
reading its tensors through tables of data pointers, cached by address. With a ``prescale``
the stack is float16, each direction times a power of two kept from the previous step, and
msign folds the normalization into its first products (``unit_scaled``), so no normalized
copy of the stack is made. The torch reference is ``momentum_stack(..., kernel="torch")``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from steepest.kernels import triton_available
from steepest.polar.kernels import KERNELS

from .device_tables import DeviceTables

__all__ = ["PRESCALE_WINDOW", "momentum_stack"]

#: With a prescale, a stored matrix keeps the previous step's power-of-two scale while its
#: Frobenius norm times that scale lies in this window, else it is rewritten with its own
#: scale (norm in [1/2, 1)). A float16 row of norm at most 8 cannot overflow, and one of
#: norm at least 1/4 keeps its entries as far from float16's subnormals as msign's
#: normalized copy within a factor of 4.
PRESCALE_WINDOW = (0.25, 8.0)


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
    prescale: torch.Tensor | None = None,
    shared: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Update the momentum buffers of K same-shape tensors and stack their directions' matrices.

    Math (per matrix, MomentumAlgorithm's): M <- beta M + (1 - beta) G, in place; the direction
    is D = (1 - beta) G + beta M with ``nesterov``, else M. With ``finite`` (a 0-dim bool
    tensor) a False value makes G := M, so M stays and D = M (the engine's no-op step).

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
        prescale: optional (K b,) float32 tensor, one power of two per matrix, kept by the
            caller from step to step and updated in place (start from zeros). Each direction
            is stored times a power of two s: the prescale where its norm times the prescale
            lies in PRESCALE_WINDOW, else 2^-e for norm = f 2^e, f in [1/2, 1) (those rows
            are rewritten by a second, rare pass on CUDA). So a float16 stack needs no
            normalized copy: msign is scale invariant and takes the scaled norms. The next
            step's prescale is each norm's 2^-e (kept for zero or non-finite norms and on a
            False ``finite``). Exponents are clamped to [-126, 126] (norms from about 1e-38
            to 1e38 are stored exactly scaled).
        shared: with ``prescale``, each matrix is a row part of a matrix whose other rows
            other ranks hold, and the prescale is the scale every part uses, set by the
            caller from the whole matrix's norm (zeros when unknown). A part keeps it unless
            it is zero or the part's norm times it exceeds PRESCALE_WINDOW's upper end (then
            it takes its own 2^-e, as above, and the parts differ); on return the prescale
            holds the scale each part was stored times.

    Returns:
        (D, norms): the directions as one (K b, m, n) tensor in ``dtype`` and the Frobenius
        norm of each unrounded direction matrix, (K b,) float64 (summed in float64, so
        entries of any float32 magnitude neither overflow nor underflow); with ``prescale``
        each times its matrix's s, the norms of the stored matrices before rounding.

    References: Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and
    Non-Riemannian Manifolds" (2025), Alg. 1 (momentum); arXiv 2505.16932, Algorithm 1 (the
    Frobenius normalization msign applies next).
    """
    if kernel not in KERNELS:
        raise ValueError(f"momentum_stack: kernel={kernel!r} is unknown; use one of {KERNELS}")
    if shared and prescale is None:
        raise ValueError("momentum_stack: shared=True needs a prescale")
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
    rows = len(grads) * (numel // (m * n))
    if prescale is not None and (
        not isinstance(prescale, torch.Tensor)
        or prescale.shape != (rows,)
        or prescale.dtype != torch.float32
        or prescale.device != grads[0].device
        or not prescale.is_contiguous()
    ):
        got = (
            (tuple(prescale.shape), prescale.dtype)
            if isinstance(prescale, torch.Tensor)
            else prescale
        )
        raise ValueError(
            f"momentum_stack: prescale is {got}; need a contiguous ({rows},) float32 tensor "
            f"on {grads[0].device}, one entry per stacked matrix"
        )
    reason = _triton_unsupported(grads, buffers) if kernel != "torch" else "kernel='torch'"
    if kernel == "triton" and reason:
        raise ValueError(f"momentum_stack: kernel='triton' cannot run: {reason}")
    if reason:
        return _momentum_stack_torch(
            grads, buffers, beta, nesterov, dtype, finite, (m, n), prescale, shared
        )
    stack, norms = torch.ops.steepest.momentum_stack_triton(
        list(grads), list(buffers), float(beta), bool(nesterov), dtype, finite, m, n, prescale,
        bool(shared),
    )  # fmt: skip
    return stack, norms


@torch.library.custom_op(
    "steepest::momentum_stack_triton",
    mutates_args=("buffers", "prescale"),
    schema="(Tensor[] grads, Tensor(a!)[] buffers, float beta, bool nesterov, ScalarType dtype, "
    "Tensor? finite, int m, int n, Tensor(b!)? prescale, bool shared) -> (Tensor, Tensor)",
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
    prescale: torch.Tensor | None,
    shared: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton path of momentum_stack as one opaque op for torch.compile: the buffers are
    declared mutated, so Inductor neither clones them nor the stack around the launches (as it
    did for the bare kernel calls: slower than the unfused stage on an H100). ``prescale``
    has no default in the schema: torch 2.11's boxed call dropped a trailing None default,
    then failed to find the mutated argument."""
    from steepest.kernels import momentum as kernels

    per, size = grads[0].numel() // (m * n), m * n
    blocks = -(-size // kernels.BLOCK)
    device = grads[0].device
    stack = torch.empty((len(grads) * per, m, n), dtype=dtype, device=device)
    partials = torch.empty((len(grads) * per, blocks), dtype=torch.float64, device=device)
    tables = _pointer_tables(grads, buffers)
    if tables is not None:  # one launch for the stack
        kernels.momentum_stack_table_triton(
            *tables, stack, partials, beta, nesterov, finite, per, size, prescale
        )  # fmt: skip
    else:
        for row in range(len(grads) * per):  # one launch per matrix
            kernels.momentum_direction_triton(
                grads[row // per], buffers[row // per], stack, partials, beta, nesterov,
                finite, size, row % per * size, row * size, row * blocks, prescale, row,
            )  # fmt: skip
    if prescale is None:
        return stack, partials.sum(dim=-1).sqrt()
    norms, applied, fix = kernels.prescale_rows_triton(
        partials, prescale, finite, PRESCALE_WINDOW, shared
    )
    if tables is not None:
        kernels.fixup_stack_table_triton(
            *tables, stack, fix, applied, beta, nesterov, finite, per, size
        )  # fmt: skip
    else:
        for row in range(len(grads) * per):
            kernels.fixup_direction_triton(
                grads[row // per], buffers[row // per], stack, fix, applied, beta, nesterov,
                finite, size, row % per * size, row * size, row,
            )  # fmt: skip
    return stack, norms


#: The one-launch kernel's pointer tables, keyed by device, dtypes and data pointers: a
#: model's stacks and, per stack, the gradients of recent steps.
_TABLES = DeviceTables(kept=64)


def _pointer_tables(
    grads: list[torch.Tensor], buffers: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.dtype, torch.dtype]] | None:
    """The int64 data-pointer tables of grads and buffers on their device and their two
    dtypes (steepest.optim.fast.device_tables); None where the one-launch kernel cannot take them:
    on CPU (Triton's interpreter cannot cast integers to pointers), mixed dtypes, or a table
    not yet built while a CUDA graph records. Then the caller launches once per matrix."""
    device = grads[0].device
    types = (grads[0].dtype, buffers[0].dtype)
    if device.type != "cuda" or any(
        (g.dtype, b.dtype) != types for g, b in zip(grads, buffers, strict=True)
    ):
        return None
    tables = _TABLES.get(
        (device, *types, *(t.data_ptr() for t in (*grads, *buffers))),
        lambda: tuple(
            torch.tensor([t.data_ptr() for t in ts], dtype=torch.int64, device=device)
            for ts in (grads, buffers)
        ),
    )
    return None if tables is None else (tables[0], tables[1], types)


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
    prescale: torch.Tensor | None,
    shared: bool,
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
    prescale: torch.Tensor | None = None,
    shared: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """momentum_stack in torch ops (CPU, and wherever the kernel cannot run)."""
    grads = list(grads)
    if finite is not None:
        grads = [torch.where(finite, g, m) for g, m in zip(grads, buffers, strict=True)]
    torch._foreach_lerp_(list(buffers), grads, 1.0 - beta)
    directions = torch._foreach_lerp(grads, list(buffers), beta) if nesterov else buffers
    D = torch.stack(list(directions)).reshape(-1, *matrix)
    norms = torch.linalg.vector_norm(D, dim=(-2, -1), dtype=torch.float64)
    if prescale is None:
        return D.to(dtype), norms
    applied = _prescale_rows_torch(norms, prescale, finite, shared)
    D = D.to(torch.float32) * applied[:, None, None]
    return D.to(dtype), norms * applied.to(torch.float64)


def _prescale_rows_torch(
    norms: torch.Tensor, prescale: torch.Tensor, finite: torch.Tensor | None, shared: bool
) -> torch.Tensor:
    """The scale each row carries, as the Triton row kernel picks it (momentum_stack's
    ``prescale`` and ``shared``); prescale is updated in place for the next step, or with
    ``shared`` set to the scale each row carries."""
    _, exponent = torch.frexp(norms)
    exact = torch.ldexp(torch.ones_like(prescale), -exponent.clamp(-126, 126))
    ratio = norms * prescale.to(torch.float64)
    finite_norm = torch.isfinite(norms)
    low, high = PRESCALE_WINDOW
    in_window = (prescale > 0) & (ratio <= high) if shared else (ratio >= low) & (ratio <= high)
    keep = in_window | (norms == 0) | ~finite_norm
    applied = torch.where(keep, prescale, exact)
    if shared:
        prescale.copy_(applied)
        return applied
    update = (norms > 0) & finite_norm
    if finite is not None:
        update = update & finite
    prescale.copy_(torch.where(update, exact, prescale))
    return applied
