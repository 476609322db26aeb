"""FSDP2 training of the experiments' char GPT with steepest.Muon, launched by torchrun.

    torchrun --standalone --nproc_per_node=2 examples/fsdp_gpt.py --steps 20

gloo on CPU, NCCL on CUDA. Every block is wrapped by ``fully_shard`` (parameters become
Shard(0) DTensors); the optimizer notices that by itself and orthogonalizes whole matrices,
each rank its share (steepest.distributed). Flags: --block-period P (MuonBP, off by default),
--bf16-comm, --check (replicas agree), --ckpt DIR (DCP save at the end, resume if present).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

import steepest
from steepest.data import load_shakespeare
from steepest.distributed import configure
from steepest.experiments.gpt import GPT, GPTConfig


def get_batch(data, batch_size, context, gen, device):
    """batch_size windows of context + 1 characters, the same draw on every rank's slice."""
    starts = torch.randint(len(data) - context - 1, (batch_size,), generator=gen)
    return data[starts[:, None] + torch.arange(context + 1)].to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16, help="per rank")
    parser.add_argument("--micro", type=int, default=1, help="micro-batches per step")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--block-period", type=int, default=None)
    parser.add_argument("--bf16-comm", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--ckpt", default=None)
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(1)
    mesh = init_device_mesh(device.type if cuda else "cpu", (world,))

    text = load_shakespeare()
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([lookup[c] for c in text], dtype=torch.long)

    torch.manual_seed(0)
    cfg = GPTConfig(len(chars), args.context, args.layers, 4, args.width)
    model = GPT(cfg).to(device)
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    groups, report = steepest.param_groups(model, blocks={"*.qkv.weight": [args.width] * 3})
    opt = steepest.Muon(groups, lr=args.lr, adamw_lr=3e-3)
    configure(
        opt,
        block_period=args.block_period,
        comm_dtype=torch.bfloat16 if args.bf16_comm else None,
        check_replicas=args.check,
    )
    if rank == 0:
        print(report)

    start = 0
    if args.ckpt and os.path.exists(os.path.join(args.ckpt, ".metadata")):
        state = {"model": model.state_dict(), "optim": opt.state_dict()}
        dcp.load(state, checkpoint_id=args.ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        start = opt.stacks.steps
        if rank == 0:
            print(f"resumed from {args.ckpt} at step {start}")

    gen = torch.Generator().manual_seed(1234 + start)
    for step in range(start, start + args.steps):
        t0 = time.perf_counter()
        batch = get_batch(data, args.batch_size * world, args.context, gen, device)
        mine = batch[rank * args.batch_size : (rank + 1) * args.batch_size]
        total = 0.0
        for part in mine.chunk(args.micro):
            logits = model(part[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1), part[:, 1:].flatten()) / args.micro
            loss.backward()
            total += loss.item()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sums = torch.tensor([total, opt.stacks.orthogonalizations], device=device)
        dist.all_reduce(sums)  # mean loss, matrices orthogonalized by all ranks together
        if rank == 0:
            ms = 1000 * (time.perf_counter() - t0)
            print(
                f"step {step + 1}: loss {float(sums[0]) / world:.4f}, {ms:.0f} ms, "
                f"orthogonalized {int(sums[1])} matrices (all ranks)"
            )

    if args.ckpt:
        dcp.save({"model": model.state_dict(), "optim": opt.state_dict()}, checkpoint_id=args.ckpt)
        if rank == 0:
            print(f"saved {args.ckpt}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
