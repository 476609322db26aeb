"""A 100-step GPT trajectory with the Triton kernels on against the cuBLAS fallback.

Trains the 6-layer, 384-wide char GPT on tiny-shakespeare three times from the same
initialization and batches with steepest.Muon (compile=True, cuda_graph=True):
  * "triton": bf16 iteration, the Triton symmetric kernels for every shape,
  * "cublas": bf16 iteration, cuBLAS only (the fallback),
  * "fp32":   float32 iteration, cuBLAS only (the bf16 tolerance reference),
and prints the largest loss difference along the run and the final relative parameter distance
of triton vs cublas next to cublas vs fp32. Pass: the kernels stay within the bf16-vs-fp32 gap
(at most 2x it, or 1e-2 in loss).

Usage: python bench/trajectory.py [--steps 100]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import write_result

import steepest
from steepest.data import load_shakespeare
from steepest.experiments.gpt import GPT, GPTConfig
from steepest.polar.kernels import symmetric


def run(variant: str, steps: int, data: torch.Tensor, device) -> tuple[list[float], list]:
    symmetric.AUTO_MIN_SIDE = 0 if variant == "triton" else 1 << 30
    torch.manual_seed(0)
    cfg = GPTConfig(65, 256, 6, 6, 384)
    model = GPT(cfg).to(device)
    groups, _ = steepest.param_groups(model, blocks={"*.qkv.weight": [384] * 3})
    opt = steepest.Muon(
        groups,
        lr=0.02,
        adamw_lr=2e-3,
        adamw_fused=True,
        polar_dtype=torch.float32 if variant == "fp32" else torch.bfloat16,
        compile=True,
        cuda_graph=True,
    )
    gen = torch.Generator(device="cpu").manual_seed(1)
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
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    device = torch.device("cuda")
    text = load_shakespeare()
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    runs = {v: run(v, args.steps, data, device) for v in ("triton", "cublas", "fp32")}
    loss_gap = {
        "triton-cublas": max(
            abs(a - b) for a, b in zip(runs["triton"][0], runs["cublas"][0], strict=True)
        ),
        "cublas-fp32": max(
            abs(a - b) for a, b in zip(runs["cublas"][0], runs["fp32"][0], strict=True)
        ),
    }
    param_gap = {
        "triton-cublas": distance(runs["triton"][1], runs["cublas"][1]),
        "cublas-fp32": distance(runs["cublas"][1], runs["fp32"][1]),
    }
    ok = loss_gap["triton-cublas"] <= max(2 * loss_gap["cublas-fp32"], 1e-2)
    for k in loss_gap:
        print(
            f"{k:14s} max |loss diff| {loss_gap[k]:.4f}  "
            f"final rel. param distance {param_gap[k]:.2e}"
        )
    print("final losses: " + ", ".join(f"{v} {runs[v][0][-1]:.4f}" for v in runs))
    print("PASS" if ok else "FAIL", "(kernels within the bf16-vs-fp32 gap)")
    payload = {
        "steps": args.steps,
        "loss_gap": loss_gap,
        "param_gap": param_gap,
        "losses": {v: runs[v][0] for v in runs},
        "pass": ok,
    }
    print(f"wrote {write_result('trajectory', payload, args.out)}")


if __name__ == "__main__":
    main()
