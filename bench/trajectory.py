"""A 100-step GPT trajectory with the Triton kernels on against the cuBLAS fallback.

Trains the 6-layer, 384-wide char GPT on tiny-shakespeare four times from the same
initialization and batches with steepest.Muon (compile=True, cuda_graph=True):
  * "triton": bf16 direct iteration, the Triton symmetric kernels for every shape,
  * "gram":   the Gram form (polar_form="gram") in float16 for every matrix, kernels "auto",
  * "gram-triton": the same with the Triton symmetric products (with the diagonal shift in
              their epilogue) for every shape, the chain's products in cuBLAS (the default),
  * "gram-triton-half": the same with the chain's products as Triton half-products of
              commuting iterates too (commuting_product, opt-in),
  * "cublas": bf16 direct iteration, cuBLAS only (the fallback),
  * "fp32":   float32 direct iteration, cuBLAS only (the bf16 tolerance reference),
  * "default": the defaults (polar_form="auto", kernels "auto", the fused stage 1 writing
              bfloat16 directions: steepest.optim.fused_momentum),
  * "default-unfused": the same with engine.FUSED_MOMENTUM off (float32 directions, cast to
              float16 after the normalization),
and prints the largest loss difference along the run and the final relative parameter distance
of triton, gram and gram-triton vs cublas and of default vs default-unfused, next to cublas vs
fp32. Pass: each stays within the
bf16-vs-fp32 gap (at most 2x it, or 1e-2 in loss).

--seed changes the initialization and the batches (default 0, as in earlier results).
--variants runs a subset (the pairs whose both variants ran are compared; the pass needs
cublas and fp32).

(bench/results/trajectory-half-products-run*: two session-8 runs in which "gram-triton"
named today's gram-triton-half and "gram-triton-full-chain" today's gram-triton.)

Usage: python bench/trajectory.py [--steps 100] [--device cuda] [--variants gram-triton,cublas,fp32]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import write_result

import steepest
import steepest.optim.engine as engine
from steepest.data import load_shakespeare
from steepest.experiments.gpt import GPT, GPTConfig
from steepest.polar.kernels import symmetric

NEVER = 1 << 30
DEFAULT_MIN_SIDE = symmetric.AUTO_MIN_SIDE
DEFAULT_COMMUTING_SIDE = symmetric.COMMUTING_AUTO_MIN_SIDE
#: variant -> (AUTO_MIN_SIDE, COMMUTING_AUTO_MIN_SIDE, polar_dtype, polar_form, FUSED_MOMENTUM)
VARIANTS = {
    "triton": (0, 0, torch.bfloat16, "direct", True),
    "gram": (DEFAULT_MIN_SIDE, DEFAULT_COMMUTING_SIDE, None, "gram", True),
    "gram-triton": (0, DEFAULT_COMMUTING_SIDE, None, "gram", True),
    "gram-triton-half": (0, 0, None, "gram", True),
    "cublas": (NEVER, NEVER, torch.bfloat16, "direct", True),
    "fp32": (NEVER, NEVER, torch.float32, "direct", True),
    "default": (DEFAULT_MIN_SIDE, DEFAULT_COMMUTING_SIDE, None, "auto", True),
    "default-unfused": (DEFAULT_MIN_SIDE, DEFAULT_COMMUTING_SIDE, None, "auto", False),
}


def run(
    variant: str, steps: int, data: torch.Tensor, device, seed: int = 0
) -> tuple[list[float], list]:
    min_side, commuting_side, polar_dtype, polar_form, fused = VARIANTS[variant]
    symmetric.AUTO_MIN_SIDE = min_side
    symmetric.COMMUTING_AUTO_MIN_SIDE = commuting_side
    engine.FUSED_MOMENTUM = fused  # read when the step compiles (its first call)
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
        "half-cublas": ("gram-triton-half", "cublas"),
        "half-full": ("gram-triton-half", "gram-triton"),
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
