"""Triton kernels for the momentum pass: M <- lerp(M, G, 1 - beta), the (Nesterov) direction
written in the stack's dtype (times a per-matrix prescale where given), and one float64
partial sum of its squares per block; for one matrix, or for a whole stack in one launch
through tables of data pointers. With a prescale, a row kernel then turns the partial sums
into norms and picks each matrix's scale, and a fixup kernel rewrites the rare matrices
whose prescale missed (fused_momentum.momentum_stack's ``prescale``).

Imported lazily (it imports triton at the top); use steepest.optim.fast.fused_momentum.
"""

from __future__ import annotations

from typing import Final

import torch
import triton
import triton.language as tl

__all__ = [
    "BLOCK",
    "FIX_PROGRAMS",
    "NUM_WARPS",
    "TRITON_TYPES",
    "fixup_direction_triton",
    "fixup_stack_table_triton",
    "momentum_direction_triton",
    "momentum_stack_table_triton",
    "prescale_rows_triton",
]

#: torch dtype -> Triton dtype, for the kernels that cast table entries to pointers.
TRITON_TYPES: Final = {
    torch.float32: tl.float32,
    torch.bfloat16: tl.bfloat16,
    torch.float16: tl.float16,
}

#: Entries per program (and per partial sum) and warps per program (measured on an H100).
BLOCK: Final = 4096
NUM_WARPS: Final = 8

#: Programs per matrix of the fixup kernel: each returns at once unless its matrix needs the
#: rewrite, then loops over every FIX_PROGRAMS-th block.
FIX_PROGRAMS: Final = 32


@triton.jit
def _lerp(start, end, weight):  # type: ignore[no-untyped-def]  # triton.jit reads the body
    # torch.lerp's two formulas (aten Lerp.h): exact at both ends of the weight range. A
    # select, not an early return: Triton 3.6 failed to compile returns under a runtime
    # condition inside a loop (the fixup kernel's)
    return tl.where(
        weight < 0.5, start + weight * (end - start), end - (end - start) * (1.0 - weight)
    )


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _direction(g, m, beta, NESTEROV: tl.constexpr):  # type: ignore[no-untyped-def]
    # the direction from G and the updated M: lerp(G, M, beta) with Nesterov, else M
    d = m
    if NESTEROV:
        d = _lerp(g, m, beta)
    return d


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _momentum_block(  # type: ignore[no-untyped-def]  # triton.jit reads the annotations
    g_ptr,
    m_ptr,
    d_ptr,
    src,
    dst,
    ok,
    finite_ptr,
    beta,
    prescale_ptr,
    row,
    NESTEROV: tl.constexpr,
    HAS_FINITE: tl.constexpr,
    HAS_PRESCALE: tl.constexpr,
):
    """One block: M <- lerp(M, G, 1 - beta) stored, the direction stored (times the row's
    prescale); the unscaled direction's sum of squares in float64."""
    m = tl.load(m_ptr + src, mask=ok, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + src, mask=ok, other=0.0).to(tl.float32)
    if HAS_FINITE:  # a non-finite step: G := M, so M is unchanged and the direction is M
        g = tl.where(tl.load(finite_ptr) != 0, g, m)
    m = _lerp(m, g, 1.0 - beta)
    tl.store(m_ptr + src, m.to(m_ptr.dtype.element_ty), mask=ok)
    d = _direction(g, m, beta, NESTEROV)
    if HAS_PRESCALE:  # a power of two: exact unless the result leaves float32's range
        tl.store(d_ptr + dst, (d * tl.load(prescale_ptr + row)).to(d_ptr.dtype.element_ty), mask=ok)
    else:
        tl.store(d_ptr + dst, d.to(d_ptr.dtype.element_ty), mask=ok)
    d64 = d.to(tl.float64)
    return tl.sum(d64 * d64, axis=0)


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _momentum_kernel(  # type: ignore[no-untyped-def]  # triton.jit reads the annotations
    g_ptr,
    m_ptr,
    d_ptr,
    partial_ptr,
    finite_ptr,
    src_offset,
    dst_offset,
    partial_offset,
    n,
    beta,
    prescale_ptr,
    row,
    NESTEROV: tl.constexpr,
    HAS_FINITE: tl.constexpr,
    HAS_PRESCALE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    squares = _momentum_block(
        g_ptr, m_ptr, d_ptr, src_offset + offs, dst_offset + offs, ok, finite_ptr, beta,
        prescale_ptr, row, NESTEROV, HAS_FINITE, HAS_PRESCALE,
    )  # fmt: skip
    tl.store(partial_ptr + partial_offset + pid, squares)


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _momentum_table_kernel(  # type: ignore[no-untyped-def]  # triton.jit reads the annotations
    g_table,
    m_table,
    d_ptr,
    partial_ptr,
    finite_ptr,
    per,
    size,
    beta,
    prescale_ptr,
    G_TYPE: tl.constexpr,
    M_TYPE: tl.constexpr,
    NESTEROV: tl.constexpr,
    HAS_FINITE: tl.constexpr,
    HAS_PRESCALE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # program (b, r): block b of stack row r, matrix j of tensor i (per matrices a tensor)
    b = tl.program_id(0)
    r = tl.program_id(1).to(tl.int64)
    i = r // per
    g_ptr = tl.load(g_table + i).to(tl.pointer_type(G_TYPE))
    m_ptr = tl.load(m_table + i).to(tl.pointer_type(M_TYPE))
    offs = b.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < size
    squares = _momentum_block(
        g_ptr, m_ptr, d_ptr, (r - i * per) * size + offs, r * size + offs, ok, finite_ptr, beta,
        prescale_ptr, r, NESTEROV, HAS_FINITE, HAS_PRESCALE,
    )  # fmt: skip
    tl.store(partial_ptr + r * tl.num_programs(0) + b, squares)


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _prescale_rows_kernel(  # type: ignore[no-untyped-def]  # triton.jit reads the annotations
    partial_ptr,
    blocks,
    prescale_ptr,
    finite_ptr,
    norm_ptr,
    applied_ptr,
    fix_ptr,
    low,
    high,
    HAS_FINITE: tl.constexpr,
    SHARED: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    # program r: matrix r's norm from its partial sums; the scale its stored row carries (the
    # prescale where norm * prescale lies in [low, high], else 2^-e for norm = f 2^e with f in
    # [1/2, 1)); whether the row must be rewritten; the next step's prescale, 2^-e. SHARED
    # (the row is part of a matrix whose other rows other ranks hold): the prescale is kept
    # unless it is zero or norm * prescale exceeds high, and the prescale's entry becomes
    # the scale applied (the caller sets the next one from the whole matrix's norm)
    r = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_P)
    acc = tl.zeros((BLOCK_P,), dtype=tl.float64)
    for start in range(0, blocks, BLOCK_P):
        acc += tl.load(
            partial_ptr + r * blocks + start + offs, mask=start + offs < blocks, other=0.0
        )
    norm = tl.sqrt(tl.sum(acc, axis=0))
    # frexp's exponent from the float64 bits (the norm of float32 entries is a normal float64)
    e = ((norm.to(tl.int64, bitcast=True) >> 52) & 0x7FF) - 1022
    e = tl.minimum(tl.maximum(e, -126), 126).to(tl.int32)
    exact = ((127 - e) << 23).to(tl.float32, bitcast=True)  # 2^-e, a normal float32
    old = tl.load(prescale_ptr + r)
    ratio = norm * old.to(tl.float64)
    finite_norm = norm * 0.0 == 0.0
    if SHARED:
        ok = ((old > 0.0) & (ratio <= high)) | (norm == 0.0) | (finite_norm == 0)
    else:
        ok = ((ratio >= low) & (ratio <= high)) | (norm == 0.0) | (finite_norm == 0)
    applied = tl.where(ok, old, exact)
    tl.store(norm_ptr + r, norm * applied.to(tl.float64))
    tl.store(applied_ptr + r, applied)
    tl.store(fix_ptr + r, tl.where(ok, 0, 1).to(tl.int32))
    if SHARED:
        tl.store(prescale_ptr + r, applied)
    else:
        update = (norm > 0.0) & finite_norm
        if HAS_FINITE:  # a masked (non-finite) step leaves the prescale as it was
            update = update & (tl.load(finite_ptr) != 0)
        tl.store(prescale_ptr + r, tl.where(update, exact, old))


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _fixup_blocks(  # type: ignore[no-untyped-def]  # triton.jit reads the annotations
    g_ptr,
    m_ptr,
    d_ptr,
    src,
    dst,
    size,
    scale,
    finite_ptr,
    beta,
    NESTEROV: tl.constexpr,
    HAS_FINITE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Rewrite this program's share of one matrix's blocks: the direction recomputed from G
    and the updated M, times ``scale``."""
    lanes = tl.arange(0, BLOCK)
    for start in range(tl.program_id(0) * BLOCK, size, tl.num_programs(0) * BLOCK):
        offs = start + lanes
        ok = offs < size
        m = tl.load(m_ptr + src + offs, mask=ok, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + src + offs, mask=ok, other=0.0).to(tl.float32)
        if HAS_FINITE:  # as in the momentum pass: G := M (M was left unchanged)
            g = tl.where(tl.load(finite_ptr) != 0, g, m)
        d = _direction(g, m, beta, NESTEROV) * scale
        tl.store(d_ptr + dst + offs, d.to(d_ptr.dtype.element_ty), mask=ok)


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _fixup_kernel(  # type: ignore[no-untyped-def]  # triton.jit reads the annotations
    g_ptr,
    m_ptr,
    d_ptr,
    fix_ptr,
    applied_ptr,
    finite_ptr,
    src_offset,
    dst_offset,
    row,
    size,
    beta,
    NESTEROV: tl.constexpr,
    HAS_FINITE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    if tl.load(fix_ptr + row) != 0:
        _fixup_blocks(
            g_ptr, m_ptr, d_ptr, src_offset, dst_offset, size, tl.load(applied_ptr + row),
            finite_ptr, beta, NESTEROV, HAS_FINITE, BLOCK,
        )  # fmt: skip


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _fixup_table_kernel(  # type: ignore[no-untyped-def]  # triton.jit reads the annotations
    g_table,
    m_table,
    d_ptr,
    fix_ptr,
    applied_ptr,
    finite_ptr,
    per,
    size,
    beta,
    G_TYPE: tl.constexpr,
    M_TYPE: tl.constexpr,
    NESTEROV: tl.constexpr,
    HAS_FINITE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # program (p, r): the p-th share of stack row r, matrix j of tensor i
    r = tl.program_id(1).to(tl.int64)
    if tl.load(fix_ptr + r) != 0:
        i = r // per
        g_ptr = tl.load(g_table + i).to(tl.pointer_type(G_TYPE))
        m_ptr = tl.load(m_table + i).to(tl.pointer_type(M_TYPE))
        _fixup_blocks(
            g_ptr, m_ptr, d_ptr, (r - i * per) * size, r * size, size,
            tl.load(applied_ptr + r), finite_ptr, beta, NESTEROV, HAS_FINITE, BLOCK,
        )  # fmt: skip


def momentum_direction_triton(
    g: torch.Tensor,
    m: torch.Tensor,
    out: torch.Tensor,
    partials: torch.Tensor,
    beta: float,
    nesterov: bool,
    finite: torch.Tensor | None,
    n: int,
    src_offset: int = 0,
    dst_offset: int = 0,
    partial_offset: int = 0,
    prescale: torch.Tensor | None = None,
    row: int = 0,
) -> None:
    """Launch on the n entries of contiguous g and m from src_offset, writing out from
    dst_offset (times prescale[row] where given) and cdiv(n, BLOCK) float64 partial sums
    from partial_offset. Whole tensors and offsets, not views: Inductor mishandled a user
    kernel writing into slices of one buffer (an illegal memory access on an H100). The
    caller checks arguments."""
    block = BLOCK
    _momentum_kernel[(triton.cdiv(n, block),)](
        g,
        m,
        out,
        partials,
        finite if finite is not None else partials,
        src_offset,
        dst_offset,
        partial_offset,
        n,
        float(beta),
        prescale if prescale is not None else partials,
        row,
        NESTEROV=bool(nesterov),
        HAS_FINITE=finite is not None,
        HAS_PRESCALE=prescale is not None,
        BLOCK=block,
        num_warps=NUM_WARPS,
    )


def momentum_stack_table_triton(
    g_table: torch.Tensor,
    m_table: torch.Tensor,
    types: tuple[torch.dtype, torch.dtype],
    out: torch.Tensor,
    partials: torch.Tensor,
    beta: float,
    nesterov: bool,
    finite: torch.Tensor | None,
    per: int,
    size: int,
    prescale: torch.Tensor | None = None,
) -> None:
    """One launch over a stack: g_table and m_table hold the int64 data pointers of K
    contiguous gradients and buffers of dtypes ``types``, each ``per`` matrices of ``size``
    entries; out is the (K per, ...) stack (row r times prescale[r] where given) and
    partials (K per, cdiv(size, BLOCK)) float64. CUDA only: Triton's interpreter cannot cast
    integers to pointers."""
    rows, blocks = partials.shape
    _momentum_table_kernel[(blocks, rows)](
        g_table,
        m_table,
        out,
        partials,
        finite if finite is not None else partials,
        per,
        size,
        float(beta),
        prescale if prescale is not None else partials,
        G_TYPE=TRITON_TYPES[types[0]],
        M_TYPE=TRITON_TYPES[types[1]],
        NESTEROV=bool(nesterov),
        HAS_FINITE=finite is not None,
        HAS_PRESCALE=prescale is not None,
        BLOCK=BLOCK,
        num_warps=NUM_WARPS,
    )


def prescale_rows_triton(
    partials: torch.Tensor,
    prescale: torch.Tensor,
    finite: torch.Tensor | None,
    window: tuple[float, float],
    shared: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From the (rows, blocks) float64 partial sums: the stored matrices' norms (float64),
    the scale each row carries (float32) and the rows to rewrite (int32, 1 = rewrite);
    prescale (rows,) float32 is updated in place for the next step, or with ``shared``
    holds the scale each row carries. One program per row."""
    rows, blocks = partials.shape
    norms = torch.empty(rows, dtype=torch.float64, device=partials.device)
    applied = torch.empty(rows, dtype=torch.float32, device=partials.device)
    fix = torch.empty(rows, dtype=torch.int32, device=partials.device)
    _prescale_rows_kernel[(rows,)](
        partials,
        blocks,
        prescale,
        finite if finite is not None else fix,
        norms,
        applied,
        fix,
        float(window[0]),
        float(window[1]),
        HAS_FINITE=finite is not None,
        SHARED=bool(shared),
        BLOCK_P=min(triton.next_power_of_2(blocks), 1024),
    )
    return norms, applied, fix


def fixup_direction_triton(
    g: torch.Tensor,
    m: torch.Tensor,
    out: torch.Tensor,
    fix: torch.Tensor,
    applied: torch.Tensor,
    beta: float,
    nesterov: bool,
    finite: torch.Tensor | None,
    size: int,
    src_offset: int,
    dst_offset: int,
    row: int,
) -> None:
    """Rewrite stack row ``row`` (size entries of out from dst_offset) from g and the updated
    m (from src_offset) times applied[row], if fix[row] says so; else the programs return."""
    _fixup_kernel[(FIX_PROGRAMS,)](
        g,
        m,
        out,
        fix,
        applied,
        finite if finite is not None else fix,
        src_offset,
        dst_offset,
        row,
        size,
        float(beta),
        NESTEROV=bool(nesterov),
        HAS_FINITE=finite is not None,
        BLOCK=BLOCK,
        num_warps=NUM_WARPS,
    )


def fixup_stack_table_triton(
    g_table: torch.Tensor,
    m_table: torch.Tensor,
    types: tuple[torch.dtype, torch.dtype],
    out: torch.Tensor,
    fix: torch.Tensor,
    applied: torch.Tensor,
    beta: float,
    nesterov: bool,
    finite: torch.Tensor | None,
    per: int,
    size: int,
) -> None:
    """fixup_direction_triton for every row of a stack in one launch, through the pointer
    tables of momentum_stack_table_triton (CUDA only)."""
    _fixup_table_kernel[(FIX_PROGRAMS, fix.shape[0])](
        g_table,
        m_table,
        out,
        fix,
        applied,
        finite if finite is not None else fix,
        per,
        size,
        float(beta),
        G_TYPE=TRITON_TYPES[types[0]],
        M_TYPE=TRITON_TYPES[types[1]],
        NESTEROV=bool(nesterov),
        HAS_FINITE=finite is not None,
        BLOCK=BLOCK,
        num_warps=NUM_WARPS,
    )
