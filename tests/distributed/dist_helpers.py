"""A tiny mixed-shape model, its data, and the scenarios each spawned rank runs.

`spawn(world, outdir)` starts `world` gloo processes once; every rank runs all scenarios and
rank 0 saves their results to outdir/results.pt for the tests to compare with a single-process
run (computed in the pytest process, which never initializes torch.distributed).
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import steepest
from steepest.distributed import configure

LR = 0.05
BATCH = 16
#: matrices per step: qkv (two row blocks) + inp + 3 mid + 3 experts + out
MATRICES_PER_STEP = 2 + 1 + 3 + 3 + 1


class Net(nn.Module):
    """Mixed shapes: (6, 5) (empty shard on 4 ranks), (6, 6) with row blocks [3, 3], three
    (6, 6), experts (3, 6, 7), (7, 7) with uneven rows; one bias for AdamW. Widths never
    shrink toward the output, so every gradient has full rank (msign is then well posed)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(5, 6)
        self.qkv = nn.Linear(6, 6, bias=False)
        self.mid = nn.ModuleList([nn.Linear(6, 6, bias=False) for _ in range(3)])
        self.experts = nn.Parameter(torch.randn(3, 6, 7) / 3)
        self.out = nn.Linear(7, 7, bias=False)
        for p in self.parameters():  # orthogonal init keeps the gradients well conditioned
            if p.ndim == 2:
                nn.init.orthogonal_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.qkv(torch.tanh(self.inp(x))))
        for layer in self.mid:
            h = torch.tanh(layer(h))
        h = torch.tanh(torch.einsum("bi,eio->bo", h, self.experts))
        return self.out(h)


def param_groups(net: Net) -> list[dict]:
    matrices = [net.inp.weight, *(m.weight for m in net.mid), net.experts, net.out.weight]
    return [
        {"params": [net.qkv.weight], "algorithm": "muon", "blocks": [3, 3]},
        {"params": matrices, "algorithm": "muon"},
        {"params": [net.inp.bias], "algorithm": "adamw"},
    ]


def make_optimizer(
    net: Net, nonfinite: str = "raise", options: dict | None = None, **muon
) -> steepest.Steepest:
    hp = {"lr": LR, "backend": "svd", **muon}
    groups = param_groups(net)
    hps = {"muon": hp, "adamw": {"lr": 1e-2}}
    return steepest.Steepest(groups, hps, nonfinite=nonfinite, **(options or {}))


#: The fast path's configurations under torch.distributed, each against one process with the
#: same options: (optimizer options, Muon hyperparameters). "eager" is the CPU default (the
#: sharded step's local parts uncompiled); "fused" compiles them (dynamo's eager backend) with
#: the fused stage 1 and the device-side verdict, and records them (closure_capture, the CPU
#: stand-in of a CUDA graph). float32 polar iterations: the CPU would otherwise take bfloat16.
def _fast_options() -> dict[str, tuple[dict, dict]]:
    from steepest.optim.fast import FastPath, closure_capture

    polar = {"backend": "polar_express", "polar_dtype": torch.float32, "weight_decay": 0.1}
    recorded = {"compile": "eager", "cuda_graph": True, "fast": FastPath(capture=closure_capture)}
    return {"eager": ({}, polar), "fused": (recorded, polar)}


FAST = _fast_options()
#: The members that take the sharded fast path with an iterative polar backend: those whose
#: stage 1 is plain EMA momentum (``fused_momentum``), from the registry (SpecGD: Muon with
#: momentum 0, so its stage 1 stays unfused).
FAST_MEMBERS = tuple(
    sorted(n for n, a in steepest.optim.ALGORITHMS.items() if a.matrix and a.fused_momentum)
)


def fast_optimizer(
    net: Net,
    config: str,
    member: str = "muon",
    bf16_iterations: bool = False,
    fp16_iterations: bool = False,
    **extra,
) -> steepest.Steepest:
    """Member `member` on the Net's matrices with FAST[config]'s options (qkv in row blocks,
    so its stage 1 is unfused; the others fused where the config compiles); with
    ``bf16_iterations`` the polar iterations in their CPU default, bfloat16."""
    options, hp = FAST[config]
    if bf16_iterations:
        hp = {k: v for k, v in hp.items() if k != "polar_dtype"}
    if fp16_iterations:  # float16 iterations: the fused stage 1 prescales where it can
        hp = {**hp, "polar_dtype": torch.float16}
    groups = param_groups(net)
    for group in groups[:2]:
        group["algorithm"] = member
    hps = {member: {"lr": LR, **hp}, "adamw": {"lr": 1e-2}}
    return steepest.Steepest(groups, hps, **options, **extra)


class ConvNet(nn.Module):
    """A 4-D weight (6, 3, 2, 2), read as one 6 x 12 matrix whose rows FSDP2 shards (an empty
    shard on 4 ranks), and a (7, 6) linear layer with a bias."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.kernel = nn.Parameter(torch.randn(6, 3, 2, 2) / 3)
        self.out = nn.Linear(6, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (0, 7))  # 5 -> 12 inputs
        return self.out(torch.tanh(x @ self.kernel.reshape(6, 12).T))


def conv_optimizer(net: ConvNet, config: str, fp16_iterations: bool = False) -> steepest.Steepest:
    """Muon on the ConvNet's two matrices with FAST[config]'s options (float16 polar
    iterations with ``fp16_iterations``)."""
    options, hp = FAST[config]
    if fp16_iterations:
        hp = {**hp, "polar_dtype": torch.float16}
    groups = [
        {"params": [net.kernel, net.out.weight], "algorithm": "muon"},
        {"params": [net.out.bias], "algorithm": "adamw"},
    ]
    return steepest.Steepest(groups, {"muon": {"lr": LR, **hp}, "adamw": {"lr": 1e-2}}, **options)


def single_process_conv(config: str, steps: int = 3, fp16_iterations: bool = False):
    """The oracle of the ConvNet runs: one process, the full batch; (parameters, optimizer)."""
    net = ConvNet()
    opt = conv_optimizer(net, config, fp16_iterations)
    train(net, opt, steps)
    return {n: p.detach().clone() for n, p in net.named_parameters()}, opt


def single_process_fast(
    config: str,
    member: str = "muon",
    steps: int = 3,
    micro: int = 1,
    bf16_iterations=False,
    fp16_iterations=False,
):
    """The oracle of fast_sharded: one process, the full batch, the same options."""
    net = Net()
    opt = fast_optimizer(net, config, member, bf16_iterations, fp16_iterations)
    train(net, opt, steps, micro=micro)
    return {n: p.detach().clone() for n, p in net.named_parameters()}, opt


#: Every matrix member, with options that make "equal to one process" well posed: Shampoo's and
#: CASPR's inverse roots and SOAP's Adam step amplify all-reduce rounding by 1 / epsilon, and
#: SOAP's second moment depends on the basis eigh picks in a null space of dimension > 1 (the
#: [3, 3] blocks of a 6 x 6 weight), so those get a larger epsilon and SOAP no blocks.
FAMILY = {
    name: ({"epsilon": 1e-3} if name in ("shampoo", "caspr") else {})
    for name in sorted(n for n, a in steepest.optim.ALGORITHMS.items() if a.matrix)
}
FAMILY["soap"] = {"eps": 1e-3}
FAMILY["normuon"] = FAMILY["muon"] = FAMILY["polargrad"] = {"backend": "svd"}
FAMILY["mars_muon"] = FAMILY["adamuon"] = {"backend": "svd"}


def family_optimizer(net: Net, name: str) -> steepest.Steepest:
    """Member `name` on every matrix of the Net (qkv in row blocks but for SOAP)."""
    matrices = [net.inp.weight, *(m.weight for m in net.mid), net.experts, net.out.weight]
    qkv = {"params": [net.qkv.weight], "algorithm": name}
    if name != "soap":
        qkv["blocks"] = [3, 3]
    groups = [qkv, {"params": matrices, "algorithm": name}, {"params": [net.inp.bias]}]
    return steepest.Steepest(groups, {name: {"lr": 0.01, **FAMILY[name]}, "adamw": {"lr": 1e-2}})


def single_process_family(name: str, steps: int = 3) -> dict[str, torch.Tensor]:
    """The oracle of fsdp_family: member `name`, one process, the full batch."""
    net = Net()
    train(net, family_optimizer(net, name), steps)
    return {n: p.detach().clone() for n, p in net.named_parameters()}


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(BATCH, 5, generator=g), torch.randn(BATCH, 7, generator=g)


def loss_fn(model, x, y) -> torch.Tensor:
    return ((model(x) - y) ** 2).mean()


def train(model, opt, steps, *, start=0, rank=0, world=1, micro=1) -> None:
    """`steps` optimizer steps; each rank takes its slice of the batch in `micro` pieces."""
    for step in range(start, start + steps):
        x, y = batch(step)
        share = BATCH // world
        x, y = x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
        for xs, ys in zip(x.chunk(micro), y.chunk(micro), strict=True):
            (loss_fn(model, xs, ys) / micro).backward()
        opt.step()
        opt.zero_grad()


def single_process(steps: int, **muon) -> dict[str, torch.Tensor]:
    """The oracle: one process, the full batch."""
    net = Net()
    opt = make_optimizer(net, **muon)
    train(net, opt, steps)
    return {n: p.detach().clone() for n, p in net.named_parameters()}, opt


# --------------------------------------------------------------------------- spawned ranks


def spawn(world: int, outdir: str, names: tuple[str, ...] | None = None) -> None:
    """Run every scenario of SCENARIOS (or those named, "alone" among them) on `world` gloo
    ranks. A rank killed by a signal (not a Python
    error, which propagates) gets up to two more attempts on a fresh port: on the loaded 2-core
    machine a rank is now and then aborted by a C++ std::terminate ("terminate called without an
    active exception"), twice in a row once, while isolated runs pass."""
    attempts = 3
    for attempt in range(attempts):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            mp.spawn(_worker, args=(world, port, outdir, names), nprocs=world, join=True)
            return
        except mp.ProcessExitedException:
            if attempt == attempts - 1:
                raise


def _worker(rank: int, world: int, port: int, outdir: str, names: tuple[str, ...] | None) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        chosen = (
            SCENARIOS if names is None else {n: {**SCENARIOS, "alone": alone}[n] for n in names}
        )
        results = {name: scenario(rank, world, outdir) for name, scenario in chosen.items()}
        if rank == 0:
            torch.save(results, os.path.join(outdir, "results.pt"))
    finally:
        dist.destroy_process_group()


def _count(opt) -> dict[str, int]:
    counts = torch.tensor(
        [opt.stacks.orthogonalizations, opt.stacks.block_orthogonalizations], dtype=torch.int64
    )
    dist.all_reduce(counts)
    return {"full": int(counts[0]), "block": int(counts[1])}


def _full(model) -> dict[str, torch.Tensor]:
    out = {}
    for n, p in model.named_parameters():
        out[n] = (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
    return out


def _fsdp(net: Net) -> Net:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    for layer in (net.inp, net.qkv, *net.mid, net.out):
        fully_shard(layer, mesh=mesh)
    fully_shard(net, mesh=mesh)
    return net


def _saved_and_loaded(make, path, rank, world):
    """DCP round trip: a fresh FSDP2 Net and its optimizer ``make(net)`` train 2 steps and
    are saved to path, then loaded into another fresh Net and optimizer (before any step of
    theirs). Returns (the saved optimizer, the loaded Net, the loaded optimizer)."""
    import torch.distributed.checkpoint as dcp

    first = _fsdp(Net())
    saved = make(first)
    train(first, saved, 2, rank=rank, world=world)
    dcp.save({"model": first.state_dict(), "optim": saved.state_dict()}, checkpoint_id=path)
    resumed = _fsdp(Net())
    opt = make(resumed)
    state = {"model": resumed.state_dict(), "optim": opt.state_dict()}
    dcp.load(state, checkpoint_id=path)
    resumed.load_state_dict(state["model"])
    opt.load_state_dict(state["optim"])
    return saved, resumed, opt


def ddp(rank, world, outdir):
    model = nn.parallel.DistributedDataParallel(Net())
    opt = make_optimizer(model.module)
    dualizer = configure(opt, check_replicas=True)
    train(model, opt, 3, rank=rank, world=world)
    return {"params": _full(model.module), "count": _count(opt), "kind": type(dualizer).__name__}


def fsdp(rank, world, outdir):
    net = _fsdp(Net())
    opt = make_optimizer(net)  # no configure: DTensors are detected
    placements = sorted({str(p.placements) for p in net.parameters()})
    train(net, opt, 3, rank=rank, world=world)
    return {"params": _full(net), "count": _count(opt), "placements": placements}


def fsdp_polar_express(rank, world, outdir):
    net = _fsdp(Net())
    opt = make_optimizer(net, backend="polar_express")
    train(net, opt, 2, rank=rank, world=world)
    return {"params": _full(net)}


def fsdp_accumulate(rank, world, outdir):
    net = _fsdp(Net())
    opt = make_optimizer(net)
    train(net, opt, 3, rank=rank, world=world, micro=2)
    return {"params": _full(net), "count": _count(opt)}


def fsdp_checkpoint(rank, world, outdir):
    def make(net):
        opt = make_optimizer(net)
        configure(opt, block_period=3)
        return opt

    saved, resumed, opt = _saved_and_loaded(make, os.path.join(outdir, "dcp"), rank, world)
    keys = sorted(saved.state_dict()["state"][0])
    steps_after_load = opt.stacks.steps
    train(resumed, opt, 3, start=2, rank=rank, world=world)
    straight = _fsdp(Net())
    train(straight, make(straight), 5, rank=rank, world=world)
    all_keys = [None] * world
    dist.all_gather_object(all_keys, keys)
    return {
        "resumed": _full(resumed),
        "straight": _full(straight),
        "steps_after_load": steps_after_load,
        "state_keys": all_keys,
    }


def fsdp_block(rank, world, outdir):
    """Block period 2, momentum 0: step 2 dualizes local shards; record its grads and update."""
    net = _fsdp(Net())
    opt = make_optimizer(net, momentum=0.0, nesterov=False)
    configure(opt, block_period=2)
    train(net, opt, 1, rank=rank, world=world)
    before = _full(net)
    x, y = batch(1)
    share = BATCH // world
    loss_fn(
        net, x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
    ).backward()
    grads = {n: p.grad.full_tensor().clone() for n, p in net.named_parameters()}
    opt.step()
    return {"before": before, "after": _full(net), "grads": grads, "count": _count(opt)}


def fsdp_bf16(rank, world, outdir):
    net = _fsdp(Net())
    opt = make_optimizer(net)
    configure(opt, comm_dtype=torch.bfloat16, check_replicas=True)
    train(net, opt, 1, rank=rank, world=world)
    return {"params": _full(net)}


def unsynced_check(rank, world, outdir):
    """No DDP: ranks hold different gradients; check_replicas must catch it."""
    net = Net()
    opt = make_optimizer(net)
    configure(opt, check_replicas=True)
    loss_fn(net, *batch(rank)).backward()
    try:
        opt.step()
    except RuntimeError as err:
        return {"error": str(err)}
    return {"error": None}


def fsdp_nonfinite(rank, world, outdir):
    """An inf in rank 0's shard only (exact SVD Muon, the eager sharded path): with "skip"
    and with "raise" every rank must decide alike (no hang, no update); every rank's
    (error, skipped steps) gathered."""
    out = {}
    for mode in ("skip", "raise"):
        net = _fsdp(Net())
        opt = make_optimizer(net, nonfinite=mode)
        before = _full(net)
        x, y = batch(0)
        share = BATCH // world
        loss_fn(
            net, x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
        ).backward()
        if rank == 0:
            net.out.weight.grad.to_local()[0, 0] = float("inf")
        error = None
        try:
            opt.step()
        except FloatingPointError as err:
            error = str(err)
        ranks: list = [None] * world
        dist.all_gather_object(ranks, (error, opt.skipped_steps))
        out[mode] = {"before": before, "after": _full(net), "ranks": ranks}
    return out


def fsdp_family(rank, world, outdir):
    """Every matrix member under FSDP2 for 3 steps (NorMuon, Shampoo, CASPR and SOAP gather
    their whole matrices: steepest.distributed.whole), and under DDP."""
    out = {}
    for name in FAMILY:
        net = _fsdp(Net())
        train(net, family_optimizer(net, name), 3, rank=rank, world=world)
        out[name] = _full(net)
        model = nn.parallel.DistributedDataParallel(Net())
        train(model, family_optimizer(model.module, name), 3, rank=rank, world=world)
        out[f"ddp-{name}"] = _full(model.module)
    return out


def fsdp_family_checkpoint(rank, world, outdir):
    """DCP save after 2 steps, load into fresh FSDP2 models and optimizers, 2 more steps, for
    the members with whole-matrix state (plain tensors, the same on every rank), and Dion
    (its momentum a row-sharded DTensor, its Q replicated)."""
    gaps = {}
    for name in ("normuon", "shampoo", "soap", "dion"):
        path = os.path.join(outdir, f"dcp-{name}")
        _, resumed, opt = _saved_and_loaded(
            lambda net, name=name: family_optimizer(net, name), path, rank, world
        )
        train(resumed, opt, 2, start=2, rank=rank, world=world)
        straight = _fsdp(Net())
        train(straight, family_optimizer(straight, name), 4, rank=rank, world=world)
        a, b = _full(resumed), _full(straight)
        gaps[name] = max(float((a[n] - b[n]).abs().max()) for n in a)
    return gaps


#: Dion at low rank (3) with each orthonormalizer: sharded power iteration under FSDP2.
DION = {"qr": {}, "cholesky_qr": {"orthonormalize": "cholesky_qr"}}
DION_RANK = 3
#: (rows, columns) of the Dion-only Net's row-sharded matrices (collectives counted).
DION_SHAPES = [(6, 5), (6, 6), (6, 6), (6, 6), (7, 7)]


def dion_optimizer(
    net: Net, orthonormalize: str, only_rows: bool = False, **options
) -> steepest.Steepest:
    """Dion at rank 3 on the Net's matrices (qkv in row blocks and the 3-D experts: gathered
    whole under FSDP2), AdamW on the bias. ``only_rows``: only the row-sharded 2-D matrices
    (DION_SHAPES, experts frozen by leaving them out)."""
    hp = {"lr": 0.02, "rank": DION_RANK, **DION[orthonormalize], **options}
    rows = [net.inp.weight, *(m.weight for m in net.mid), net.out.weight]
    groups = [{"params": rows + ([] if only_rows else [net.experts]), "algorithm": "dion"}]
    if not only_rows:
        groups.append({"params": [net.qkv.weight], "algorithm": "dion", "blocks": [3, 3]})
    groups.append({"params": [net.inp.bias], "algorithm": "adamw"})
    return steepest.Steepest(groups, {"dion": hp, "adamw": {"lr": 1e-2}})


def single_process_dion(orthonormalize: str, steps: int = 3, only_rows: bool = False):
    """The oracle of the dion scenarios: one process, the full batch."""
    net = Net()
    train(net, dion_optimizer(net, orthonormalize, only_rows), steps)
    return {n: p.detach().clone() for n, p in net.named_parameters()}


def _record_collectives(step) -> tuple[list[tuple[str, int]], int]:
    """Run step() with torch.distributed's collectives and steepest.distributed.whole wrapped
    to record (name, elements sent); returns the records and the count of whole() calls."""
    import steepest.distributed as sd

    names = ("all_reduce", "all_gather", "all_to_all_single", "broadcast", "reduce_scatter")
    saved = {name: getattr(dist, name) for name in names}
    saved_whole = sd.whole
    calls: list[tuple[str, int]] = []
    wholes = [0]

    def wrap(name, fn):
        def recorded(tensor_or_list, *args, **kwargs):
            sent = args[0] if name in ("all_gather", "all_to_all_single") else tensor_or_list
            calls.append((name, sent.numel()))
            return fn(tensor_or_list, *args, **kwargs)

        return recorded

    def whole(t):
        wholes[0] += 1
        return saved_whole(t)

    for name in names:
        setattr(dist, name, wrap(name, saved[name]))
    sd.whole = whole
    try:
        step()
    finally:
        for name in names:
            setattr(dist, name, saved[name])
        sd.whole = saved_whole
    return calls, wholes[0]


def dion_sharded(rank, world, outdir):
    """Dion ("qr") on the whole Net under FSDP2 and DDP for 3 steps; and, with each
    orthonormalizer, the row-sharded matrices alone for 3 steps, the second one's collectives
    recorded."""
    out = {}
    net = _fsdp(Net())  # the whole Net, "qr" (row blocks and experts gathered whole)
    opt = dion_optimizer(net, "qr")
    train(net, opt, 3, rank=rank, world=world)
    momentum = opt.state[net.out.weight]["momentum_buffer"]
    out["fsdp"] = _full(net)
    out["momentum-local"] = tuple(momentum.to_local().shape)
    model = nn.parallel.DistributedDataParallel(Net())  # every rank the whole update
    train(model, dion_optimizer(model.module, "qr"), 3, rank=rank, world=world)
    out["ddp"] = _full(model.module)
    for method in DION:
        net = _fsdp(Net())
        opt = dion_optimizer(net, method, only_rows=True)
        train(net, opt, 1, rank=rank, world=world)  # state and FSDP2's lazy init
        x, y = batch(1)
        share = BATCH // world
        loss_fn(
            net, x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
        ).backward()
        calls, wholes = _record_collectives(opt.step)
        opt.zero_grad()
        train(net, opt, 1, start=2, rank=rank, world=world)
        out[f"calls-{method}"] = calls
        out[f"wholes-{method}"] = wholes
        out[f"rows-{method}"] = _full(net)
    return out


def dion_sync_factors(rank, world, outdir):
    """Dion with sync_factors on plain, unsynchronized replicas (no DDP): each rank's
    gradients are its batch share's, the bias's averaged by hand (it is AdamW's); 3 steps,
    the second's collectives recorded."""
    out = {}
    for method in DION:
        net = Net()
        opt = dion_optimizer(net, method, only_rows=True, sync_factors=True)
        for step in range(3):
            x, y = batch(step)
            share = BATCH // world
            loss_fn(
                net, x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
            ).backward()
            dist.all_reduce(net.inp.bias.grad)
            net.inp.bias.grad /= world
            calls, _ = _record_collectives(opt.step)
            opt.zero_grad()
            if step == 1:
                out[f"calls-{method}"] = calls
        out[method] = _full(net)
    return out


#: MuLoCo's rounds: H = 2, 4 inner steps (two outer steps), each compression.
MULOCO_STEPS, MULOCO_H = 4, 2
MULOCO_COMPRESSIONS = (None, "topk", "int8")


def muloco_closure(w: torch.Tensor, k: int):
    """Worker k's loss 0.5 ||A_k w - goal_k||^2 (its own batch): A_k = (1 + k / 2) I plus a
    fixed perturbation, goal_k Gaussian from seed 10 + k."""
    gen = torch.Generator().manual_seed(10 + k)
    goal = torch.randn(5, 4, generator=gen)
    A = (1 + k / 2) * torch.eye(5) + 0.1 * torch.randn(5, 5, generator=gen)

    def run():
        loss = 0.5 * (A @ w - goal).square().sum()
        loss.backward()
        return loss

    return run


def muloco_start() -> torch.Tensor:
    return torch.randn(5, 4, generator=torch.Generator().manual_seed(7))


MULOCO_HP = {"lr": 0.05, "backend": "svd", "sync_every": MULOCO_H, "topk_fraction": 0.25}


def muloco(rank, world, outdir):
    """Each rank one worker (its own data k = rank) for MULOCO_STEPS steps; rank 1 starts
    from other weights, which the constructor's broadcast replaces by rank 0's."""
    from steepest.optim.family.muloco import DistributedMuLoCo

    out = {}
    for compression in MULOCO_COMPRESSIONS:
        start = muloco_start() if rank != 1 else torch.zeros(5, 4)
        w = nn.Parameter(start)
        opt = DistributedMuLoCo([w], compression=compression, **MULOCO_HP)
        calls = []
        for _ in range(MULOCO_STEPS):
            opt.zero_grad()
            closure = muloco_closure(w, rank)
            step_calls, _ = _record_collectives(lambda o=opt, c=closure: o.step(c))
            calls.append(step_calls)
        out[str(compression)] = w.detach().clone()
        out[f"calls-{compression}"] = calls
    # the simulation inside a process group: its inner optimizers must not share their steps
    from steepest.optim.family.muloco import MuLoCo

    v = nn.Parameter(muloco_start())
    sim = MuLoCo([v], workers=world, **MULOCO_HP)
    for _ in range(MULOCO_STEPS):
        sim.step([muloco_closure(v, k) for k in range(world)])
    out["simulated-in-group"] = v.detach().clone()
    return out


def fast_sharded(rank, world, outdir):
    """The sharded fast path (FAST configurations) under FSDP2 and DDP: every fast member for
    3 steps; micro-batch accumulation; a non-finite gradient on rank 0 ("skip" and "raise");
    a DCP save and resume; the report's plan; the update with float32 and bfloat16
    communication (exact SVD Muon, and the fast path)."""

    from steepest.distributed import configure as configure_

    out: dict = {}
    for config in FAST:
        for member in FAST_MEMBERS:
            net = _fsdp(Net())
            opt = fast_optimizer(net, config, member)
            train(net, opt, 3, rank=rank, world=world)
            out[f"fsdp-{config}-{member}"] = _full(net)
            out[f"paths-{config}-{member}"] = [
                (r.path, r.device_check, r.sharding) for r in opt.fast_path_report()
            ]
            model = nn.parallel.DistributedDataParallel(Net())
            opt = fast_optimizer(model.module, config, member)
            train(model, opt, 3, rank=rank, world=world)
            out[f"ddp-{config}-{member}"] = _full(model.module)
            out[f"ddp-paths-{config}-{member}"] = [r.sharding for r in opt.fast_path_report()]
        net = _fsdp(Net())
        train(net, fast_optimizer(net, config), 3, rank=rank, world=world, micro=2)
        out[f"accumulate-{config}"] = _full(net)
        for mode in ("skip", "raise"):
            net = _fsdp(Net())
            opt = fast_optimizer(net, config, nonfinite=mode)
            train(net, opt, 3, rank=rank, world=world)  # past the recording's warm-up
            before, state_before = _full(net), _momenta(opt)
            x, y = _share(batch(3), rank, world)
            loss_fn(net, x, y).backward()
            if rank == 0:
                net.out.weight.grad.to_local()[0, 0] = float("nan")
            error = None
            try:
                opt.step()
            except FloatingPointError as err:
                error = str(err)
            ranks: list = [None] * world  # every rank's (error, skipped steps)
            dist.all_gather_object(ranks, (error, opt.skipped_steps))
            out[f"nonfinite-{config}-{mode}"] = {
                "error": error,
                "skipped": opt.skipped_steps,
                "ranks": ranks,
                "param_gap": max(float((before[n] - v).abs().max()) for n, v in _full(net).items()),
                "state_gap": max(
                    float((a - b).abs().max())
                    for a, b in zip(state_before, _momenta(opt), strict=True)
                ),
            }
        path = os.path.join(outdir, f"dcp-fast-{config}")
        _, resumed, opt = _saved_and_loaded(
            lambda net, config=config: fast_optimizer(net, config), path, rank, world
        )
        train(resumed, opt, 2, start=2, rank=rank, world=world)
        out[f"resumed-{config}"] = _full(resumed)
    for config in FAST:  # a 4-D weight: its row shards' squared norms are added up
        from torch.distributed.fsdp import fully_shard

        net = fully_shard(ConvNet())
        opt = conv_optimizer(net, config)
        train(net, opt, 3, rank=rank, world=world)
        out[f"conv-{config}"] = _full(net)
        out[f"conv-paths-{config}"] = [r.path for r in opt.fast_path_report()]
    for steps in (1, 3):  # bfloat16 polar iterations: bfloat16 updates in both layouts
        net = _fsdp(Net())
        opt = fast_optimizer(net, "fused", bf16_iterations=True)
        train(net, opt, steps, rank=rank, world=world)
        out[f"bf16-iterations-fsdp-{steps}"] = _full(net)
        model = nn.parallel.DistributedDataParallel(Net())
        opt = fast_optimizer(model.module, "fused", bf16_iterations=True)
        train(model, opt, steps, rank=rank, world=world)
        out[f"bf16-iterations-ddp-{steps}"] = _full(model.module)
    model = nn.parallel.DistributedDataParallel(Net())  # float16: a prescaled stage 1
    opt = fast_optimizer(model.module, "fused", fp16_iterations=True)
    train(model, opt, 1, rank=rank, world=world)
    out["fp16-iterations-ddp"] = _full(model.module)
    out["fp16-iterations-ddp-prescaled"] = sorted(len(p) for p in opt._fast._prescales.values())
    net = _fsdp(Net())  # FSDP2: the row parts of each matrix share its prescale
    train(net, fast_optimizer(net, "fused", fp16_iterations=True), 1, rank=rank, world=world)
    out["fp16-iterations-fsdp"] = _full(net)
    for steps in (1, 5):  # every tensor one matrix: all prescaled; steps 4-5 replay
        from torch.distributed.fsdp import fully_shard

        net = fully_shard(ConvNet())
        opt = conv_optimizer(net, "fused", fp16_iterations=True)
        train(net, opt, steps, rank=rank, world=world)
        out[f"fp16-iterations-conv-{steps}"] = _full(net)
        every: list = [None] * world  # each rank's prescales
        dist.all_gather_object(every, [p.tolist() for p in opt._fast._prescales.values()])
        out[f"fp16-iterations-conv-prescales-{steps}"] = every
    for comm in (None, torch.bfloat16):  # one step of exact Muon: the update's error
        net = _fsdp(Net())
        opt = make_optimizer(net)
        configure_(opt, comm_dtype=comm)
        train(net, opt, 1, rank=rank, world=world)
        out[f"comm-{comm}"] = _full(net)
        net = _fsdp(Net())  # the fast path's step (float32 polar iterations)
        opt = fast_optimizer(net, "eager")
        configure_(opt, comm_dtype=comm)
        train(net, opt, 1, rank=rank, world=world)
        out[f"fast-comm-{comm}"] = _full(net)
    return out


def _share(xy, rank, world):
    share = BATCH // world
    return tuple(t[rank * share : (rank + 1) * share] for t in xy)


def _momenta(opt) -> list[torch.Tensor]:
    out = []
    for state in opt.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                out.append((v.full_tensor() if hasattr(v, "full_tensor") else v).clone())
    return out


def alone(rank, world, outdir):
    """One rank (world size 1): the fast path's sharded step under FSDP2 and on replicated
    plain tensors (``configure``) with every collective made to raise: a rank without peers
    exchanges nothing, and its result is still the single process's."""
    from unittest import mock

    from steepest.distributed import configure as configure_

    def refuse(*args, **kwargs):
        raise AssertionError("a collective ran at world size 1")

    out: dict = {}
    with (
        mock.patch.object(dist, "all_to_all_single", refuse),
        mock.patch.object(dist, "all_gather_into_tensor", refuse),
    ):
        for config in FAST:
            net = _fsdp(Net())
            opt = fast_optimizer(net, config)
            train(net, opt, 3, rank=rank, world=world)
            out[f"fsdp-{config}"] = _full(net)
            out[f"fsdp-paths-{config}"] = [r.sharding for r in opt.fast_path_report()]
            for comm in (None, torch.bfloat16):
                net = Net()
                opt = fast_optimizer(net, config)
                configure_(opt, comm_dtype=comm)
                train(net, opt, 3, rank=rank, world=world)
                out[f"replicated-{config}-{comm}"] = _full(net)
    return out


def adamw_local(rank, world, outdir):
    """The "adamw" member on FSDP2 parameters (every tensor of a Net, uneven and empty
    shards) steps their local parts: the same parameters as torch.optim.AdamW, which steps
    the DTensors through DTensor's dispatch, after 3 steps; and the parts it steps are plain
    tensors."""
    from steepest.optim.family.adamw import _local_parts

    hp = {"lr": 1e-2, "betas": (0.9, 0.95), "weight_decay": 0.1}
    mine = _fsdp(Net())
    groups = [{"params": list(mine.parameters()), "algorithm": "adamw"}]
    opt = steepest.Steepest(groups, {"adamw": hp})
    theirs = _fsdp(Net())
    reference = torch.optim.AdamW(theirs.parameters(), **hp)
    train(mine, opt, 3, rank=rank, world=world)
    train(theirs, reference, 3, rank=rank, world=world)
    loss_fn(mine, *_share(batch(3), rank, world)).backward()
    params = [p for p in mine.parameters() if p.grad is not None]
    states = [opt.state[p] for p in params]
    local = _local_parts(params, [p.grad for p in params], states)
    plain = all(type(t) is torch.Tensor for ts in local[:2] for t in ts)
    mine_full, theirs_full, start = _full(mine), _full(theirs), _full(_fsdp(Net()))
    return {
        "gap": max(float((mine_full[n] - theirs_full[n]).abs().max()) for n in mine_full),
        "change": min(float((theirs_full[n] - v).abs().max()) for n, v in start.items()),
        "plain": plain,
        "moments_plain": all(type(s["exp_avg"]) is torch.Tensor for s in local[2]),
    }


SCENARIOS = {
    "adamw_local": adamw_local,
    "fast_sharded": fast_sharded,
    "dion_sharded": dion_sharded,
    "dion_sync_factors": dion_sync_factors,
    "muloco": muloco,
    "fsdp_family": fsdp_family,
    "fsdp_family_checkpoint": fsdp_family_checkpoint,
    "fsdp_nonfinite": fsdp_nonfinite,
    "ddp": ddp,
    "fsdp": fsdp,
    "fsdp_polar_express": fsdp_polar_express,
    "fsdp_accumulate": fsdp_accumulate,
    "fsdp_checkpoint": fsdp_checkpoint,
    "fsdp_block": fsdp_block,
    "fsdp_bf16": fsdp_bf16,
    "unsynced_check": unsynced_check,
}
