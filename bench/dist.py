"""Distributed optimizer step: steepest.Muon's sharded step against the single-process fast path.

    torchrun --standalone --nproc_per_node W bench/dist.py [--sets gpt2-small,1.3b] [--out DIR]
    torchrun --standalone --nproc_per_node W bench/dist.py --links-only [--out DIR]
    python bench/dist.py [--sets 1.3b] [--gpus 1,2]     # launches torchrun once per W

Every torchrun rank builds each parameter set (bench/common.py SETS) three ways with the same
random weights and gradients and times steepest.Muon's default step (on CUDA: compiled and
recorded where it can) on each:

  single process   plain tensors, no sharing: the single-process fast path (at W = 1 the
                   process group exists but is not used)
  replicated       plain tensors shared across the ranks (``steepest.distributed.configure``):
                   the sharded step, each rank dualizing its planned matrices, all-gather
  FSDP2            Shard(0) DTensors: the sharded step with its two all-to-alls
  AdamW (fused)    torch.optim.AdamW (fused on CUDA, foreach on CPU) on the plain tensors:
                   the elementwise cost bench/dist_model.py takes for stages 1-2 and 5

Times: "pipelined" (20 steps back to back, the host running ahead as in training; median of
3 runs) and "isolated" (one step between events). The table gives each row's ratio to the
single-process row (target at W = 1: at most 1.1) and to single / W (target at W > 1: at
most 1.5). It also measures the links: at W = 1 an all-gather or all-to-all moves nothing
between GPUs, so the device-to-device copy bandwidth and the time of the degenerate
collectives are measured instead (and said so); at W > 1 the bus bandwidth of
all_gather_into_tensor and all_to_all_single (--links-only: only that, dist-links-W{W}).
NCCL on CUDA, gloo on CPU ("tiny" is the CPU smoke-test set). Rank 0 writes
dist-W{W}-<device>.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

HERE = Path(__file__).resolve().parent
#: Bytes per message for the bandwidth measurement (at most; halved until it fits).
MESSAGE_BYTES = 256 * 2**20


def build(shapes, mode: str, device: torch.device, world: int, **options):
    """steepest.Muon (with these constructor options) on the set's parameters in one of the
    three layouts (or fused AdamW on plain tensors), gradients set."""
    from common import parameters_in_layout

    import steepest
    from steepest.distributed import configure

    gen = torch.Generator(device=device).manual_seed(0)
    weights = [torch.randn(*s, device=device, generator=gen) * 0.02 for s in shapes]
    grads = [torch.randn(*s, device=device, generator=gen) for s in shapes]
    params = parameters_in_layout(weights, grads, mode)
    if mode == "AdamW (fused)":
        fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
        return torch.optim.AdamW(params, lr=1e-3, **fast)
    opt = steepest.Muon(params, lr=0.02, **options)
    if mode == "replicated":
        configure(opt)
    return opt


def time_step(opt) -> dict[str, Any]:
    """Warm up (compilation, recording), then isolated and pipelined ms; the report."""
    from common import pipelined, time_fn

    for _ in range(4):
        opt.step()
    isolated = time_fn(opt.step, warmup=1, repeat=10)
    piped = pipelined(opt.step, steps=20, rounds=3)
    rows = opt.fast_path_report() if hasattr(opt, "fast_path_report") else []
    return {
        "ms": isolated,
        "pipelined_ms": piped,
        "paths": [r.path for r in rows],
        "sharding": [r.sharding for r in rows],
    }


def bandwidth(device: torch.device, world: int) -> dict[str, Any]:
    """Bytes per second of the links (bus bandwidth as nccl-tests defines it) or, at W = 1,
    of a device-to-device copy."""
    from common import time_fn

    numel = MESSAGE_BYTES // 4 if device.type == "cuda" else 2**20
    x = torch.randn(numel, device=device)
    out: dict[str, Any] = {"message_bytes": x.numel() * 4}
    if world == 1:
        y = torch.empty_like(x)
        ms = time_fn(lambda: y.copy_(x), warmup=3, repeat=20)
        out["copy_bytes_per_s"] = 2 * x.numel() * 4 / (ms * 1e-3)  # read + write
        out["w1_all_gather_ms"] = time_fn(
            lambda: dist.all_gather_into_tensor(y, x), warmup=3, repeat=10
        )
        out["w1_all_to_all_ms"] = time_fn(lambda: dist.all_to_all_single(y, x), warmup=3, repeat=10)
        out["note"] = (
            "W = 1: collectives move nothing between GPUs; copy_bytes_per_s is a "
            "device-to-device copy (read + write), not a link bandwidth; w1_*_ms are the "
            "degenerate collectives of message_bytes"
        )
        return out
    gathered = torch.empty(world * numel, device=device)
    ms = time_fn(lambda: dist.all_gather_into_tensor(gathered, x), warmup=3, repeat=10)
    out["all_gather_bus_bytes_per_s"] = (world - 1) * numel * 4 / (ms * 1e-3)
    recv = torch.empty_like(x)
    ms = time_fn(lambda: dist.all_to_all_single(recv, x), warmup=3, repeat=10)
    out["all_to_all_bus_bytes_per_s"] = (world - 1) / world * numel * 4 / (ms * 1e-3)
    return out


def worker(sets: list[str], out: str, links_only: bool = False) -> None:
    """One torchrun rank: every set in every layout (none with ``links_only``), then the
    links; rank 0 prints and writes JSON."""
    from common import SETS, init_rank, write_result

    from steepest.distributed import plan_shapes

    rank, world, device = init_rank()
    cuda = device.type == "cuda"
    results = []
    for name in [] if links_only else sets:
        shapes = SETS[name]
        rows: dict[str, Any] = {}
        for mode in ("single process", "AdamW (fused)", "replicated", "FSDP2"):
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
            rows[mode] = time_step(build(shapes, mode, device, world))
        plans = {w: plan_shapes(shapes, w) for w in (2, 4, 8)}
        results.append(
            {
                "set": name,
                "matrices": len(shapes),
                "polar_flops": sum(plans[2].loads),
                "plan_max_over_mean": {w: p.imbalance for w, p in plans.items()},
                "rows": rows,
            }
        )
        if rank == 0:  # after every set, so that a run cut short keeps what it measured
            write_result(f"dist-W{world}", {"world": world, "sets": results}, out)
    links = bandwidth(device, world)
    if rank == 0:
        report(results, world, links)
        payload = {"world": world, "sets": results, "bandwidth": links}
        name = f"dist-links-W{world}" if links_only else f"dist-W{world}"
        print(f"wrote {write_result(name, payload, out)}")
    dist.destroy_process_group()


def report(results: list[dict[str, Any]], world: int, links: dict[str, Any]) -> None:
    """The table: set, W, layout, ms (isolated, pipelined), ratio to the single process."""
    print(f"\n{'set':12s} {'W':>2s} {'layout':15s} {'ms':>9s} {'piped ms':>9s} {'vs single':>9s}")
    for r in results:
        single = r["rows"]["single process"]["pipelined_ms"]
        for mode, row in r["rows"].items():
            ratio = row["pipelined_ms"] / single
            print(
                f"{r['set']:12s} {world:2d} {mode:15s} {row['ms']:9.3f} "
                f"{row['pipelined_ms']:9.3f} {ratio:9.3f}"
            )
        print(f"  single process paths: {r['rows']['single process']['paths']}")
        print(f"  FSDP2 paths: {r['rows']['FSDP2']['paths']}")
        print(f"  FSDP2 plan: {r['rows']['FSDP2']['sharding'][0]}")
    print(f"links: {json.dumps(links)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="gpt2-small,1.3b", help="comma-separated")
    parser.add_argument("--gpus", default="1", help="world sizes to launch, e.g. 1,2,4,8")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--links-only", action="store_true", help="only the link bandwidth")
    args = parser.parse_args(argv)
    sets = args.sets.split(",")
    sys.path.insert(0, str(HERE))
    from common import SETS

    for name in sets:
        if name not in SETS:
            raise ValueError(f"--sets: {name!r} is unknown; use one of {sorted(SETS)}")
    if "RANK" in os.environ:
        worker(sets, args.out, args.links_only)
        return
    path = os.pathsep.join([str(HERE), str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])
    for w in [int(x) for x in args.gpus.split(",")]:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc_per_node={w}", str(HERE / "dist.py"), "--sets", args.sets]
        cmd += ["--out", args.out] + (["--links-only"] if args.links_only else [])
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": path})


if __name__ == "__main__":
    main()
