"""Triton kernel for out = alpha X X^T + beta C + shift I (times an optional factor per matrix)
computing only the upper block-triangle and mirroring it.

Row-major operand tiles are loaded through TMA descriptors (triton.tools.tensor_descriptor)
where the device has them (compute capability >= 9) and the strides allow, others through
pointers; TMA loads measured faster inside CUDA graphs on an H100.

Torch reference: steepest.polar.kernels.symmetric_product(kernel="torch"). Imported lazily (it
imports triton at the top); use steepest.polar.kernels.symmetric_product.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["TILE_CONFIGS", "pick_config", "syrk_triton", "tma_usable"]

#: Named tile configurations (BLOCK, BLOCK_K, num_warps, num_stages) the launcher can use.
TILE_CONFIGS = {
    "128x64w8s3": (128, 64, 8, 3),
    "128x64w8s4": (128, 64, 8, 4),
    "128x128w8s3": (128, 128, 8, 3),
    "128x64w4s4": (128, 64, 4, 4),
    "64x64w4s4": (64, 64, 4, 4),
}


@triton.jit  # type: ignore[untyped-decorator]  # triton ships no type information
def _syrk_kernel(  # type: ignore[no-untyped-def]  # triton.jit reads the annotations
    x_ptr,
    c_ptr,
    out_ptr,
    scale_ptr,
    S,
    L,
    alpha,
    beta,
    shift,
    stride_xb,
    stride_xr,
    stride_xk,
    stride_cb,
    stride_cr,
    stride_cc,
    stride_ob,
    stride_or,
    stride_oc,
    HAS_C: tl.constexpr,
    HAS_SHIFT: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    EVEN_K: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_K: tl.constexpr,
    NUM_STAGES: tl.constexpr,
    TMA: tl.constexpr = False,
):
    # With TMA, x_ptr is a descriptor of the row-major X, whose bounds
    # zero-fill the tiles past s and l; their stride arguments are not read.
    # Program (t, batch) owns upper tile number t, counted row by row: row i holds the
    # n_tiles - i tiles (i, i), (i, i + 1), ..., (i, n_tiles - 1).
    t = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    n_tiles = tl.cdiv(S, BLOCK)
    i = 0
    while t >= n_tiles - i:
        t -= n_tiles - i
        i += 1
    j = i + t

    offs = tl.arange(0, BLOCK)
    rows_i = i * BLOCK + offs
    rows_j = j * BLOCK + offs
    # Rows past S wrap onto valid rows for the pointer loads and C: their products are never
    # stored, so those loads need no mask.
    load_i = rows_i % S
    load_j = rows_j % S
    acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    if TMA:  # descriptor coordinates are int32: the batch index as program_id gives it
        for k0 in tl.range(0, L, BLOCK_K, num_stages=NUM_STAGES):
            a = x_ptr.load([tl.program_id(1), i * BLOCK, k0]).reshape(BLOCK, BLOCK_K)
            b = x_ptr.load([tl.program_id(1), j * BLOCK, k0]).reshape(BLOCK, BLOCK_K)
            acc = tl.dot(a, tl.trans(b), acc)
    else:
        ks = tl.arange(0, BLOCK_K)
        a_ptrs = x_ptr + batch * stride_xb + load_i[:, None] * stride_xr + ks[None, :] * stride_xk
        b_ptrs = x_ptr + batch * stride_xb + load_j[:, None] * stride_xr + ks[None, :] * stride_xk
        for k0 in tl.range(0, L, BLOCK_K, num_stages=NUM_STAGES):
            if EVEN_K:
                a = tl.load(a_ptrs)
                b = tl.load(b_ptrs)
            else:
                k_ok = (k0 + ks)[None, :] < L
                a = tl.load(a_ptrs, mask=k_ok, other=0.0)
                b = tl.load(b_ptrs, mask=k_ok, other=0.0)
            acc = tl.dot(a, tl.trans(b), acc)
            a_ptrs += BLOCK_K * stride_xk
            b_ptrs += BLOCK_K * stride_xk

    # The scalars in float32: torch.compile passes Python floats as float64, which would
    # widen the whole epilogue to float64 (1.4-1.5x slower kernels on an H100).
    result = acc * tl.cast(alpha, tl.float32)
    if HAS_C:
        c_ptrs = (
            c_ptr + batch * stride_cb + load_i[:, None] * stride_cr + load_j[None, :] * stride_cc
        )
        result += tl.cast(beta, tl.float32) * tl.load(c_ptrs).to(tl.float32)
    if HAS_SHIFT:
        if i == j:  # the diagonal lies in the diagonal tiles only
            result += tl.where(offs[:, None] == offs[None, :], tl.cast(shift, tl.float32), 0.0)
    if HAS_SCALE:  # one float32 factor per matrix on the whole result, before the rounding
        result *= tl.load(scale_ptr + batch)
    result = result.to(out_ptr.dtype.element_ty)

    o_base = out_ptr + batch * stride_ob
    keep = (rows_i[:, None] < S) & (rows_j[None, :] < S)
    tl.store(o_base + rows_i[:, None] * stride_or + rows_j[None, :] * stride_oc, result, mask=keep)
    if i != j:
        # Mirror: tile (j, i) is the transpose of tile (i, j), from the same accumulator.
        keep_t = (rows_j[:, None] < S) & (rows_i[None, :] < S)
        mirror = o_base + rows_j[:, None] * stride_or + rows_i[None, :] * stride_oc
        tl.store(mirror, tl.trans(result), mask=keep_t)


def pick_config(s: int, l: int, batch: int) -> str:
    """The tile config for a (batch, s, l) input: 128 tiles unless too few programs result."""
    tiles = -(-s // 128)
    if batch * tiles * (tiles + 1) // 2 < 64:
        return "64x64w4s4"
    return "128x64w8s3"  # fastest or within 2% of the best config on every H100 bench shape


def syrk_triton(
    X: torch.Tensor,
    alpha: float,
    C: torch.Tensor | None,
    beta: float,
    out: torch.Tensor,
    config: str | None = None,
    shift: float = 0.0,
    tma: bool | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Launch on 3-D X (batch, s, l), C and out (batch, s, s); shift is added on the diagonal
    and ``scale`` (batch,) float32, contiguous, multiplies each matrix's result; ``tma`` None:
    TMA loads where tma_usable. The caller checks arguments."""
    batch, s, l = X.shape
    name = config if config is not None else pick_config(s, l, batch)
    block, block_k, warps, stages = TILE_CONFIGS[name]
    tiles = triton.cdiv(s, block)
    c = C if C is not None else out
    if tma is None:
        tma = tma_usable(X)
    x_arg: object = X
    if tma:
        from triton.tools.tensor_descriptor import TensorDescriptor

        x_arg = TensorDescriptor.from_tensor(X, [1, block, block_k])
    grid = (tiles * (tiles + 1) // 2, batch)
    _syrk_kernel[grid](
        x_arg,
        c,
        out,
        scale if scale is not None else out,
        s,
        l,
        float(alpha),
        float(beta),
        float(shift),
        X.stride(0),
        X.stride(1),
        X.stride(2),
        c.stride(0),
        c.stride(1),
        c.stride(2),
        out.stride(0),
        out.stride(1),
        out.stride(2),
        HAS_C=C is not None,
        HAS_SHIFT=shift != 0.0,
        HAS_SCALE=scale is not None,
        EVEN_K=l % block_k == 0,
        BLOCK=block,
        BLOCK_K=block_k,
        NUM_STAGES=stages,
        TMA=tma,
        num_warps=warps,
    )
    return out


@torch.compiler.assume_constant_result  # type: ignore[untyped-decorator]  # untyped in torch
def _has_tma(device: torch.device) -> bool:
    """Whether the device loads through TMA: CUDA compute capability >= 9 (Hopper on); the
    CPU runs the kernel only in Triton's interpreter, which takes descriptors too."""
    if device.type != "cuda":
        return True
    return torch.cuda.get_device_capability(device)[0] >= 9


def tma_usable(M: torch.Tensor) -> bool:
    """Whether a (batch, s, l) operand can be read through a TMA descriptor: row-major, its
    two outer strides and data pointer 16-byte aligned, on a device that has TMA. Column-major
    operands (a tall matrix's transpose) take the pointer loads: through a descriptor of the
    transpose they were no faster on an H100. Under
    torch.compile the pointer cannot be read: Inductor's buffers are aligned, and a misaligned
    view fails the descriptor's own check when it runs."""
    size = M.element_size()
    if M.stride(-1) != 1 or any(st * size % 16 for st in M.stride()[:-1]):
        return False
    if not torch.compiler.is_compiling() and M.data_ptr() % 16:
        return False
    return bool(_has_tma(M.device))
