"""Monitor overhead: training-step time with steepest.diagnostics.Monitor attached vs without.

A tiny GPT (2 layers, width 64, 4 heads, context 64, vocabulary 65; 11 weight matrices) trains
on random tokens with AdamW on CPU, with the intra-op threads training would use (torch's
default unless --threads). Blocks of `--steps` steps (default one cycle of k) without (A) and with
(B) a fresh Monitor (every=k) are interleaved, A B, B A, A B, ... for `--repeats` pairs, so
machine noise and drift hit both alike. A block's per-step time is its wall time / steps (a
median over single steps would skip the 1-in-k recorded steps, where the cost is); the overhead
is the median monitored per-step time over the median plain one, minus 1. Also reported: the
median of the per-pair ratios, the same with process CPU time (less sensitive to other
processes on a shared machine) and the time inside monitor.step() over the training time.
Cases: the default metrics with the Monitor's default threads=1 (the target: < 10% at k = 10),
the same with threads=None (torch's setting), and with --curvature the curvature metrics
("taylor", "layer_split": double backward per record).

Usage: python bench/monitor_overhead.py [--repeats 16] [--steps 10] [--every 10] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import write_result
from torch import nn
from torch.nn import functional as F

from steepest.diagnostics import DEFAULT_METRICS, Monitor


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention and a 4x GELU MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.fc = nn.Linear(width, 4 * width, bias=False)
        self.out = nn.Linear(4 * width, width, bias=False)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=-1)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        # Explicit attention: the fused CPU kernel has no double backward, which the curvature
        # metrics (Hessian-vector products) need.
        scores = (q @ k.transpose(-2, -1)) / (c // self.heads) ** 0.5
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        y = scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class TinyGPT(nn.Module):
    """Token + position embeddings, `layers` blocks, final norm and an untied head."""

    def __init__(self, vocab=65, context=64, layers=2, width=64, heads=4):
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


Batch = tuple[torch.Tensor, torch.Tensor]


def run_block(
    model: nn.Module, opt: torch.optim.Optimizer, batches: list[Batch], monitor: Monitor | None
) -> tuple[float, float, float]:
    """Train on `batches`; return (wall time, process CPU time, wall time inside monitor.step)."""
    in_monitor = 0.0
    cpu = time.process_time()
    start = time.perf_counter()
    for x, y in batches:

        def loss_fn(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            logits = model(x)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

        loss_fn().backward()
        opt.step()
        if monitor is not None:
            t0 = time.perf_counter()
            monitor.step(loss_fn=loss_fn)
            in_monitor += time.perf_counter() - t0
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start, time.process_time() - cpu, in_monitor


def measure(
    metrics: tuple[str, ...], threads: int | None, repeats: int, args: argparse.Namespace, tmp: Path
) -> dict:
    """Interleaved plain (A) / monitored (B) blocks of one case: medians, ratios, raw times."""
    torch.manual_seed(0)
    model = TinyGPT()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)

    def batches() -> list[Batch]:
        tok = torch.randint(0, 65, (args.steps, args.batch, 65), generator=gen)
        return [(t[:, :-1], t[:, 1:]) for t in tok]

    def block(kind: str, i: int) -> tuple[float, float, float]:
        if kind == "A":
            return run_block(model, opt, batches(), None)
        path = tmp / f"{'-'.join(metrics)}-{threads}-{i}.jsonl"
        monitor = Monitor(model, opt, every=args.every, metrics=metrics, path=path, threads=threads)
        times = run_block(model, opt, batches(), monitor)
        monitor.close()
        return times

    block("A", -1)  # warm-up, both kinds
    block("B", -1)
    wall: dict[str, list[float]] = {"A": [], "B": []}
    cpu: dict[str, list[float]] = {"A": [], "B": []}
    share = []
    for i in range(repeats):
        for kind in "AB" if i % 2 == 0 else "BA":
            dt, dcpu, inside = block(kind, i)
            wall[kind].append(dt / args.steps)
            cpu[kind].append(dcpu / args.steps)
            if kind == "B":
                share.append(inside / (dt - inside))
    base, with_monitor = statistics.median(wall["A"]), statistics.median(wall["B"])

    def paired(times: dict[str, list[float]]) -> float:
        return statistics.median(b / a - 1.0 for a, b in zip(times["A"], times["B"], strict=True))

    return {
        "metrics": list(metrics),
        "monitor_threads": threads,
        "every": args.every,
        "steps_per_block": args.steps,
        "repeats": repeats,
        "step_ms": 1e3 * base,
        "step_ms_with_monitor": 1e3 * with_monitor,
        "overhead": with_monitor / base - 1.0,
        "overhead_paired_median": paired(wall),
        "overhead_cpu_time_paired_median": paired(cpu),
        "overhead_monitor_calls": statistics.median(share),
        "plain_step_ms": [1e3 * t for t in wall["A"]],
        "monitored_step_ms": [1e3 * t for t in wall["B"]],
        "plain_step_cpu_ms": [1e3 * t for t in cpu["A"]],
        "monitored_step_cpu_ms": [1e3 * t for t in cpu["B"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=16, help="A/B pairs per case")
    parser.add_argument("--steps", type=int, default=10, help="steps per block (a multiple of k)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's setting")
    parser.add_argument("--curvature", action="store_true", help="add the taylor case (slow)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.every < 1 or args.steps % args.every or args.repeats < 1:
        parser.error(
            f"--steps={args.steps} must be a multiple of --every={args.every} >= 1 and "
            f"--repeats={args.repeats} >= 1"
        )
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = {"layers": 2, "width": 64, "heads": 4, "context": 64, "vocab": 65}
    n_params = sum(p.numel() for p in TinyGPT().parameters())
    load_before = os.getloadavg()
    print(
        f"TinyGPT {model} ({n_params} parameters), batch {args.batch}, AdamW; k = {args.every}, "
        f"{args.steps} steps per block, {args.repeats} A/B pairs; training threads "
        f"{torch.get_num_threads()}, {os.cpu_count()} CPUs, load average {load_before}"
    )
    cases = [
        (tuple(DEFAULT_METRICS), 1, args.repeats),
        (tuple(DEFAULT_METRICS), None, args.repeats),
    ]
    if args.curvature:
        cases.append(((*DEFAULT_METRICS, "taylor", "layer_split"), 1, max(2, args.repeats // 4)))
    results = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for metrics, threads, repeats in cases:
            r = measure(metrics, threads, repeats, args, Path(tmp))
            results.append(r)
            print(
                f"metrics={'+'.join(r['metrics'])} every={r['every']} monitor threads={threads}: "
                f"step {r['step_ms']:.2f} ms, with monitor {r['step_ms_with_monitor']:.2f} ms, "
                f"overhead {100 * r['overhead']:.1f}% (paired median "
                f"{100 * r['overhead_paired_median']:.1f}%, CPU time paired "
                f"{100 * r['overhead_cpu_time_paired_median']:.1f}%, inside monitor.step "
                f"{100 * r['overhead_monitor_calls']:.1f}%)"
            )
    elapsed = time.perf_counter() - start
    print(f"took {elapsed:.0f} s")
    payload = {
        "bench": "monitor_overhead",
        "model": {**model, "parameters": n_params},
        "batch": args.batch,
        "optimizer": "AdamW",
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_before_after": [load_before, os.getloadavg()],
        "seconds": elapsed,
        "cases": results,
    }
    path = write_result("monitor_overhead", payload, out_dir=args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
