"""The passes of the fused Muon step before its first product, timed inside a CUDA graph:
momentum, Nesterov direction and the Frobenius normalization into the compute dtype.

Variants (all on one set's float32 parameters, gradients and momenta):
  current   as the fast path runs them today, compiled: foreach lerp of the momentum, foreach
            lerp of the direction (float32), per stack a concatenation, a float64 norm and
            the scaled cast to float16 (steepest.polar.msign._normalize);
  triton    one Triton kernel per parameter: reads G and M, writes M and the unnormalized
            direction in bfloat16 into its stack, and one partial sum of squares per block;
            per stack a sum of the partials (the norm would then scale X X^T, not X);
  inductor  the same computation written per parameter in torch ops, compiled;
  copy      the bandwidth bound of the triton variant's traffic (14 bytes per entry).

Usage: python bench/prechain.py [--set gpt2-small] [--reps 10]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from common import SETS, pipelined, write_result

from steepest.optim.graphs import cuda_capture
from steepest.polar.msign import NORMALIZATION_SAFETY, _normalize

BETA = 0.95
BLOCK = 4096


def momentum_direction_triton():
    import triton
    import triton.language as tl

    @triton.jit
    def kernel(g_ptr, m_ptr, d_ptr, part_ptr, n, beta, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        ok = offs < n
        g = tl.load(g_ptr + offs, mask=ok, other=0.0)
        m = tl.load(m_ptr + offs, mask=ok, other=0.0)
        m = m + (1.0 - beta) * (g - m)
        tl.store(m_ptr + offs, m, mask=ok)
        d = g + beta * (m - g)
        tl.store(d_ptr + offs, d.to(tl.bfloat16), mask=ok)
        tl.store(part_ptr + pid, tl.sum(d * d, axis=0))

    def run(g, m, d, part):
        n = g.numel()
        kernel[(triton.cdiv(n, BLOCK),)](g, m, d, part, n, BETA, BLOCK=BLOCK, num_warps=8)

    return run


def relative(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref).abs().max() / ref.abs().max()).item()


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

    def current(grads, moms):
        torch._foreach_lerp_(moms, grads, 1.0 - BETA)
        directions = torch._foreach_lerp(grads, moms, BETA)
        return [
            _normalize(
                torch.stack([directions[i] for i in members]),
                0.0,
                torch.float16,
                NORMALIZATION_SAFETY,
            )
            for members in stacks.values()
        ]

    outs = {s: torch.empty(len(m), *s, dtype=torch.bfloat16) for s, m in stacks.items()}
    blocks = {s: -(-s[0] * s[1] // BLOCK) for s in stacks}
    parts = {s: torch.empty(len(m), blocks[s]) for s, m in stacks.items()}
    launch = momentum_direction_triton()

    def triton_variant():
        for s, members in stacks.items():
            for k, i in enumerate(members):
                launch(grads[i], moms[i], outs[s][k], parts[s][k])
        return [parts[s].sum(-1) for s in stacks]

    def per_parameter(grads, moms):
        out = []
        for members in stacks.values():
            ds, sums = [], []
            for i in members:
                moms[i].lerp_(grads[i], 1.0 - BETA)
                d = torch.lerp(grads[i], moms[i], BETA)
                ds.append(d.to(torch.bfloat16))
                sums.append(d.square().sum())
            out.append((torch.stack(ds), torch.stack(sums)))
        return out

    compiled_current = torch.compile(current, fullgraph=True, dynamic=False)
    compiled_inductor = torch.compile(per_parameter, fullgraph=True, dynamic=False)
    variants = {
        "current": lambda: compiled_current(grads, moms),
        "triton": triton_variant,
        "inductor": lambda: compiled_inductor(grads, moms),
    }
    rows = {}
    for name, fn in variants.items():
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        replay = cuda_capture(lambda fn=fn: [fn() for _ in range(args.reps)])
        replay()
        rows[name] = pipelined(replay, steps=5) / args.reps
    # bandwidth bound: 14 bytes per entry, as read 8 + write 6 bytes of float32 copies
    src = torch.empty(numel * 2)
    dst = torch.empty(numel * 3 // 2)

    def copy():
        dst.copy_(src[: dst.numel()])
        return src[dst.numel() :].sum()

    replay = cuda_capture(lambda: [copy() for _ in range(args.reps)])
    replay()
    rows["copy (14 B/entry)"] = pipelined(replay, steps=5) / args.reps
    # check the triton variant against float64
    g64 = [g.double() for g in grads]
    m0 = [torch.randn_like(m) for m in moms]
    for m, m_init in zip(moms, m0, strict=True):
        m.copy_(m_init)
    sums = triton_variant()
    worst_m, worst_d, worst_s = 0.0, 0.0, 0.0
    for (s, members), total in zip(stacks.items(), sums, strict=True):
        for k, i in enumerate(members):
            m_ref = m0[i].double() + (1 - BETA) * (g64[i] - m0[i].double())
            d_ref = g64[i] + BETA * (m_ref - g64[i])
            worst_m = max(worst_m, relative(moms[i], m_ref))
            worst_d = max(worst_d, relative(outs[s][k], d_ref))
            ref = d_ref.square().sum()
            worst_s = max(worst_s, ((total[k].double() - ref).abs() / ref).item())
    print(f"triton vs float64: momentum {worst_m:.1e}, direction {worst_d:.1e}, sum {worst_s:.1e}")
    for name, ms in rows.items():
        print(f"{name:22s} {ms * 1e3:8.1f} us  {14 * numel / (ms * 1e-3) / 1e12:5.2f} TB/s at 14 B")
    path = write_result(
        f"prechain-{args.set}",
        {
            "set": args.set,
            "us": {k: v * 1e3 for k, v in rows.items()},
            "triton_errors": {"momentum": worst_m, "direction": worst_d, "sum": worst_s},
        },
        args.out,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
