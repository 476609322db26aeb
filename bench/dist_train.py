"""FSDP2 training throughput: steepest.Muon against AdamW on the same GPT (issue 8).

    torchrun --standalone --nproc_per_node W bench/dist_train.py [--config gpt2-small,gpt-1b]
        [--steps 10] [--rounds 3] [--out bench/results]
    python bench/dist_train.py --nproc W ...      # launches torchrun itself, as bench/dist.py does

Every rank builds the experiments' GPT from seed 0, wraps each block and then the root in
FSDP2 ``fully_shard`` (bf16 parameters for compute, fp32 gradient reduction) and trains on a
fixed batch of random tokens (throughput does not depend on the data), once with
torch.optim.AdamW on every parameter (fused on CUDA, foreach on CPU) and once with
steepest.Muon on ``steepest.param_groups`` (fused AdamW groups on CUDA), from the same initial
weights and with the same tokens per step. A step is forward, backward, optimizer step and
zero_grad. Both models stay built; after 3 warm-up steps each, their steps are timed in
--rounds alternating rounds of --steps steps (median step time per round, CUDA events on GPU),
so that a drift of the machine's speed reaches both alike: the step time is the median over
rounds, and Muon's tokens/s against AdamW's the median of the ratio within a round. tokens/s
is summed over ranks; peak memory is per rank, what each run's model, optimizer and warm-up
added. Rank 0 prints a table and writes JSON (dist_train-W{W}-<device>.json) to --out. NCCL on
CUDA, gloo on CPU ("tiny" is the CPU smoke-test config).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from common import init_rank, time_fn, write_result
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

import steepest
from steepest.experiments.gpt import GPT, GPTConfig

HERE = Path(__file__).resolve().parent

CONFIGS: dict[str, tuple[GPTConfig, int]] = {
    # name: (GPTConfig(vocab, context, layers, heads, width), sequences per rank per step)
    "gpt2-small": (GPTConfig(50304, 1024, 12, 12, 768), 8),
    "gpt-1b": (GPTConfig(50304, 1024, 24, 16, 2048), 4),
    "tiny": (GPTConfig(65, 32, 2, 2, 32), 4),
}
OPTIMIZERS = ("AdamW", "steepest.Muon")
WARMUP = 3
Json = dict[str, Any]  # one results record, as written to the JSON file


def build_model(cfg: GPTConfig, mesh: DeviceMesh, device: torch.device) -> GPT:
    """The GPT from seed 0 (same weights every call), FSDP2-sharded per block and at the root."""
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def build_optimizer(
    name: str, model: GPT, device: torch.device, split_qkv: bool = True
) -> torch.optim.Optimizer:
    """torch.optim.AdamW on every parameter, or steepest.Muon on param_groups' routing (each
    attention qkv weight as three row blocks unless ``split_qkv`` is False)."""
    cuda = device.type == "cuda"
    if name == "AdamW":
        fast = {"fused": True} if cuda else {"foreach": True}
        return torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), **fast)
    groups, _ = steepest.param_groups(model, blocks={"*.qkv.weight": [model.cfg.width] * 3})
    if not split_qkv:  # the qkv weights join the other hidden matrices' group
        split = [g for g in groups if g.get("blocks")]
        whole = next(g for g in groups if g["algorithm"] == "muon" and not g.get("blocks"))
        for g in split:
            whole["params"] = g["params"] + whole["params"]
            whole["param_names"] = g["param_names"] + whole["param_names"]
        groups = [g for g in groups if not g.get("blocks")]
    return steepest.Muon(groups, lr=0.02, adamw_lr=1e-3, adamw_fused=cuda or None)


def prepare(
    config: str, name: str, mesh: DeviceMesh, device: torch.device
) -> tuple[Callable[[], None], Json]:
    """One optimizer's training step on a fresh model (same weights and tokens for every
    optimizer), warmed up; its facts: initial loss and the peak memory its model, optimizer
    and warm-up steps added on this rank."""
    cfg, sequences = CONFIGS[config]
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else 0
    model = build_model(cfg, mesh, device)
    opt = build_optimizer(name, model, device)
    gen = torch.Generator().manual_seed(1000 + dist.get_rank())
    tokens = torch.randint(0, cfg.vocab_size, (sequences, cfg.context + 1), generator=gen)
    tokens = tokens.to(device)

    def loss_fn() -> torch.Tensor:
        logits = model(tokens[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())

    with torch.no_grad():
        initial_loss = float(loss_fn())  # equal across optimizers: same weights, same tokens

    def train_step() -> None:
        loss_fn().backward()  # type: ignore[no-untyped-call]
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(WARMUP):
        train_step()
    peak = None
    if cuda:
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - before) / 2**30
    stacks = getattr(opt, "stacks", None)
    counted = float(stacks.orthogonalizations) / WARMUP if stacks is not None else 0.0
    facts = {"initial_loss": initial_loss, "peak_gib": peak, "orthogonalized": counted}
    return train_step, facts


def measure(
    config: str, mesh: DeviceMesh, device: torch.device, steps: int, rounds: int
) -> dict[str, Json]:
    """Every optimizer's run on this rank: both models stay built and their steps are timed
    in alternating rounds (median step ms of ``steps`` steps per round), so that a drift of
    the machine's speed during the run reaches every optimizer alike."""
    steps_of, runs = {}, {}
    for name in OPTIMIZERS:
        steps_of[name], runs[name] = prepare(config, name, mesh, device)
        runs[name]["round_ms"] = []
    for _ in range(rounds):
        for name in OPTIMIZERS:
            runs[name]["round_ms"].append(time_fn(steps_of[name], warmup=1, repeat=steps))
    cfg, sequences = CONFIGS[config]
    for run in runs.values():
        run["step_ms"] = statistics.median(run["round_ms"])
        run["tokens_per_s"] = sequences * cfg.context / (run["step_ms"] * 1e-3)
    return runs


def worker(configs: list[str], steps: int, rounds: int, out: str) -> None:
    """One torchrun rank: every config with each optimizer; rank 0 prints and writes JSON."""
    rank, world, device = init_rank()
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    mesh = init_device_mesh(device.type, (world,))
    t0 = time.time()
    results: list[Json] = []
    for config in configs:
        gc.collect()  # the previous config's models and optimizers (reference cycles)
        if cuda:
            torch.cuda.empty_cache()
        mine = measure(config, mesh, device, steps, rounds)
        every: list[dict[str, Json]] = [{} for _ in range(world)]
        dist.all_gather_object(every, mine)
        runs: dict[str, Json] = {}
        for name in OPTIMIZERS:
            ranks = [r[name] for r in every]
            # a round's step is as slow as its slowest rank
            round_ms = [max(r["round_ms"][k] for r in ranks) for k in range(rounds)]
            runs[name] = {
                "tokens_per_s": sum(r["tokens_per_s"] for r in ranks),
                "step_ms": max(r["step_ms"] for r in ranks),
                "step_ms_per_rank": [r["step_ms"] for r in ranks],
                "round_ms": round_ms,
                "peak_gib_per_rank": [r["peak_gib"] for r in ranks],
                "initial_loss": mine[name]["initial_loss"],
                "matrices_orthogonalized_per_step": sum(r["orthogonalized"] for r in ranks),
            }
        base = runs[OPTIMIZERS[0]]["round_ms"]
        for run in runs.values():  # tokens/s against AdamW's in the same round
            run["vs_adamw_per_round"] = [b / m for b, m in zip(base, run["round_ms"], strict=True)]
        cfg, sequences = CONFIGS[config]
        results.append(
            {
                "config": config,
                "model": vars(cfg),
                "sequences_per_rank": sequences,
                "tokens_per_step": sequences * cfg.context * world,
                "runs": runs,
            }
        )
    if rank == 0:
        report(results, world)
        payload = {"world": world, "steps": steps, "rounds": rounds, "configs": results}
        payload["seconds"] = time.time() - t0
        print(f"wrote {write_result(f'dist_train-W{world}', payload, out)}")
    dist.destroy_process_group()


def report(results: list[Json], world: int) -> None:
    """The table: config, W, optimizer, tokens/s, step ms, peak GiB, and tokens/s against
    AdamW's: the median over rounds of the ratio within a round, with its range."""
    head = ("config", "W", "optimizer", "tokens/s", "step ms", "peak GiB", "vs AdamW", "range")
    print("\n{:12s} {:>2s} {:14s} {:>11s} {:>9s} {:>9s} {:>9s} {:>13s}".format(*head))
    for r in results:
        for name, run in r["runs"].items():
            peaks = [p for p in run["peak_gib_per_rank"] if p is not None]
            peak = max(peaks) if peaks else float("nan")  # nan: no CUDA peak on CPU
            ratios = run["vs_adamw_per_round"]
            print(
                f"{r['config']:12s} {world:2d} {name:14s} {run['tokens_per_s']:11.0f} "
                f"{run['step_ms']:9.2f} {peak:9.2f} {statistics.median(ratios):9.3f} "
                f"{min(ratios):6.3f}-{max(ratios):.3f}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="gpt2-small,gpt-1b", help="comma-separated")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--nproc", type=int, default=None, help="launch torchrun with W ranks")
    args = parser.parse_args(argv)
    configs = args.config.split(",")
    for config in configs:
        if config not in CONFIGS:
            raise ValueError(f"--config: {config!r} is unknown; use one of {sorted(CONFIGS)}")
    for flag, value in (("--steps", args.steps), ("--rounds", args.rounds)):
        if value < 1:
            raise ValueError(f"{flag}: {value} must be at least 1")
    if "RANK" in os.environ:
        worker(configs, args.steps, args.rounds, args.out)
        return
    nproc = args.nproc or max(torch.cuda.device_count(), 2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", str(HERE / "dist_train.py")]
    cmd += ["--config", args.config, "--steps", str(args.steps), "--rounds", str(args.rounds)]
    cmd += ["--out", args.out]
    path = os.pathsep.join([str(HERE), str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": path})


if __name__ == "__main__":
    main()
