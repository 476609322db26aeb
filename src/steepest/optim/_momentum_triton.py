"""Triton kernel for one matrix's momentum pass: M <- lerp(M, G, 1 - beta), the (Nesterov)
direction written in the stack's dtype, and one float64 partial sum of its squares per block.

Imported lazily (it imports triton at the top); use steepest.optim.fused_momentum.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["BLOCK", "NUM_WARPS", "momentum_direction_triton"]

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
    src = src_offset + offs
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
    tl.store(d_ptr + dst_offset + offs, d.to(d_ptr.dtype.element_ty), mask=ok)
    d64 = d.to(tl.float64)
    tl.store(partial_ptr + partial_offset + pid, tl.sum(d64 * d64, axis=0))


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
