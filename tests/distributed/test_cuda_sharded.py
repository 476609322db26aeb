"""The sharded fast path on one CUDA GPU under a world-size-1 NCCL group (``pytest -m cuda``).

On CUDA the sharded step compiles with inductor, records CUDA graphs and issues its exchanges
from a side stream, which the gloo tests do not exercise. One spawned rank runs three steps of
steepest.Muon on mixed shapes from the same weights and gradients three ways: plain tensors
(the single-process fast path), replicated tensors shared through
``configure(share_replicated=True)``, and FSDP2 ``Shard(0)`` DTensors; then a fifth step with
a nan gradient. ``run_rank`` also runs on CPU (gloo), where its layouts stay eager.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import steepest
from steepest.distributed import configure

#: mixed shapes: a stack of three, a pair, a single wide matrix, an uneven (odd-row) one
SHAPES = [(256, 128)] * 3 + [(128, 384)] * 2 + [(96, 512), (129, 128)]
#: steps 1-2 run eagerly, step 3 records, step 4 replays the recordings (which read the
#: exchange's kept buffers)
STEPS, LR = 4, 0.02


def _grads(step: int, device: torch.device) -> list[torch.Tensor]:
    """Step `step`'s gradients; on the replayed step the first is 1e6 times larger (its
    float16 direction would overflow at the prescale kept from the step before)."""
    gen = torch.Generator(device=device).manual_seed(10 + step)
    grads = [torch.randn(*s, device=device, generator=gen) for s in SHAPES]
    if step == STEPS - 1:
        grads[0] *= 1e6
    return grads


def _run(layout: str, device: torch.device, world: int, **muon) -> dict:
    """STEPS steps of steepest.Muon in one layout; the weights, the report, and one more
    step with a nan in one gradient (nonfinite="skip")."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    gen = torch.Generator(device=device).manual_seed(0)
    weights = [torch.randn(*s, device=device, generator=gen) * 0.02 for s in SHAPES]
    mesh = init_device_mesh(device.type, (world,)) if layout == "FSDP2" else None

    def place(t: torch.Tensor) -> torch.Tensor:
        return distribute_tensor(t, mesh, [Shard(0)]) if mesh is not None else t

    start = [w.cpu().clone() for w in weights]
    params = [torch.nn.Parameter(place(w)) for w in weights]
    opt = steepest.Muon(params, lr=LR, nonfinite="skip", **muon)
    if layout == "replicated":
        configure(opt, share_replicated=True)
    for step in range(STEPS):
        for p, g in zip(params, _grads(step, device), strict=True):
            p.grad = place(g)
        opt.step()
    out = [(p.full_tensor() if mesh is not None else p).detach().cpu().clone() for p in params]
    grads = _grads(STEPS, device)
    grads[4][0, 0] = float("nan")
    for p, g in zip(params, grads, strict=True):
        p.grad = place(g)
    opt.step()
    after = [(p.full_tensor() if mesh is not None else p).detach().cpu() for p in params]
    return {
        "start": start,
        "params": out,
        "nan_step_gap": max(float((a - b).abs().max()) for a, b in zip(out, after, strict=True)),
        "skipped": opt.skipped_steps,
        "paths": [r.path for r in opt.fast_path_report()],
        "sharding": [r.sharding for r in opt.fast_path_report()],
        "prescaled": sorted(len(p) for p in opt._fast._prescales.values()),
    }


def run_rank(rank: int, world: int, port: int, path: str) -> None:
    """One rank: every layout with default options and with float32 polar iterations."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        results = {}
        for layout in ("single process", "replicated", "FSDP2"):
            results[layout, "float32"] = _run(layout, device, world, polar_dtype=torch.float32)
        for layout in ("single process", "replicated", "FSDP2"):
            results[layout, "default"] = _run(layout, device, world)
        if rank == 0:
            torch.save(results, path)
    finally:
        dist.destroy_process_group()


def spawn(path: str, world: int = 1) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(run_rank, args=(world, port, path), nprocs=world, join=True)
    return torch.load(path, weights_only=False)


def _relative(a: list[torch.Tensor], b: list[torch.Tensor], start: list[torch.Tensor]) -> float:
    """Largest ||a - b|| / ||b - start|| over the matrices (a gap relative to the change)."""
    return max(float((x - y).norm() / (y - s).norm()) for x, y, s in zip(a, b, start, strict=True))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return spawn(str(tmp_path_factory.mktemp("cuda_sharded") / "results.pt"))


@pytest.mark.cuda
def test_sharded_fast_path_on_cuda_equals_single_process(results):
    """float32 polar iterations: the replicated and FSDP2 steps (compiled, recorded, the
    exchange on a side stream, the stacks on compute streams) equal the single-process fast
    path within 1e-5 after 4 steps, the last replayed (float32 rounding in differently fused
    kernels; 1e-6 on CPU), and take its path."""
    one = results["single process", "float32"]
    assert one["paths"] == ["compiled+recorded"]
    for layout in ("replicated", "FSDP2"):
        case = results[layout, "float32"]
        gap = max(
            float((a - b).abs().max()) for a, b in zip(case["params"], one["params"], strict=True)
        )
        assert gap <= 1e-5, (layout, gap)
        assert case["paths"] == one["paths"]
    # at W = 1 both layouts run their exchange (degenerate collectives), planned over 1 rank
    for layout in ("replicated", "FSDP2"):
        sharding = results[layout, "float32"]["sharding"][0]
        assert sharding.startswith("sharded across ranks: 1 ranks"), (layout, sharding)


@pytest.mark.cuda
def test_sharded_fast_path_on_cuda_with_bf16_iterations(results):
    """Default options (16-bit polar iterations; float16 stacks prescaled as in one process,
    under FSDP2 with each matrix's prescale shared by its row parts; 16-bit updates): each
    layout against one process within twice the gap between one process's 16-bit and
    float32 iterations (see test_sharded.py), also after the step whose gradient spike
    makes a stored direction leave its prescale's window."""
    start = results["single process", "default"]["start"]
    one, one32 = results["single process", "default"], results["single process", "float32"]
    noise = _relative(one["params"], one32["params"], start)
    for layout in ("replicated", "FSDP2"):
        case = results[layout, "default"]
        assert _relative(case["params"], one["params"], start) <= 2 * noise, layout
    # both layouts prescale the stacks of aspect >= 2 (float16 Gram iterations): three
    # (256, 128), two (128, 384) and one (96, 512)
    assert results["replicated", "default"]["prescaled"] == [1, 2, 3]
    assert results["FSDP2", "default"]["prescaled"] == [1, 2, 3]


@pytest.mark.cuda
def test_sharded_fast_path_on_cuda_skips_a_nonfinite_step(results):
    """A nan gradient after the recordings: the step is skipped and no parameter changes."""
    for key, case in results.items():
        assert case["skipped"] == 1 and case["nan_step_gap"] == 0, key
