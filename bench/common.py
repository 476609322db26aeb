"""Shared helpers for the benchmark scripts: parameter sets, timing, machine description."""

from __future__ import annotations

import json
import platform
import re
import statistics
import time
from pathlib import Path

import torch

# Hidden-matrix sets named in issue 7 (shapes are (d_out, d_in) of nn.Linear weights).
SETS: dict[str, list[tuple[int, int]]] = {
    "gpt2-small": [(2304, 768), (768, 768), (3072, 768), (768, 3072)] * 12,
    "1.3b": [(6144, 2048), (2048, 2048), (8192, 2048), (2048, 8192)] * 24,
    "moe-64x2048x1408": [(2048, 1408)] * 64,
    # A CPU-sized set so that the scripts can be smoke-tested without a GPU.
    "tiny": [(96, 32), (32, 32), (128, 32), (32, 128)] * 2,
}


def parameters_with_gradients(
    shapes: list[tuple[int, ...]], device: torch.device | str | None = None, scale: float = 0.02
) -> list[torch.nn.Parameter]:
    """The benchmarks' fixed input: one random parameter per shape (entries of size `scale`),
    each with a standard normal gradient."""
    params = [torch.nn.Parameter(torch.randn(*s, device=device) * scale) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p)
    return params


def quintic_flops(m: int, n: int, steps: int) -> float:
    """FLOPs of `steps` quintic Newton-Schulz-type steps on one m x n matrix.

    Per step on the short side s and long side l: A = X X^T (2 s^2 l), B = b A + c A A (2 s^3),
    X <- a X + B X (2 s^2 l).
    """
    s, l = min(m, n), max(m, n)
    return steps * (4.0 * s * s * l + 2.0 * s**3)


def time_fn(fn, *, warmup: int = 3, repeat: int = 20) -> float:
    """Median wall time of `fn()` in milliseconds (CUDA events on GPU, perf_counter on CPU)."""
    cuda = torch.cuda.is_available()
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def pipelined(fn, steps: int = 20, rounds: int = 1) -> float:
    """Milliseconds per call of `steps` calls back to back between two CUDA events; with
    `rounds` > 1 the median over that many such runs."""
    if not torch.cuda.is_available():
        return time_fn(fn, warmup=1, repeat=steps)
    samples = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(steps):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / steps)
    return statistics.median(samples)


def matmul_ceiling(device: torch.device, n: int = 8192, dtype=torch.bfloat16) -> float:
    """Measured TFLOP/s of one n x n x n matrix product (the matmul ceiling)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ms = time_fn(lambda: a @ b, warmup=5, repeat=30)
    return 2.0 * n**3 / (ms * 1e-3) / 1e12


def machine() -> dict:
    """Device name and versions for the results files."""
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "device": "cpu",
    }
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            pass
    return info


def variant_tag(names: list[str]) -> str:
    """Variant names joined into a plain file-name part ("R P^2" -> "R_P_2")."""
    return "-".join(re.sub(r"[^A-Za-z0-9_.-]", "_", n) for n in names)


def write_result(name: str, payload: dict, out_dir: str | Path = "bench/results") -> Path:
    """Write `payload` (plus machine info) as JSON under `out_dir`, named by bench and device."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    tag = info["device"].replace(" ", "-").replace("/", "-")
    path = out / f"{name}-{tag}.json"
    path.write_text(json.dumps({"machine": info, **payload}, indent=2))
    return path


def in_graph_ms(fn, reps: int) -> float:
    """Mean milliseconds of fn() inside a recorded CUDA graph of `reps` calls."""
    from steepest.optim.fast.graphs import cuda_capture

    for _ in range(3):
        fn()  # warm up outside the recording (Triton compilation, cuBLAS heuristics)
    replay = cuda_capture(lambda: [fn() for _ in range(reps)])
    replay()  # the first replay uploads the graph
    return pipelined(replay, steps=5) / reps


def polar_express_float64(X: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The oracle of the 16-bit iterations: `steps` Polar Express steps on X (already
    normalized) in float64, direct form."""
    from steepest.polar import polar_express_coefficients

    X = X.double()
    for a, b, c in polar_express_coefficients(steps, 1e-3):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X


def sample_matrices(count: int, s: int, l: int) -> dict[str, torch.Tensor]:
    """float64 (count, s, l) stacks on the default device, unnormalized: Gaussian; singular
    values log-uniform in [1e-3, 1]; a rank-8 signal plus 1% noise, like a gradient."""
    gauss = torch.randn(count, s, l, dtype=torch.float64)
    U, _ = torch.linalg.qr(torch.randn(count, s, s, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(count, l, s, dtype=torch.float64))
    sv = torch.logspace(-3, 0, s, dtype=torch.float64).expand(count, s)
    spread = U @ torch.diag_embed(sv) @ V.mT
    low = torch.randn(count, s, 8, dtype=torch.float64)
    low = low @ torch.randn(count, 8, l, dtype=torch.float64)
    gradient = low / low.norm() + 0.01 * gauss / gauss.norm()
    return {"gaussian": gauss, "log spectrum": spread, "rank 8 + noise": gradient}


def parameters_in_layout(
    weights: list[torch.Tensor], grads: list[torch.Tensor], mode: str
) -> list[torch.nn.Parameter]:
    """Parameters holding ``weights`` with ``grads`` set: row-sharded DTensors over every
    rank of the default process group for mode "FSDP2", plain tensors otherwise."""
    if mode != "FSDP2":
        params = [torch.nn.Parameter(w) for w in weights]
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        return params
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh(weights[0].device.type, (dist.get_world_size(),))
    params = [torch.nn.Parameter(distribute_tensor(w, mesh, [Shard(0)])) for w in weights]
    for p, g in zip(params, grads, strict=True):
        p.grad = distribute_tensor(g, mesh, [Shard(0)])
    return params


def init_rank() -> tuple[int, int, torch.device]:
    """Join the torchrun process group (NCCL on CUDA, gloo with one thread on CPU); this
    rank, the world size and this rank's device."""
    import os

    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    return dist.get_rank(), dist.get_world_size(), device
