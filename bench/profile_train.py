"""Where FSDP2 training's step time goes: forward and backward against the optimizer step,
steepest.Muon beside AdamW, on bench/dist_train.py's GPT (torch.profiler).

    torchrun --standalone --nproc_per_node 1 bench/profile_train.py [--config gpt2-small]
        [--steps 20] [--trace DIR]

Per optimizer, in the same process and from the same weights and tokens: the median ms of a
whole training step with a synchronization after each (as bench/dist_train.py times it), and
the stream time of its two phases, forward + backward and optimizer step + zero_grad, from
CUDA events recorded between them without synchronizing. With --trace, a profiler trace of
three steps per optimizer (CPU and CUDA; open it in Perfetto) is written to DIR; with --host,
the Python functions that take the optimizer step's host time (cProfile, 10 steps).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import init_rank  # noqa: E402
from dist_train import CONFIGS, OPTIMIZERS, build_model, build_optimizer  # noqa: E402
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402

#: steepest.Muon with each attention qkv weight one matrix (not three row blocks): one
#: Muon group instead of two
UNSPLIT = "Muon-unsplit"


def run(
    config: str, name: str, mesh, device: torch.device, steps: int, trace: str | None, host: bool
):
    cfg, sequences = CONFIGS[config]
    gc.collect()  # the previous run's model and optimizer (reference cycles)
    torch.cuda.empty_cache()
    model = build_model(cfg, mesh, device)
    if name == UNSPLIT:
        opt = build_optimizer("steepest.Muon", model, device, split_qkv=False)
    else:
        opt = build_optimizer(name, model, device)
    gen = torch.Generator().manual_seed(1000 + dist.get_rank())
    tokens = torch.randint(0, cfg.vocab_size, (sequences, cfg.context + 1), generator=gen)
    tokens = tokens.to(device)

    def forward_backward() -> None:
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
        loss.backward()

    def optimizer_step() -> None:
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        forward_backward()
        optimizer_step()
    torch.cuda.synchronize()
    whole, phase_fb, phase_opt = [], [], []
    for _ in range(steps):
        events = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
        events[0].record()
        forward_backward()
        events[1].record()
        optimizer_step()
        events[2].record()
        events[2].synchronize()
        whole.append(events[0].elapsed_time(events[2]))
        phase_fb.append(events[0].elapsed_time(events[1]))
        phase_opt.append(events[1].elapsed_time(events[2]))
    if trace is not None:
        activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(3):
                forward_backward()
                optimizer_step()
            torch.cuda.synchronize()
        tag = name.replace(".", "-")
        prof.export_chrome_trace(str(Path(trace) / f"train-{config}-{tag}.json"))
    if host:
        profiler = cProfile.Profile()
        for _ in range(10):
            forward_backward()
            profiler.enable()
            optimizer_step()
            profiler.disable()
        torch.cuda.synchronize()
        print(f"== {name}: host time of 10 optimizer steps, by function")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    return [statistics.median(x) for x in (whole, phase_fb, phase_opt)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="gpt2-small", choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--trace", default=None, help="folder for the profiler traces")
    parser.add_argument("--host", action="store_true", help="cProfile the optimizer step")
    parser.add_argument(
        "--optimizers", default=",".join(OPTIMIZERS), help=f"of {OPTIMIZERS + (UNSPLIT,)}"
    )
    args = parser.parse_args()
    _, world, device = init_rank()
    torch.backends.cuda.matmul.allow_tf32 = True
    mesh = init_device_mesh(device.type, (world,))
    if args.trace:
        Path(args.trace).mkdir(parents=True, exist_ok=True)
    rows = {}
    names = args.optimizers.split(",")
    for name in names + names:  # twice, interleaved: drift shows as a change
        rows.setdefault(name, []).append(
            run(args.config, name, mesh, device, args.steps, args.trace, args.host)
        )
    print(f"{'optimizer':14s} {'step ms':>9s} {'fwd+bwd':>9s} {'opt+zero':>9s}  (two runs)")
    for name, runs in rows.items():
        for whole, fb, op in runs:
            print(f"{name:14s} {whole:9.2f} {fb:9.2f} {op:9.2f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
