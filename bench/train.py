"""End-to-end training throughput: steepest.Muon against fused AdamW on the same GPT.

One run measures, side by side on one device, the tokens per second of a full training step
(forward, backward, optimizer step, zero_grad) of the experiments' GPT with:
  * fused AdamW on every parameter (the reference),
  * steepest.Muon (param_groups routing; compile=True, cuda_graph=True, fused AdamW groups),
    with its finiteness check (one host sync per step) and with nonfinite="ignore" ("no check"),
  * steepest.Muon eager (the defaults),
  * torch.optim.Muon on the hidden matrices plus fused AdamW on the rest,
and prints tokens/s, ms per step and each one's ratio to AdamW. Random tokens: throughput
does not depend on the data. bf16 autocast, fp32 parameters, the model torch.compile'd.

Configs (issue 7): "gpt2-small" (12 layers, 768 wide, vocabulary 50304, 64 sequences of 1024
tokens per optimizer step in micro-batches) and "char-gpt" (6 layers, 384 wide, vocabulary 65,
32 sequences of 256 tokens).

Usage: python bench/train.py [--configs gpt2-small,char-gpt] [--steps 20]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from common import time_fn, write_result

import steepest
from steepest.experiments.gpt import GPT, GPTConfig

CONFIGS = {
    # name: (GPTConfig, sequences per optimizer step, micro-batch, sequence length)
    "gpt2-small": (GPTConfig(50304, 1024, 12, 12, 768), 64, 16, 1024),
    "char-gpt": (GPTConfig(65, 256, 6, 6, 384), 32, 32, 256),
    "tiny": (GPTConfig(65, 32, 2, 2, 32), 4, 2, 32),
}


def build(name: str, model: torch.nn.Module, device: torch.device) -> list:
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
    routing = {"blocks": {"*.qkv.weight": [model.cfg.width] * 3}}
    if name == "fused AdamW":
        return [torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), **fused)]
    groups, _ = steepest.param_groups(model, **routing)
    if name == "torch.optim.Muon + AdamW":
        hidden = [p for g in groups if g["algorithm"] == "muon" for p in g["params"]]
        rest = [p for g in groups if g["algorithm"] != "muon" for p in g["params"]]
        return [
            torch.optim.Muon(hidden, lr=0.02, adjust_lr_fn="match_rms_adamw"),
            torch.optim.AdamW(rest, lr=1e-3, betas=(0.9, 0.95), **fused),
        ]
    fast = name.startswith("steepest.Muon compile+graph")
    on_gpu = device.type == "cuda"
    return [
        steepest.Muon(
            groups,
            lr=0.02,
            adamw_lr=1e-3,
            adamw_fused=on_gpu or None,
            compile=fast,
            cuda_graph=fast,
            nonfinite="ignore" if name.endswith("no check") else "raise",
        )
    ]


def make_train_step(model, optimizers: list, tokens: torch.Tensor, micro: int):
    """One optimizer step on `tokens` (sequences, length + 1) in micro-batches of `micro`."""

    def train_step() -> None:
        for chunk in tokens.split(micro):
            with torch.autocast(tokens.device.type, dtype=torch.bfloat16):
                logits = model(chunk[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1).float(), chunk[:, 1:].flatten())
            (loss * (chunk.shape[0] / tokens.shape[0])).backward()
        for opt in optimizers:
            opt.step()
        for opt in optimizers:
            opt.zero_grad(set_to_none=False)

    return train_step


def bench_config(config: str, device: torch.device, steps: int) -> dict:
    cfg, sequences, micro, length = CONFIGS[config]
    torch.manual_seed(0)
    base = GPT(cfg).to(device)
    state = {k: v.clone() for k, v in base.state_dict().items()}
    tokens = torch.randint(0, cfg.vocab_size, (sequences, length + 1), device=device)
    names = [
        "fused AdamW",
        "steepest.Muon compile+graph",
        "steepest.Muon compile+graph no check",
        "steepest.Muon eager",
        "torch.optim.Muon + AdamW",
    ]
    results = {}
    for name in names:
        base.load_state_dict(state)
        model = torch.compile(base) if device.type == "cuda" else base
        optimizers = build(name, base, device)

        train_step = make_train_step(model, optimizers, tokens, micro)
        for _ in range(5):  # compilation, recording
            train_step()
        step_ms = time_fn(train_step, warmup=1, repeat=steps)
        opt_ms = time_fn(lambda opts=optimizers: [o.step() for o in opts], warmup=1, repeat=steps)
        results[name] = {
            "step_ms": step_ms,
            "optimizer_ms": opt_ms,
            "tokens_per_s": sequences * length / (step_ms * 1e-3),
        }
        del optimizers, train_step
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"config": config, "tokens_per_step": sequences * length, "runs": results}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="gpt2-small,char-gpt")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    out = []
    t0 = time.time()
    for config in args.configs.split(","):
        r = bench_config(config, device, args.steps)
        out.append(r)
        adamw = r["runs"]["fused AdamW"]
        print(f"\n== {config}: {r['tokens_per_step']} tokens per optimizer step")
        for name, run in r["runs"].items():
            print(
                f"{name:38s} {run['tokens_per_s']:12.0f} tok/s  step {run['step_ms']:8.2f} ms  "
                f"opt {run['optimizer_ms']:7.2f} ms  "
                f"tokens/s vs AdamW {run['tokens_per_s'] / adamw['tokens_per_s']:5.3f}  "
                f"step vs AdamW {run['step_ms'] / adamw['step_ms']:5.3f}x"
            )
    path = write_result("train", {"configs": out, "seconds": time.time() - t0}, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
