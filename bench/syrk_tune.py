"""The symmetric-product kernel's tile configurations inside CUDA graphs, with and without TMA.

For the products of GPT-2 small's Gram chain (float16) and direct chain (bfloat16) this times,
in one run and inside recorded CUDA graphs (so launch gaps do not count), cuBLAS's full
product, the symmetric kernel at each tile configuration (its own TILE_CONFIGS plus the ones
named here), each with its tiles loaded through pointers and, for row-major operands, through
TMA descriptors. Every result is checked against a float32 product. (A first run also loaded
column-major operands through descriptors of their transposes: 32.5 / 41.4 us against the
pointer loads' 32.8 / 42.1 us for the 768 x 2304 / 768 x 3072 Gram products. A second run
tried a persistent TMA kernel, 132 programs walking the (batch, upper tile) list: 20.5
against 15.6 us on the float16 s x s product, 55.2 against 42.9 us on the 768 x 3072 one;
with tl.range(flatten=True) it did not compile under Triton 3.6. Code in commit 3b1866a,
results in bench/results/syrk_tune-persistent-*. A third run loaded each diagonal tile of
X X^T once per step (a branch around two loops): slower, 16.2 against 15.5 us and 44.5
against 42.8 us; not kept.)

Usage: python bench/syrk_tune.py [--out bench/results]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from common import in_graph_ms, write_result

from steepest.polar.kernels._syrk_triton import TILE_CONFIGS, syrk_triton, tma_usable

#: Extra configurations of the pointer kernel: 4 warps at 3 stages fit two programs per SM.
EXTRA_CONFIGS = {
    "128x64w4s3": (128, 64, 4, 3),
    "128x64w8s2": (128, 64, 8, 2),
    "128x128w8s2": (128, 128, 8, 2),
    "128x32w4s4": (128, 32, 4, 4),
}


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


def main() -> None:
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
