"""The sharded step's own cost on CPU (gloo), beside the single-process step.

    PYTHONPATH=src python bench/dist_overhead.py [--shapes 512x2048*8] [--dtype float32]
        [--steps 1] [--threads 1] [--frozen] [--json FILE]
    PYTHONPATH=src torchrun --standalone --nproc_per_node 2 bench/dist_overhead.py ...   # W = 2

At world size 1 (the default without torchrun) nothing crosses a link, so the replicated and
FSDP2 layouts' extra time and memory traffic over the single process is the cost of the
sharded machinery itself (packing, exchange buffers, re-stacking, dtype conversions,
host-side work), which every world size pays. The three layouts run steepest.Muon with the
fast path's CPU stand-in of the GPU path: local stages compiled (dynamo's eager backend),
fused stage 1 and recorded (``closure_capture``, which replays the recorded Python on CPU).
The polar iteration takes ``--steps`` steps (default 1, so that the machinery is not hidden
under the matrix products). At W > 1 plain tensors are shared by default, so there is no
single-process row; ratios are to the first row.
With ``--frozen`` the recordings replay nothing (as a CUDA graph's replay costs the host a
constant), so a step times only what runs outside them.

Per layout: the median ms per step, and from one profiled step (torch.profiler, CPU) the
count of copying ops (copy_, cat, stack, _to_copy, index_select, clone, index_copy_) and the
bytes allocated, apart from those allocated inside gloo's collectives (shown on their own:
NCCL's collectives write into the given buffers). Differences from the single process are
the machinery's.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
from collections import Counter
from typing import Any

import torch
import torch.distributed as dist

#: The ops that copy tensors (counted per step).
COPY_OPS = ("aten::copy_", "aten::cat", "aten::stack", "aten::_to_copy", "aten::index_select",
            "aten::clone", "aten::index_copy_")  # fmt: skip


def frozen_capture(fn: Any) -> Any:
    """A recorder that runs fn once and whose replay returns those outputs without running
    anything, as a CUDA graph's replay costs the host a constant: steps then time only
    what runs outside the recordings (the exchange, its copies, the host's work)."""
    outputs = fn()

    def replay() -> Any:
        return outputs

    return replay


def build(
    shapes: list[tuple[int, int]], mode: str, dtype: torch.dtype, steps: int, frozen: bool
) -> Any:
    """steepest.Muon on the shapes in one layout ("single process", "replicated", "FSDP2"),
    gradients set, with the CPU stand-in of the GPU fast path (``frozen``: recordings that
    replay nothing, see frozen_capture)."""
    from common import parameters_in_layout

    import steepest
    from steepest.distributed import configure
    from steepest.optim.fast import FastPath, closure_capture

    gen = torch.Generator().manual_seed(0)
    weights = [(torch.randn(*s, generator=gen) * 0.02).to(dtype) for s in shapes]
    grads = [torch.randn(*s, generator=gen).to(dtype) for s in shapes]
    params = parameters_in_layout(weights, grads, mode)
    opt = steepest.Muon(
        params,
        lr=0.02,
        steps=steps,
        compile="eager",
        cuda_graph=True,
        fast=FastPath(capture=frozen_capture if frozen else closure_capture),
    )
    if mode == "replicated":
        configure(opt)
    return opt


def measure(opt: Any, repeat: int) -> dict[str, Any]:
    """Warm up (compilation, recording), then the median ms of `repeat` steps and one
    profiled step's copying ops and allocated bytes."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(4):
        opt.step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        opt.step()
        times.append((time.perf_counter() - start) * 1e3)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, with_stack=True) as prof:
        opt.step()
    ops: Counter[str] = Counter()
    allocated = collectives = 0
    main = next(e.thread for e in prof.events() if e.cpu_parent is None)
    for event in prof.events():
        if event.name in COPY_OPS:
            ops[event.name] += 1
        if event.self_cpu_memory_usage > 0:
            if _in_collective(event, main):
                collectives += event.self_cpu_memory_usage
            else:
                allocated += event.self_cpu_memory_usage
    return {
        "ms": statistics.median(times),
        "copy_ops": dict(ops),
        "copies": sum(ops.values()),
        "allocated_mb": allocated / 2**20,
        "collective_allocated_mb": collectives / 2**20,
        "paths": [r.path for r in opt.fast_path_report()],
    }


def _in_collective(event: Any, main: int) -> bool:
    """Whether a profiled op ran inside a torch.distributed collective (gloo's CPU
    collectives allocate their own buffers, which NCCL's do not): on another thread than
    the step's (`main`), or called from torch.distributed's collectives or their wait."""
    if event.thread != main:
        return True
    parent = event.cpu_parent
    while parent is not None:
        if "distributed_c10d" in parent.name or "method wait of" in parent.name:
            return True
        parent = parent.cpu_parent
    return False


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'512x2048*8,2048x512*2' -> 8 (512, 2048) and 2 (2048, 512) shapes."""
    shapes: list[tuple[int, int]] = []
    for part in text.split(","):
        shape, _, count = part.partition("*")
        m, n = (int(x) for x in shape.split("x"))
        shapes += [(m, n)] * int(count or 1)
    return shapes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="512x2048*8", help="e.g. 512x2048*8,2048x512*2")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=1, help="polar iteration steps")
    parser.add_argument("--repeat", type=int, default=10, help="timed steps per layout")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--frozen", action="store_true", help="recordings replay nothing (frozen_capture)"
    )
    parser.add_argument("--json", default="", help="write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if "RANK" in os.environ:  # under torchrun: its world
        dist.init_process_group("gloo")
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(port))
        dist.init_process_group("gloo", rank=0, world_size=1)
    world, rank = dist.get_world_size(), dist.get_rank()
    shapes, dtype = parse_shapes(args.shapes), getattr(torch, args.dtype)
    # at W > 1 plain tensors are shared across the ranks by default: no single-process row
    modes = ("single process", "replicated", "FSDP2") if world == 1 else ("replicated", "FSDP2")
    rows = {
        mode: measure(build(shapes, mode, dtype, args.steps, args.frozen), args.repeat)
        for mode in modes
    }
    dist.destroy_process_group()
    if rank != 0:
        return
    single = rows[modes[0]]
    replays = "frozen recordings" if args.frozen else "recordings replayed as Python"
    print(f"shapes {args.shapes} {args.dtype}, polar steps {args.steps}, {replays}, W = {world}")
    print(
        f"{'layout':15s} {'ms':>8s} {'vs first':>9s} {'copies':>7s} {'alloc MB':>9s} "
        f"{'in coll.':>9s}  copy ops"
    )
    for mode, row in rows.items():
        ops = " ".join(
            f"{k.removeprefix('aten::')}={v}" for k, v in sorted(row["copy_ops"].items())
        )
        print(
            f"{mode:15s} {row['ms']:8.2f} {row['ms'] / single['ms']:9.3f} {row['copies']:7d} "
            f"{row['allocated_mb']:9.1f} {row['collective_allocated_mb']:9.1f}  {ops}"
        )
    print(f"paths: {rows['FSDP2']['paths']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"shapes": args.shapes, "dtype": args.dtype, "world": world, "rows": rows},
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
