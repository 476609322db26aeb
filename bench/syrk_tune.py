"""The symmetric-product kernel's tile configurations inside CUDA graphs, with and without TMA.

For the products of GPT-2 small's Gram chain (float16) and direct chain (bfloat16) this times,
in one run and inside recorded CUDA graphs (so launch gaps do not count), cuBLAS's full
product, the symmetric kernel at each tile configuration (its own TILE_CONFIGS plus the ones
named here), each with its tiles loaded through pointers and, for row-major operands, through
TMA descriptors. Every result is checked against a float32 product. (A first run also loaded
column-major operands through descriptors of their transposes: 32.5 / 41.4 us against the
pointer loads' 32.8 / 42.1 us for the 768 x 2304 / 768 x 3072 Gram products.)

Usage: python bench/syrk_tune.py [--out bench/results]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import triton
import triton.language as tl
from common import in_graph_ms, write_result

from steepest.polar.kernels._syrk_triton import TILE_CONFIGS, syrk_triton, tma_usable

#: Extra configurations of the pointer kernel: 4 warps at 3 stages fit two programs per SM.
EXTRA_CONFIGS = {
    "128x64w4s3": (128, 64, 4, 3),
    "128x64w8s2": (128, 64, 8, 2),
    "128x128w8s2": (128, 128, 8, 2),
    "128x32w4s4": (128, 32, 4, 4),
}


#: Persistent variants (BLOCK, BLOCK_K, num_warps, num_stages, flatten), an experiment.
PERSISTENT_CONFIGS = {
    "persistent 128x64w8s3": (128, 64, 8, 3, False),
    "persistent 128x64w8s3 flat": (128, 64, 8, 3, True),
    "persistent 128x64w8s4 flat": (128, 64, 8, 4, True),
    "persistent 128x64w4s3 flat": (128, 64, 4, 3, True),
}


@triton.jit
def _syrk_persistent_kernel(
    x_desc,
    c_ptr,
    out_ptr,
    pairs_ptr,
    S,
    L,
    n_pairs,
    total,
    alpha,
    beta,
    shift,
    stride_cb,
    stride_cr,
    stride_cc,
    stride_ob,
    stride_or,
    stride_oc,
    HAS_C: tl.constexpr,
    HAS_SHIFT: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PROGRAMS: tl.constexpr,
    FLATTEN: tl.constexpr,
):
    # Each program walks the (batch, upper tile) list with stride PROGRAMS; pairs_ptr holds
    # i * 65536 + j per upper tile.
    k_tiles = tl.cdiv(L, BLOCK_K)
    offs = tl.arange(0, BLOCK)
    for tile in tl.range(tl.program_id(0), total, PROGRAMS, flatten=FLATTEN):
        batch = tile // n_pairs
        pair = tl.load(pairs_ptr + tile % n_pairs)
        i = pair >> 16
        j = pair & 65535
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
        for kk in range(k_tiles):
            a = x_desc.load([batch, i * BLOCK, kk * BLOCK_K]).reshape(BLOCK, BLOCK_K)
            b = x_desc.load([batch, j * BLOCK, kk * BLOCK_K]).reshape(BLOCK, BLOCK_K)
            acc = tl.dot(a, tl.trans(b), acc)
        rows_i = i * BLOCK + offs
        rows_j = j * BLOCK + offs
        b64 = batch.to(tl.int64)
        result = acc * tl.cast(alpha, tl.float32)
        if HAS_C:
            c_ptrs = c_ptr + b64 * stride_cb + (rows_i % S)[:, None] * stride_cr
            c_ptrs += (rows_j % S)[None, :] * stride_cc
            result += tl.cast(beta, tl.float32) * tl.load(c_ptrs).to(tl.float32)
        if HAS_SHIFT:
            if i == j:
                result += tl.where(offs[:, None] == offs[None, :], tl.cast(shift, tl.float32), 0.0)
        result = result.to(out_ptr.dtype.element_ty)
        o_base = out_ptr + b64 * stride_ob
        keep = (rows_i[:, None] < S) & (rows_j[None, :] < S)
        tl.store(
            o_base + rows_i[:, None] * stride_or + rows_j[None, :] * stride_oc, result, mask=keep
        )
        if i != j:
            keep_t = (rows_j[:, None] < S) & (rows_i[None, :] < S)
            mirror = o_base + rows_j[:, None] * stride_or + rows_i[None, :] * stride_oc
            tl.store(mirror, tl.trans(result), mask=keep_t)


_PAIRS: dict = {}


def syrk_persistent(X, alpha, C, beta, out, config, shift=0.0):
    from triton.tools.tensor_descriptor import TensorDescriptor

    block, block_k, warps, stages, flatten = PERSISTENT_CONFIGS[config]
    batch, s, l = X.shape
    tiles = triton.cdiv(s, block)
    key = (X.device, tiles)
    if key not in _PAIRS:
        pairs = [i * 65536 + j for i in range(tiles) for j in range(i, tiles)]
        _PAIRS[key] = torch.tensor(pairs, dtype=torch.int32, device=X.device)
    pairs = _PAIRS[key]
    total = batch * pairs.numel()
    programs = min(total, torch.cuda.get_device_properties(X.device).multi_processor_count)
    c = C if C is not None else out
    _syrk_persistent_kernel[(programs,)](
        TensorDescriptor.from_tensor(X, [1, block, block_k]), c, out, pairs, s, l,
        pairs.numel(), total, float(alpha), float(beta), float(shift),
        c.stride(0), c.stride(1), c.stride(2), out.stride(0), out.stride(1), out.stride(2),
        HAS_C=C is not None, HAS_SHIFT=shift != 0.0, BLOCK=block, BLOCK_K=block_k,
        PROGRAMS=programs, FLATTEN=flatten, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return out


def cases(device):
    """(name, X, C, alpha, beta, shift) for GPT-2 small's chains (batch 12)."""
    g = torch.Generator(device=device).manual_seed(0)

    def normal(*shape, dtype):
        X = torch.randn(*shape, device=device, generator=g)
        return (X / torch.linalg.matrix_norm(X, keepdim=True) * 1.5).to(dtype)

    h, b = torch.float16, torch.bfloat16
    R = normal(12, 768, 768, dtype=torch.float32)
    R = (R @ R.mT).to(h)
    Rb = R.to(b)
    return [
        ("gram 768x2304 col", normal(12, 2304, 768, dtype=h).mT, None, 1.0, 0.0, 0.0),
        ("gram 768x3072 col", normal(12, 3072, 768, dtype=h).mT, None, 1.0, 0.0, 0.0),
        ("gram 768x3072 row", normal(12, 768, 3072, dtype=h), None, 1.0, 0.0, 0.0),
        ("poly 768 fp16", R, R, -2.3, 4.1, 3.0),
        ("gram 768 bf16", normal(12, 768, 768, dtype=b), None, 1.0, 0.0, 0.0),
        ("poly 768 bf16", Rb, Rb, -2.3, 4.1, 3.0),
    ]


def main() -> None:  # noqa: C901
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    device = torch.device("cuda")
    TILE_CONFIGS.update(EXTRA_CONFIGS)
    rows = []
    for name, X, C, alpha, beta, shift in cases(device):
        ref = alpha * (X.float() @ X.float().mT)
        if C is not None:
            ref += beta * C.float()
        ref.diagonal(dim1=-2, dim2=-1).add_(shift)
        scale = ref.abs().max().item()
        out = torch.empty(X.shape[0], X.shape[1], X.shape[1], device=device, dtype=X.dtype)
        runs = {}
        if C is None:
            runs["cuBLAS"] = partial(torch.bmm, X, X.mT)
        else:
            runs["cuBLAS"] = partial(torch.baddbmm, C, X, X.mT, alpha=alpha, beta=beta)
        for config in TILE_CONFIGS:
            for tma in (False, True) if tma_usable(X) else (False,):
                label = f"{'tma' if tma else 'ptr'} {config}"
                runs[label] = partial(syrk_triton, X, alpha, C, beta, out, config, shift, tma=tma)
        if tma_usable(X):
            for config in PERSISTENT_CONFIGS:
                runs[config] = partial(syrk_persistent, X, alpha, C, beta, out, config, shift)
        row = {"case": name, "us": {}, "error": {}}
        for label, fn in runs.items():
            try:
                result = fn()
                err = (result.float() - ref).abs().max().item() / scale
                if label == "cuBLAS" and shift:
                    err = float("nan")  # baddbmm has no shift
                row["us"][label] = 1e3 * in_graph_ms(fn, args.reps)
                row["error"][label] = err
            except Exception as exc:  # a config that does not compile or run
                row["us"][label] = None
                row["error"][label] = f"{type(exc).__name__}: {str(exc)[:200]}"
        rows.append(row)
        print(f"\n{name}")
        for label in runs:
            us, err = row["us"][label], row["error"][label]
            text = f"{us:8.2f} us  err {err:.2e}" if us is not None else f"failed {err}"
            print(f"  {label:28s} {text}")
    path = write_result("syrk_tune", {"rows": rows}, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
