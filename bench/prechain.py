"""The passes of the fused Muon step before its first product, timed inside a CUDA graph:
momentum, Nesterov direction and the Frobenius normalization into msign's compute dtype.

Variants (all on one set's float32 gradients and momenta, compiled as the fast path runs them):
  unfused   foreach lerp of the momentum, foreach lerp of the direction (float32), per stack a
            concatenation, a float64 norm and the scaled cast to float16 (engine.FUSED_MOMENTUM
            off);
  fused     steepest.optim.fused_momentum.momentum_stack per stack (one Triton pass per matrix:
            bfloat16 directions and float64 partial sums of squares), then the scaled cast to
            float16 with those norms (the default);
  fused B/w the fused variant's kernel with BLOCK entries and w warps per program;
  copy      the bandwidth bound of the kernel's traffic (14 bytes per entry).

Usage: python bench/prechain.py [--set gpt2-small] [--reps 10]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from common import SETS, in_graph_ms, write_result

import steepest.optim._momentum_triton as kernel_module
from steepest.optim.fused_momentum import momentum_stack
from steepest.polar.msign import NORMALIZATION_SAFETY, _normalization, _normalize

BETA = 0.95
CONFIGS = [(1024, 4), (2048, 4), (4096, 4), (4096, 8), (8192, 8), (16384, 16)]


def relative(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref).abs().max() / ref.abs().max()).item()


def normalized(D: torch.Tensor, norms: torch.Tensor | None = None) -> torch.Tensor:
    """msign's normalized float16 copy of the stack D (norms: known Frobenius norms)."""
    return _normalize(D, _normalization(D, 0.0, NORMALIZATION_SAFETY, norms), torch.float16)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="gpt2-small")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    torch.set_default_device("cuda")
    shapes = SETS[args.set]
    grads = [torch.randn(*s) for s in shapes]
    moms = [torch.randn(*s) * 0.1 for s in shapes]
    stacks: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, s in enumerate(shapes):
        stacks[s].append(i)
    numel = sum(g.numel() for g in grads)

    def unfused(grads, moms):
        torch._foreach_lerp_(moms, grads, 1.0 - BETA)
        directions = torch._foreach_lerp(grads, moms, BETA)
        return [
            normalized(torch.stack([directions[i] for i in members])) for members in stacks.values()
        ]

    def fused(grads, moms):
        out = []
        for members in stacks.values():
            D, norms = momentum_stack(
                [grads[i] for i in members], [moms[i] for i in members], BETA, True, torch.bfloat16
            )
            out.append(normalized(D, norms))
        return out

    rows: dict[str, float] = {}
    compiled_unfused = torch.compile(unfused, fullgraph=True, dynamic=False)
    rows["unfused"] = in_graph_ms(lambda: compiled_unfused(grads, moms), args.reps)
    default = (kernel_module.BLOCK, kernel_module.NUM_WARPS)
    for block, warps in [default, *[c for c in CONFIGS if c != default]]:
        kernel_module.BLOCK, kernel_module.NUM_WARPS = block, warps
        torch._dynamo.reset()
        compiled_fused = torch.compile(fused, fullgraph=True, dynamic=False)
        name = "fused" if (block, warps) == default else f"fused {block}/{warps}"
        rows[name] = in_graph_ms(lambda fn=compiled_fused: fn(grads, moms), args.reps)
    kernel_module.BLOCK, kernel_module.NUM_WARPS = default
    src, dst = torch.empty(numel * 2), torch.empty(numel * 3 // 2)

    def copy():  # reads 8 bytes and writes 6 per entry
        dst.copy_(src[: dst.numel()])
        return [src[dst.numel() :].sum()]

    rows["copy (14 B/entry)"] = in_graph_ms(copy, args.reps)

    # the default kernel against float64, on fresh momenta
    m0 = [torch.randn_like(m) for m in moms]
    for m, m_init in zip(moms, m0, strict=True):
        m.copy_(m_init)
    worst = {"momentum": 0.0, "direction": 0.0, "norm": 0.0}
    for members in stacks.values():
        D, norms = momentum_stack(
            [grads[i] for i in members], [moms[i] for i in members], BETA, True, torch.bfloat16
        )
        for k, i in enumerate(members):
            g, m_init = grads[i].double(), m0[i].double()
            m_ref = m_init + (1 - BETA) * (g - m_init)
            d_ref = g + BETA * (m_ref - g)
            worst["momentum"] = max(worst["momentum"], relative(moms[i], m_ref))
            worst["direction"] = max(worst["direction"], relative(D[k], d_ref))
            norm_error = abs(norms[k].item() - d_ref.norm().item()) / d_ref.norm().item()
            worst["norm"] = max(worst["norm"], norm_error)
    print("kernel vs float64: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    for name, ms in rows.items():
        print(f"{name:22s} {ms * 1e3:8.1f} us  {14 * numel / (ms * 1e-3) / 1e12:5.2f} TB/s at 14 B")
    payload = {
        "set": args.set,
        "us": {k: v * 1e3 for k, v in rows.items()},
        "default_config": {"BLOCK": default[0], "NUM_WARPS": default[1]},
        "kernel_errors": worst,
    }
    print(f"wrote {write_result(f'prechain-{args.set}', payload, args.out)}")


if __name__ == "__main__":
    main()
