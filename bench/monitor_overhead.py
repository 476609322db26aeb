"""Monitor overhead: training-step time with steepest.diagnostics.Monitor attached vs without.

A tiny GPT (2 layers, width 64, 4 heads, context 64, vocabulary 65) trains on random tokens with
AdamW on CPU. Blocks of steps without and with a Monitor (every=10) alternate, so machine noise
hits both alike; the medians of per-block mean step times give the overhead ratio. A second,
less noise-prone estimate times the Monitor's own calls: sum of monitor.step() time / sum of
training-step time. The target is < 10% with the default metrics at k = 10. The curvature
metrics ("taylor", "layer_split": double backward per record) are measured as a second case.

Usage: python bench/monitor_overhead.py [--blocks 5] [--steps-per-block 40] [--every 10]
"""

from __future__ import annotations

import argparse
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


def run_block(model, opt, batches, monitor):
    """Train on `batches`; return (total wall time, time inside monitor.step)."""
    in_monitor = 0.0
    start = time.perf_counter()
    for x, y in batches:

        def loss_fn(x=x, y=y):
            logits = model(x)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

        loss_fn().backward()
        opt.step()
        if monitor is not None:
            t0 = time.perf_counter()
            monitor.step(loss_fn=loss_fn)
            in_monitor += time.perf_counter() - t0
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start, in_monitor


def measure(metrics, args, out_dir: Path) -> dict:
    torch.manual_seed(0)
    model = TinyGPT()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)

    def batches():
        tok = torch.randint(0, 65, (args.steps_per_block, args.batch, 65), generator=gen)
        return [(t[:, :-1], t[:, 1:]) for t in tok]

    run_block(model, opt, batches()[:5], None)  # warm-up
    plain, monitored, share = [], [], []
    for i in range(args.blocks):
        dt, _ = run_block(model, opt, batches(), None)
        plain.append(dt / args.steps_per_block)
        path = out_dir / f"{'-'.join(metrics)}-{i}.jsonl"
        monitor = Monitor(model, opt, every=args.every, metrics=metrics, path=path)
        dt, in_monitor = run_block(model, opt, batches(), monitor)
        monitor.close()
        monitored.append(dt / args.steps_per_block)
        share.append(in_monitor / (dt - in_monitor))
    base, with_monitor = statistics.median(plain), statistics.median(monitored)
    return {
        "metrics": list(metrics),
        "every": args.every,
        "step_ms": 1e3 * base,
        "step_ms_with_monitor": 1e3 * with_monitor,
        "overhead_wall": with_monitor / base - 1.0,
        "overhead_monitor_calls": statistics.median(share),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--steps-per-block", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cases = [tuple(DEFAULT_METRICS), (*DEFAULT_METRICS, "taylor", "layer_split")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for metrics in cases:
            r = measure(metrics, args, Path(tmp))
            results.append(r)
            print(
                f"metrics={'+'.join(r['metrics'])} every={r['every']}: step {r['step_ms']:.2f} ms, "
                f"with monitor {r['step_ms_with_monitor']:.2f} ms, wall overhead "
                f"{100 * r['overhead_wall']:.1f}%, monitor calls / step time "
                f"{100 * r['overhead_monitor_calls']:.1f}%"
            )
    model = {"layers": 2, "width": 64, "heads": 4, "context": 64, "vocab": 65}
    payload = {
        "bench": "monitor_overhead",
        "model": model,
        "batch": args.batch,
        "optimizer": "AdamW",
        "threads": torch.get_num_threads(),
        "cases": results,
    }
    path = write_result("monitor_overhead", payload, out_dir=Path(__file__).parent / "results")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
