"""A 100-step GPT trajectory under kernel and fast-path choices, against cuBLAS and float32.

Trains the 6-layer, 384-wide char GPT on tiny-shakespeare from the same initialization and
batches with steepest.Muon (compile=True, cuda_graph=True) in these variants:
  * "triton": bf16 direct iteration, the Triton symmetric kernel (polar_kernel="triton"),
  * "gram":   the Gram form (polar_form="gram") in float16 for every matrix, kernels "auto",
  * "gram-triton": the same with polar_kernel="triton",
  * "cublas": bf16 direct iteration, cuBLAS only (polar_kernel="torch"),
  * "fp32":   float32 direct iteration, cuBLAS only (the bf16 tolerance reference),
  * "default": the defaults (polar_form="auto", kernels "auto", the fused stage 1),
  * "default-unfused": the same with FastPath(fused_momentum=False),
and prints the largest loss difference along the run and the final relative parameter distance
of triton, gram and gram-triton vs cublas and of default vs default-unfused, next to cublas vs
fp32. Pass: each stays within the bf16-vs-fp32 gap (at most 2x it, or 1e-2 in loss).

--seed changes the initialization and the batches. --variants runs a subset (the pairs whose
both variants ran are compared; the pass needs cublas and fp32).

Usage: python bench/trajectory.py [--steps 100] [--device cuda] [--variants gram-triton,cublas,fp32]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import write_result

import steepest
from steepest.data import load_shakespeare
from steepest.experiments.gpt import GPT, GPTConfig
from steepest.optim.fast import FastPath

#: variant -> (polar_kernel, polar_dtype, polar_form, FastPath.fused_momentum)
VARIANTS = {
    "triton": ("triton", torch.bfloat16, "direct", True),
    "gram": ("auto", None, "gram", True),
    "gram-triton": ("triton", None, "gram", True),
    "cublas": ("torch", torch.bfloat16, "direct", True),
    "fp32": ("torch", torch.float32, "direct", True),
    "default": ("auto", None, "auto", True),
    "default-unfused": ("auto", None, "auto", False),
}


def run(
    variant: str, steps: int, data: torch.Tensor, device, seed: int = 0
) -> tuple[list[float], list]:
    polar_kernel, polar_dtype, polar_form, fused = VARIANTS[variant]
    torch._dynamo.reset()
    torch.manual_seed(seed)
    cfg = GPTConfig(65, 256, 6, 6, 384)
    model = GPT(cfg).to(device)
    groups, _ = steepest.param_groups(model, blocks={"*.qkv.weight": [384] * 3})
    opt = steepest.Muon(
        groups,
        lr=0.02,
        adamw_lr=2e-3,
        adamw_fused=True,
        polar_dtype=polar_dtype,
        polar_form=polar_form,
        polar_kernel=polar_kernel,
        fast=FastPath(fused_momentum=fused),
        compile=True,
        cuda_graph=True,
    )
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    losses = []
    for _ in range(steps):
        starts = torch.randint(0, len(data) - 257, (32,), generator=gen)
        batch = torch.stack([data[s : s + 257] for s in starts.tolist()]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        losses.append(loss.item())
    return losses, [p.detach().clone() for p in model.parameters()]


def distance(a: list, b: list) -> float:
    num = sum(float((x - y).float().norm() ** 2) for x, y in zip(a, b, strict=True))
    den = sum(float(y.float().norm() ** 2) for y in b)
    return (num / den) ** 0.5


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default="cuda", help="cpu only checks the script runs")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {list(VARIANTS)}")
    parser.add_argument("--seed", type=int, default=0, help="initialization (batches: seed + 1)")
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    if any(n not in VARIANTS for n in names) or not {"cublas", "fp32"} <= set(names):
        parser.error(f"--variants: names of {list(VARIANTS)}, including cublas and fp32")
    device = torch.device(args.device)
    text = load_shakespeare()
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    runs = {v: run(v, args.steps, data, device, args.seed) for v in names}
    pairs = {
        "triton-cublas": ("triton", "cublas"),
        "gram-cublas": ("gram", "cublas"),
        "gram-triton-cublas": ("gram-triton", "cublas"),
        "default-unfused": ("default", "default-unfused"),
        "cublas-fp32": ("cublas", "fp32"),
    }
    pairs = {k: (a, b) for k, (a, b) in pairs.items() if a in runs and b in runs}
    loss_gap = {
        k: max(abs(x - y) for x, y in zip(runs[a][0], runs[b][0], strict=True))
        for k, (a, b) in pairs.items()
    }
    param_gap = {k: distance(runs[a][1], runs[b][1]) for k, (a, b) in pairs.items()}
    limit = max(2 * loss_gap["cublas-fp32"], 1e-2)
    ok = all(loss_gap[k] <= limit for k in pairs if k != "cublas-fp32")
    for k in loss_gap:
        print(
            f"{k:18s} max |loss diff| {loss_gap[k]:.4f}  "
            f"final rel. param distance {param_gap[k]:.2e}"
        )
    print("final losses: " + ", ".join(f"{v} {runs[v][0][-1]:.4f}" for v in runs))
    print(
        "PASS" if ok else "FAIL", "(kernels, Gram form, fused stage 1 within the bf16-vs-fp32 gap)"
    )
    payload = {
        "steps": args.steps,
        "seed": args.seed,
        "loss_gap": loss_gap,
        "param_gap": param_gap,
        "losses": {v: runs[v][0] for v in runs},
        "pass": ok,
    }
    name = "trajectory" if args.seed == 0 else f"trajectory-seed{args.seed}"
    print(f"wrote {write_result(name, payload, args.out)}")


if __name__ == "__main__":
    main()
