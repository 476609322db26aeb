"""Dion's sharded power iteration and DistributedMuLoCo over NCCL, against one process.

    torchrun --standalone --nproc_per_node=2 bench/dist_family.py [--shapes 768x768,3072x768]
    torchrun --standalone --nproc_per_node=2 bench/dist_family.py --cpu --shapes 64x32  # gloo

Dion: every rank builds the same weights and gradients, steps steepest.Dion once on plain
tensors (the single-process result) and once on FSDP2 Shard(0) DTensors (the sharded power
iteration), for "qr" and "cholesky_qr" at rank_fraction 0.25, and reports the largest gap
of the weights after --steps steps (float32; expect <= 1e-5 on GPU, whose reductions
round differently) and the median sharded step time (wall clock, synchronized). MuLoCo:
rank k trains worker k on its own quadratic with DistributedMuLoCo (H = 2, 4 steps);
rank 0 runs the single-process simulation of the same W workers and reports the gap
(expect <= 1e-5). Rank 0 prints one line per check.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor

import steepest
from steepest.optim.family.muloco import DistributedMuLoCo, MuLoCo


def dion_gap(shapes: list[tuple[int, int]], method: str, steps: int, device: torch.device):
    """(largest weight gap sharded vs one process, median sharded step in ms)."""
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    gen = torch.Generator(device=device).manual_seed(0)
    weights = [torch.randn(m, n, device=device, generator=gen) / n**0.5 for m, n in shapes]
    grads = [[torch.randn_like(w) for w in weights] for _ in range(steps)]
    hp = {"lr": 0.02, "rank_fraction": 0.25, "orthonormalize": method}
    plain = [torch.nn.Parameter(w.clone()) for w in weights]
    sharded = [torch.nn.Parameter(distribute_tensor(w, mesh, [Shard(0)])) for w in weights]
    one, many = steepest.Dion(plain, **hp), steepest.Dion(sharded, **hp)
    times = []
    for step in range(steps):
        for p, q, g in zip(plain, sharded, grads[step], strict=True):
            p.grad = g.clone()
            q.grad = distribute_tensor(g, mesh, [Shard(0)])
        one.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        many.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - began))
    gap = max(float((p - q.full_tensor()).abs().max()) for p, q in zip(plain, sharded, strict=True))
    return gap, sorted(times)[len(times) // 2]


def muloco_gap(device: torch.device) -> float | None:
    """Largest gap of DistributedMuLoCo (this rank = worker k) vs the simulation (rank 0)."""
    world, rank = dist.get_world_size(), dist.get_rank()

    def closure(w: torch.Tensor, k: int):
        gen = torch.Generator(device=device).manual_seed(10 + k)
        goal = torch.randn(64, 32, device=device, generator=gen)
        A = (1 + k / 2) * torch.eye(64, device=device)

        def run():
            loss = 0.5 * (A @ w - goal).square().sum()
            loss.backward()
            return loss

        return run

    hp = {"lr": 0.05, "backend": "svd", "sync_every": 2, "compression": "topk"}
    start = torch.randn(64, 32, device=device, generator=torch.Generator(device).manual_seed(7))
    w = torch.nn.Parameter(start.clone())
    opt = DistributedMuLoCo([w], **hp)
    for _ in range(4):
        opt.zero_grad()
        opt.step(closure(w, rank))
    if rank != 0:
        return None
    v = torch.nn.Parameter(start.clone())
    sim = MuLoCo([v], workers=world, **hp)
    for _ in range(4):
        sim.step([closure(v, k) for k in range(world)])
    return float((w - v).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="768x768,3072x768,768x3072")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--cpu", action="store_true", help="gloo on CPU (checks the script)")
    args = parser.parse_args()
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    if args.cpu:
        dist.init_process_group("gloo")
        device = torch.device("cpu")
    else:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl")
        device = torch.device("cuda")
    try:
        for method in ("qr", "cholesky_qr"):
            gap, ms = dion_gap(shapes, method, args.steps, device)  # type: ignore[arg-type]
            if dist.get_rank() == 0:
                print(f"dion {method}: W={dist.get_world_size()} gap {gap:.2e} step {ms:.2f} ms")
        gap_muloco = muloco_gap(device)
        if gap_muloco is not None:
            print(f"muloco topk: W={dist.get_world_size()} gap {gap_muloco:.2e}")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
