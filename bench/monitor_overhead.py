"""Monitor overhead: training-step time with steepest.diagnostics.Monitor attached vs without.

A tiny GPT (2 layers, width 64, 4 heads, context 64, vocabulary 65; 11 weight matrices) trains
on random tokens with AdamW on CPU, with the intra-op threads training would use (torch's
default unless --threads). Two identical copies train side by side on the same batches, A
without and B with a Monitor (every=k), interleaved step by step (A B, B A, A B, ...), so the
load of a shared machine hits both alike. Times are summed over cycles of k steps (one record,
its smoothness line and one snapshot per cycle for B; a median over single steps would skip the
recorded steps, where the cost is). Reported per case: median per-step time of A and B over the
cycles and their ratio (the overhead), the median of the per-cycle ratios in wall and in
process CPU time, and the time inside monitor.step() over B's training time. Cases: a null
case (B without a Monitor too: the noise floor of the ratios on this machine), the default
metrics with the Monitor's default threads=1 (the target: < 10% at k = 10), the same with
threads=None (torch's setting), and with --curvature the curvature metrics ("taylor",
"layer_split": double backward per record). --seconds bounds the total time (at least
--min-cycles cycles per case).

Usage: python bench/monitor_overhead.py [--cycles 30] [--every 10] [--seconds 150] [--threads N]
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


class Trainer:
    """One model + AdamW (+ optional Monitor); `step` trains on one batch and times itself."""

    def __init__(self, monitor_args: dict | None) -> None:
        torch.manual_seed(0)
        self.model = TinyGPT()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.monitor = (
            None if monitor_args is None else Monitor(self.model, self.opt, **monitor_args)
        )

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
        """(wall time, process CPU time, wall time inside monitor.step) of one training step."""
        model = self.model

        def loss_fn() -> torch.Tensor:
            logits = model(x)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

        cpu, start = time.process_time(), time.perf_counter()
        loss_fn().backward()
        self.opt.step()
        inside = 0.0
        if self.monitor is not None:
            t0 = time.perf_counter()
            self.monitor.step(loss_fn=loss_fn)
            inside = time.perf_counter() - t0
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start, time.process_time() - cpu, inside


def measure(
    metrics: tuple[str, ...],
    threads: int | None,
    cycles: int,
    seconds: float,
    args: argparse.Namespace,
    tmp: Path,
) -> dict:
    """Cycles of k steps of A (plain) and B (monitored) interleaved step by step."""
    path = tmp / f"{'-'.join(metrics)}-{threads}.jsonl"
    plain = Trainer(None)
    monitor_args = {"every": args.every, "metrics": metrics, "path": path, "threads": threads}
    monitored = Trainer(monitor_args if metrics else None)
    gen = torch.Generator().manual_seed(1)
    wall: dict[str, list[float]] = {"A": [], "B": []}
    cpu: dict[str, list[float]] = {"A": [], "B": []}
    share: list[float] = []
    start = time.perf_counter()
    for cycle in range(cycles + 1):  # cycle 0 warms up
        tokens = torch.randint(0, 65, (args.every, args.batch, 65), generator=gen)
        sums = {"A": [0.0, 0.0], "B": [0.0, 0.0]}
        inside = 0.0
        for i, t in enumerate(tokens):
            x, y = t[:, :-1], t[:, 1:]
            for kind in "AB" if i % 2 == 0 else "BA":
                dt, dcpu, din = (plain if kind == "A" else monitored).step(x, y)
                sums[kind][0] += dt
                sums[kind][1] += dcpu
                inside += din
        if cycle > 0:
            for kind in "AB":
                wall[kind].append(sums[kind][0] / args.every)
                cpu[kind].append(sums[kind][1] / args.every)
            share.append(inside / (sums["B"][0] - inside))
            if cycle >= args.min_cycles and time.perf_counter() - start > seconds:
                break
    if monitored.monitor is not None:
        monitored.monitor.close()
    base, with_monitor = statistics.median(wall["A"]), statistics.median(wall["B"])

    def paired(times: dict[str, list[float]]) -> float:
        return statistics.median(b / a - 1.0 for a, b in zip(times["A"], times["B"], strict=True))

    return {
        "metrics": list(metrics),
        "monitor_threads": threads,
        "every": args.every,
        "cycles": len(wall["A"]),
        "steps_per_cycle": args.every,
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
    parser.add_argument("--cycles", type=int, default=30, help="cycles of k steps, main case")
    parser.add_argument("--min-cycles", type=int, default=5, help="per case, despite --seconds")
    parser.add_argument("--seconds", type=float, default=120.0, help="time budget, all cases")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's setting")
    parser.add_argument("--curvature", action="store_true", help="add the taylor case (slow)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.every < 1 or args.cycles < 1 or args.min_cycles < 1 or args.seconds <= 0:
        parser.error("--every, --cycles, --min-cycles and --seconds must be positive")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = {"layers": 2, "width": 64, "heads": 4, "context": 64, "vocab": 65}
    n_params = sum(p.numel() for p in TinyGPT().parameters())
    load_before = os.getloadavg()
    # (metrics, Monitor threads, cycles, share of the time budget)
    cases: list[tuple[tuple[str, ...], int | None, int, float]] = [
        ((), None, max(1, args.cycles // 2), 0.25),
        (tuple(DEFAULT_METRICS), 1, args.cycles, 0.45),
        (tuple(DEFAULT_METRICS), None, max(1, args.cycles // 2), 0.3),
    ]
    if args.curvature:
        cases.append(
            ((*DEFAULT_METRICS, "taylor", "layer_split"), 1, max(1, args.cycles // 4), 0.3)
        )
    print(
        f"TinyGPT {model} ({n_params} parameters), batch {args.batch}, AdamW; k = {args.every}; "
        f"cycles per case {[c[2] for c in cases]} of k steps (fewer if over --seconds="
        f"{args.seconds:g}); training threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, "
        f"load average {load_before}"
    )
    results = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for metrics, threads, cycles, share in cases:
            r = measure(metrics, threads, cycles, share * args.seconds, args, Path(tmp))
            results.append(r)
            print(
                f"metrics={'+'.join(r['metrics']) or 'none (null case)'} every={r['every']} "
                f"monitor threads={threads}, "
                f"{r['cycles']} cycles: step {r['step_ms']:.2f} ms, with monitor "
                f"{r['step_ms_with_monitor']:.2f} ms, overhead {100 * r['overhead']:.1f}% "
                f"(paired median {100 * r['overhead_paired_median']:.1f}%, CPU time paired "
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
