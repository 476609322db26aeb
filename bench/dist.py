"""Distributed optimizer step: steepest.Muon on W GPUs against one GPU (issue 8).

    python bench/dist.py [--set 1.3b] [--gpus 1,2]     # launches torchrun once per W

Each torchrun worker builds the parameter set twice, as replicated tensors (DDP: each rank
orthogonalizes its share of every stack, then all-gather) and as FSDP2 Shard(0) DTensors
(all-to-all of whole matrices), gives them random gradients and times steepest.Muon's step
with CUDA events (median). The table compares each W with the single-GPU step / W; the target
is at most 1.5 x (single-GPU step / W). JSON goes to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def worker(set_name: str, result_file: str) -> None:
    import torch.distributed as dist
    from common import SETS, time_fn
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    import steepest

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl")
    device = torch.device("cuda")
    shapes = SETS[set_name]
    gen = torch.Generator(device=device).manual_seed(0)
    full = [torch.randn(*s, device=device, generator=gen) * 0.02 for s in shapes]
    grads = [torch.randn(*s, device=device, generator=gen) for s in shapes]
    out = {}

    replicated = [torch.nn.Parameter(w.clone()) for w in full]
    for p, g in zip(replicated, grads, strict=True):
        p.grad = g.clone()
    opt = steepest.Muon(replicated, lr=0.02)
    out["replicated (DDP)"] = time_fn(opt.step, warmup=3, repeat=10)
    del opt, replicated

    if world > 1:
        mesh = init_device_mesh("cuda", (world,))
        sharded = [torch.nn.Parameter(distribute_tensor(w, mesh, [Shard(0)])) for w in full]
        for p, g in zip(sharded, grads, strict=True):
            p.grad = distribute_tensor(g, mesh, [Shard(0)])
        opt = steepest.Muon(sharded, lr=0.02)
        out["FSDP2 (Shard(0))"] = time_fn(opt.step, warmup=3, repeat=10)
    if rank == 0:
        Path(result_file).write_text(json.dumps({"world": world, "ms": out}))
    dist.destroy_process_group()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="1.3b")
    parser.add_argument("--gpus", default="1,2")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.set, args.worker)
        return
    from common import write_result

    runs = []
    for w in [int(x) for x in args.gpus.split(",")]:
        tmp = Path(args.out) / f".dist-{w}.json"
        Path(args.out).mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={w}",
            str(HERE / "dist.py"),
            "--set",
            args.set,
            "--worker",
            str(tmp),
        ]
        subprocess.run(
            cmd,
            check=True,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    [str(HERE), str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]
                ),
            },
        )
        runs.append(json.loads(tmp.read_text()))
        tmp.unlink()
    single = runs[0]["ms"]["replicated (DDP)"] if runs[0]["world"] == 1 else None
    print(f"\n== {args.set}: steepest.Muon step, ms (target <= 1.5 x single / W)")
    for r in runs:
        for mode, ms in r["ms"].items():
            ideal = single / r["world"] if single else float("nan")
            print(
                f"W={r['world']} {mode:20s} {ms:9.2f} ms   single/W {ideal:8.2f} ms   "
                f"ratio {ms / ideal:5.2f}"
            )
    path = write_result("dist", {"set": args.set, "runs": runs}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
