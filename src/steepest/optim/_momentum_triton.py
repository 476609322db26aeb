"""Triton kernels for the momentum pass: M <- lerp(M, G, 1 - beta), the (Nesterov) direction
written in the stack's dtype, and one float64 partial sum of its squares per block; for one
matrix, or for a whole stack in one launch through tables of data pointers.

Imported lazily (it imports triton at the top); use steepest.optim.fused_momentum.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = [
    "BLOCK",
    "NUM_WARPS",
    "TRITON_TYPES",
    "momentum_direction_triton",
    "momentum_stack_table_triton",
]

#: torch dtype -> Triton dtype, for the kernels that cast table entries to pointers.
TRITON_TYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}

#: Entries per program (and per partial sum) and warps per program (bench/prechain.py).
BLOCK = 4096
NUM_WARPS = 8


@triton.jit
def _lerp(start, end, weight):  # type: ignore[no-untyped-def]  # triton.jit reads the body
    # torch.lerp's two formulas (aten Lerp.h): exact at both ends of the weight range
    if weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1.0 - weight)


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
    NESTEROV: tl.constexpr,
    HAS_FINITE: tl.constexpr,
):
    """One block: M <- lerp(M, G, 1 - beta) stored, the direction stored; its sum of squares
    in float64."""
    m = tl.load(m_ptr + src, mask=ok, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + src, mask=ok, other=0.0).to(tl.float32)
    if HAS_FINITE:  # a non-finite step: G := M, so M is unchanged and the direction is M
        g = tl.where(tl.load(finite_ptr) != 0, g, m)
    m = _lerp(m, g, 1.0 - beta)
    tl.store(m_ptr + src, m.to(m_ptr.dtype.element_ty), mask=ok)
    if NESTEROV:
        d = _lerp(g, m, beta)
    else:
        d = m
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
    NESTEROV: tl.constexpr,
    HAS_FINITE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    squares = _momentum_block(
        g_ptr, m_ptr, d_ptr, src_offset + offs, dst_offset + offs, ok, finite_ptr, beta,
        NESTEROV, HAS_FINITE,
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
    G_TYPE: tl.constexpr,
    M_TYPE: tl.constexpr,
    NESTEROV: tl.constexpr,
    HAS_FINITE: tl.constexpr,
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
        NESTEROV, HAS_FINITE,
    )  # fmt: skip
    tl.store(partial_ptr + r * tl.num_programs(0) + b, squares)


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
) -> None:
    """Launch on the n entries of contiguous g and m from src_offset, writing out from
    dst_offset and cdiv(n, BLOCK) float64 partial sums from partial_offset. Whole tensors
    and offsets, not views: Inductor mishandled a user kernel writing into slices of one
    buffer (an illegal memory access on an H100). The caller checks arguments."""
    block = BLOCK  # read at each call, so that bench/prechain.py can sweep it
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
        NESTEROV=bool(nesterov),
        HAS_FINITE=finite is not None,
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
) -> None:
    """One launch over a stack: g_table and m_table hold the int64 data pointers of K
    contiguous gradients and buffers of dtypes ``types``, each ``per`` matrices of ``size``
    entries; out is the (K per, ...) stack and partials (K per, cdiv(size, BLOCK)) float64.
    CUDA only: Triton's interpreter cannot cast integers to pointers."""
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
        G_TYPE=TRITON_TYPES[types[0]],
        M_TYPE=TRITON_TYPES[types[1]],
        NESTEROV=bool(nesterov),
        HAS_FINITE=finite is not None,
        BLOCK=BLOCK,
        num_warps=NUM_WARPS,
    )
