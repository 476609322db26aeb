"""Whether steepest.Muon's step waits for the host: the host's time to issue steps against
their pipelined time, per layout, number of streams and nonfinite policy (W = 1).

    torchrun --standalone --nproc_per_node 1 bench/host_issue.py [--set gpt2-small] [--out DIR]

For the single process and the replicated and FSDP2 sharded steps (bench/dist.py's build),
with ``FastPath(streams=1)`` and ``streams=4``, and with nonfinite "raise" (the step reads the
device-side verdict) and "ignore" (nothing is read, so the host never waits for the GPU):

* pipelined: ms per step of 20 steps back to back (median of 3 runs), as in training;
* host issue: ms per step the host takes to issue 8 steps back to back (median of 3 runs,
  synchronized between runs; few enough steps that their launches fit CUDA's queue).

With "ignore", a host issue close to the pipelined time means the step is bound by the host;
the streams pair tells how much the overlap of stacks on streams gives. Prints a table and
writes host_issue-<device>.json to --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SETS, init_rank, pipelined, write_result  # noqa: E402
from dist import build  # noqa: E402

from steepest.optim.fast import FastPath  # noqa: E402

LAYOUTS = ("single process", "replicated", "FSDP2")


def issue_ms(opt, device: torch.device, steps: int = 8, runs: int = 3) -> float:
    """The host's ms per step to issue `steps` steps back to back (median of `runs`)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(5):
        opt.step()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(steps):
            opt.step()
        times.append((time.perf_counter() - start) * 1e3 / steps)
        sync()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="gpt2-small", choices=sorted(SETS))
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    _, _, device = init_rank()
    rows = []
    for layout in LAYOUTS:
        for streams in (1, 4):
            for nonfinite in ("raise", "ignore"):
                opt = build(
                    SETS[args.set], layout, device, 1,
                    fast=FastPath(streams=streams), nonfinite=nonfinite,
                )  # fmt: skip
                host = issue_ms(opt, device)
                piped = pipelined(opt.step, steps=20, rounds=3)
                rows.append(
                    {"layout": layout, "streams": streams, "nonfinite": nonfinite,
                     "pipelined_ms": piped, "host_issue_ms": host}
                )  # fmt: skip
                del opt
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    print(f"{'layout':15s} {'streams':>7s} {'nonfinite':>9s} {'pipelined':>9s} {'host issue':>10s}")
    for r in rows:
        print(
            f"{r['layout']:15s} {r['streams']:7d} {r['nonfinite']:>9s} "
            f"{r['pipelined_ms']:9.3f} {r['host_issue_ms']:10.3f}"
        )
    print(f"wrote {write_result('host_issue', {'set': args.set, 'rows': rows}, args.out)}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
