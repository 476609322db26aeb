"""Sharded dualization on CPU with gloo, 2 and 4 processes, against a single-process oracle.

One spawn per world size runs every scenario (dist_helpers.SCENARIOS); the tests compare its
results with a single-process run (fp32, SVD backend unless stated) and with fp64 SVD.
Tolerance 1e-6 on parameters after several steps (the gradients are well conditioned, so
all-reduce rounding of ~1e-9 stays far below it).
"""

from __future__ import annotations

import math

import pytest
import torch
from dist_helpers import (
    DION,
    DION_RANK,
    DION_SHAPES,
    FAMILY,
    FAST,
    FAST_MEMBERS,
    LR,
    MATRICES_PER_STEP,
    MULOCO_COMPRESSIONS,
    MULOCO_H,
    MULOCO_HP,
    MULOCO_STEPS,
    ConvNet,
    Net,
    batch,
    make_optimizer,
    muloco_closure,
    muloco_start,
    single_process,
    single_process_conv,
    single_process_dion,
    single_process_family,
    single_process_fast,
    spawn,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from steepest.distributed import ShardedDualizer, configure, shard_rows
from steepest.optim.family.muloco import DistributedMuLoCo, MuLoCo

TOL = 1e-6


@pytest.fixture(scope="module", params=[2, 4], ids=lambda w: f"world{w}")
def run(request, tmp_path_factory):
    world = request.param
    outdir = tmp_path_factory.mktemp(f"world{world}")
    spawn(world, str(outdir))
    return world, torch.load(outdir / "results.pt", weights_only=False)


@pytest.fixture(scope="module")
def oracle_3_steps():
    return single_process(3)


def max_gap(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def test_adamw_member_steps_fsdp2_local_parts_as_torch_adamw_steps_dtensors(run):
    _, results = run
    r = results["adamw_local"]
    assert r["plain"] and r["moments_plain"]  # the local parts, not DTensors, are stepped
    assert r["change"] > 1e-3  # every parameter moved, so the comparison says something
    assert r["gap"] <= TOL


def test_adamw_member_keeps_plain_tensors():
    from steepest.optim.family.adamw import _local_parts

    params = [torch.randn(3, 2)]
    grads = [torch.randn(3, 2)]
    states = [{"exp_avg": torch.zeros(3, 2), "step": torch.tensor(0.0)}]
    out = _local_parts(params, grads, states)
    assert out[0] is params and out[1] is grads and out[2] is states


def test_local_part_of_a_plain_tensor_is_itself_and_else_its_local_tensor():
    from steepest.matrices import local_part

    t = torch.randn(3, 2)
    assert local_part(t) is t

    class Wrapped:  # a tensor subclass without ``_local_tensor`` falls back to to_local()
        def to_local(self) -> torch.Tensor:
            return t

    assert local_part(Wrapped()) is t  # type: ignore[arg-type]


def test_local_state_replaces_each_tensor_by_its_local_part_and_keeps_the_rest():
    from steepest.matrices import local_state

    class Sharded(torch.Tensor):  # stands for a DTensor: only its local tensor is read
        pass

    t, local = torch.randn(3, 2), torch.randn(2, 2)
    shard = torch.randn(4, 2).as_subclass(Sharded)
    shard._local_tensor = local  # type: ignore[attr-defined]
    got = local_state({"momentum_buffer": t, "exp_avg": shard, "step": 4})
    assert got["momentum_buffer"] is t and got["exp_avg"] is local and got["step"] == 4


def test_ddp_equals_single_process(run, oracle_3_steps):
    world, results = run
    reference, _ = oracle_3_steps
    assert max_gap(results["ddp"]["params"], reference) <= TOL


def test_fsdp2_equals_single_process_with_uneven_shards(run, oracle_3_steps):
    world, results = run
    reference, _ = oracle_3_steps
    assert results["fsdp"]["placements"] == ["(Shard(dim=0),)"]
    # uneven: out (7 rows) on 2 and 4 ranks; inp (6 rows) leaves rank 3 of 4 empty
    assert 7 % world != 0
    assert max_gap(results["fsdp"]["params"], reference) <= TOL


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_every_matrix_member_under_fsdp2_and_ddp_equals_single_process(run, name):
    """The whole family on FSDP2 shards (uneven, and empty on 4 ranks) and under DDP. SOAP's
    Adam step in the rotated basis still amplifies all-reduce rounding (to about 1e-5):
    tolerance 1e-4."""
    _, results = run
    reference = single_process_family(name)
    tolerance = 1e-4 if name == "soap" else TOL
    assert max_gap(results["fsdp_family"][name], reference) <= tolerance
    assert max_gap(results["fsdp_family"][f"ddp-{name}"], reference) <= tolerance


def test_dcp_resume_of_whole_matrix_state_is_exact(run):
    _, results = run
    expected = {"normuon": 0.0, "shampoo": 0.0, "soap": 0.0, "dion": 0.0}
    assert results["fsdp_family_checkpoint"] == expected


def test_fsdp2_equals_single_process_polar_express(run):
    _, results = run
    reference, _ = single_process(2, backend="polar_express")
    assert max_gap(results["fsdp_polar_express"]["params"], reference) <= TOL


def test_gradient_accumulation_equals_one_large_batch(run, oracle_3_steps):
    _, results = run
    reference, _ = oracle_3_steps
    assert max_gap(results["fsdp_accumulate"]["params"], reference) <= TOL
    assert results["fsdp_accumulate"]["count"]["full"] == 3 * MATRICES_PER_STEP


def test_orthogonalization_count_equals_matrices_per_step(run, oracle_3_steps):
    _, results = run
    _, opt = oracle_3_steps
    # hand count: qkv 2 row blocks + inp 1 + mid 3 + experts 3 + out 1
    assert MATRICES_PER_STEP == 10
    assert opt.stacks.orthogonalizations == 3 * MATRICES_PER_STEP
    for name in ("ddp", "fsdp"):
        assert results[name]["count"] == {"full": 3 * MATRICES_PER_STEP, "block": 0}


def test_dcp_resume_matches_uninterrupted_run(run, oracle_3_steps):
    world, results = run
    ckpt = results["fsdp_checkpoint"]
    assert ckpt["state_keys"] == [["momentum_buffer"]] * world
    assert ckpt["steps_after_load"] == 2
    assert max_gap(ckpt["resumed"], ckpt["straight"]) <= TOL
    # the run uses block_period=3, so the step count had to survive the checkpoint: with
    # block steps the trajectory leaves the exact one
    exact, _ = single_process(5)
    assert max_gap(ckpt["straight"], exact) > 1e-4


def _msign64(G: torch.Tensor) -> torch.Tensor:
    U, _, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    return U @ Vh


def _row_pieces(rows: int, world: int, blocks=None) -> list[torch.Tensor]:
    """Row index sets of the local matrices: torch.chunk shards cut by the row blocks."""
    edges = [0]
    for b in blocks or [rows]:
        edges.append(edges[-1] + b)
    pieces = []
    for shard in torch.arange(rows).chunk(world):
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            idx = shard[(shard >= lo) & (shard < hi)]
            if len(idx):
                pieces.append(idx)
    return pieces


def test_block_step_dualizes_each_local_shard(run):
    world, results = run
    block = results["fsdp_block"]
    grads, before, after = block["grads"], block["before"], block["after"]
    expected_count = 0
    for name, G in grads.items():
        if G.ndim < 2:
            continue
        if G.ndim == 3:  # experts: Shard(0) splits whole matrices, so a block step is exact
            U = torch.stack([_msign64(g) * math.sqrt(g.shape[0] / g.shape[1]) for g in G])
            expected_count += G.shape[0]
        else:
            U = torch.zeros_like(G, dtype=torch.float64)
            pieces = _row_pieces(G.shape[0], world, [3, 3] if name == "qkv.weight" else None)
            for idx in pieces:
                U[idx] = _msign64(G[idx]) * math.sqrt(len(idx) / G.shape[1])
            expected_count += len(pieces)
        step = (before[name] - after[name]).double() / LR
        assert float((step - U).abs().max()) * LR <= TOL, name
    assert block["count"] == {"full": MATRICES_PER_STEP, "block": expected_count}


def test_bf16_communication_is_close_but_rounded(run):
    _, results = run
    reference, _ = single_process(1)
    gap = max_gap(results["fsdp_bf16"]["params"], reference)
    assert 0 < gap <= LR * 1e-2


def test_check_replicas_catches_unsynchronized_gradients(run):
    _, results = run
    error = results["unsynced_check"]["error"]
    assert error is not None and "differ across ranks" in error


def test_nonfinite_gradient_on_one_rank_skips_or_raises_on_every_rank(run):
    """An inf in rank 0's shard of one weight: with "skip" every rank skips, with "raise"
    every rank raises naming that weight; no rank writes a parameter."""
    world, results = run
    skip, raised = results["fsdp_nonfinite"]["skip"], results["fsdp_nonfinite"]["raise"]
    assert skip["ranks"] == [(None, 1)] * world
    for error, skipped in raised["ranks"]:
        assert "non-finite gradient" in error and "(7, 7)" in error and skipped == 0
    for case in (skip, raised):
        assert max_gap(case["before"], case["after"]) == 0


def test_dion_sharded_power_iteration_equals_single_process(run):
    """Dion at rank 3 ("qr"), three steps, under FSDP2 (uneven shards; on 4 ranks the (6, 5)
    input weight leaves rank 3 empty; row blocks and the 3-D experts gathered whole) and
    under DDP, against one process in float32: 1e-6. The momentum keeps only this rank's
    rows. Each orthonormalizer on the row-sharded matrices alone: 1e-6."""
    world, results = run
    case = results["dion_sharded"]
    reference = single_process_dion("qr")
    assert max_gap(case["fsdp"], reference) <= TOL
    assert max_gap(case["ddp"], reference) <= TOL
    assert case["momentum-local"] == (shard_rows(7, world)[0], 7)
    for method in DION:
        rows_only = single_process_dion(method, only_rows=True)
        assert max_gap(case[f"rows-{method}"], rows_only) <= TOL, method


@pytest.mark.parametrize("method", sorted(DION))
def test_dion_sharded_step_sends_only_the_small_factors(run, method):
    """One step on the row-sharded matrices (m, n) alone: after the engine's non-finite
    agreement (one number), per matrix: ||B||_F^2 (one number), then for "qr" an all-gather
    of P (ceil(m / W) rows x r per rank) or for "cholesky_qr" the sketch (ceil(1.25 r) x r)
    and the Gram matrix (r x r), then R = B^T P (n x r). No whole matrix is gathered or
    exchanged, and every message is smaller than the smallest matrix."""
    world, results = run
    case = results["dion_sharded"]
    r = DION_RANK
    expected = [("all_reduce", 1)]
    for m, n in DION_SHAPES:
        expected.append(("all_reduce", 1))
        if method == "qr":
            expected.append(("all_gather", -(-m // world) * r))
        else:
            expected += [("all_reduce", math.ceil(1.25 * r) * r), ("all_reduce", r * r)]
        expected.append(("all_reduce", n * r))
    assert case[f"calls-{method}"] == expected
    assert case[f"wholes-{method}"] == 0
    sizes = [size for _, size in case[f"calls-{method}"]]
    assert max(sizes) < min(m * n for m, n in DION_SHAPES)


@pytest.mark.parametrize("method", sorted(DION))
def test_dion_sync_factors_on_unsynchronized_replicas_equals_single_process(run, method):
    """sync_factors=True without DDP: each rank its own gradients and momentum, only B_i Q
    (m x r) and B_i^T P (n x r) averaged per matrix (after the engine's non-finite agreement,
    one number); three steps equal one process on the full batch in float32: 1e-6."""
    world, results = run
    case = results["dion_sync_factors"]
    assert max_gap(case[method], single_process_dion(method, only_rows=True)) <= TOL
    expected = [("all_reduce", 1)]
    for m, n in DION_SHAPES:
        expected += [("all_reduce", m * DION_RANK), ("all_reduce", n * DION_RANK)]
    assert case[f"calls-{method}"] == expected


@pytest.mark.parametrize("compression", MULOCO_COMPRESSIONS, ids=str)
def test_distributed_muloco_equals_the_single_process_simulation(run, compression):
    """W ranks, one worker each (rank k on worker k's data; rank 1 starts elsewhere and is
    overwritten by the constructor's broadcast), H = 2, four steps, against MuLoCo
    simulating W workers in one process: float32, 1e-6. Inner steps send nothing; each outer
    step is one all-reduce of the (dense) deltas."""
    world, results = run
    case = results["muloco"]
    w = torch.nn.Parameter(muloco_start())
    opt = MuLoCo([w], workers=world, compression=compression, **MULOCO_HP)
    for _ in range(MULOCO_STEPS):
        opt.step([muloco_closure(w, k) for k in range(world)])
    assert float((w.detach() - case[str(compression)]).abs().max()) <= TOL
    expected = [
        [("all_reduce", w.numel())] if (step + 1) % MULOCO_H == 0 else []
        for step in range(MULOCO_STEPS)
    ]
    assert case[f"calls-{compression}"] == expected
    if compression is None:  # the simulation run on each rank of a process group
        assert float((w.detach() - case["simulated-in-group"]).abs().max()) <= TOL


@pytest.fixture(scope="module")
def fast_oracles():
    """One process, the full batch, each FAST configuration and member: 3 steps; Muon also 4
    steps (the resumed run) and 3 steps in two micro-batches."""
    out = {}
    for config in FAST:
        for member in FAST_MEMBERS:
            out[config, member] = single_process_fast(config, member)
        out[config, "4 steps"] = single_process_fast(config, steps=4)
        out[config, "micro"] = single_process_fast(config, micro=2)
    return out


@pytest.mark.parametrize("member", FAST_MEMBERS)
@pytest.mark.parametrize("config", sorted(FAST))
def test_sharded_fast_path_equals_single_process(run, fast_oracles, config, member):
    """The fast path's step under FSDP2 (uneven and empty shards, mixed shapes, row blocks,
    3-D experts) and DDP: its local stages compiled and recorded ("fused") or eager, the
    exchange between them; float32 polar iterations, 3 steps, against one process with the
    same options: 1e-6. The report says the group ran sharded, on the planned path."""
    world, results = run
    reference, single = fast_oracles[config, member]
    case = results["fast_sharded"]
    assert max_gap(case[f"fsdp-{config}-{member}"], reference) <= TOL
    assert max_gap(case[f"ddp-{config}-{member}"], reference) <= TOL
    rows = case[f"paths-{config}-{member}"]
    for (path, device_check, sharding), one in zip(
        rows[:2], single.fast_path_report()[:2], strict=True
    ):
        assert (path, device_check) == (one.path, one.device_check)
        assert sharding.startswith(f"sharded across ranks: {world} ranks")
    assert rows[2][2] == ""  # AdamW's group: no plan
    assert case[f"ddp-paths-{config}-{member}"][1].startswith(f"sharded across ranks: {world}")


def _recount(m: int, n: int) -> float:
    """Flops of 5 quintic polar steps on an m x n matrix, product by product (X X^T, A A,
    B X on the short side s and long side l; (a x b)(b x c) costs 2 a b c)."""
    s, l = min(m, n), max(m, n)
    return 5 * (2 * s * l * s + 2 * s * s * s + 2 * s * s * l)


@pytest.mark.parametrize("layout", ["fsdp", "ddp"])
def test_report_prints_the_rank_plan(run, layout):
    """The report's ``sharding`` of the Net's main Muon group (inp (6, 5), three (6, 6),
    experts 3 x (6, 7), out (7, 7)) after 3 steps: W entries of polar flops per rank that
    sum to the recounted total and each are the flops of some subset of the matrices (the
    items are whole matrices or whole tensors, so a rank's share is such a sum); 3
    significant digits as printed."""
    world, results = run
    case = results["fast_sharded"]
    if layout == "fsdp":
        sharding = case["paths-fused-muon"][1][2]
    else:
        sharding = case["ddp-paths-fused-muon"][1]
    loads = [float(x) for x in sharding.split("polar flops per rank [")[1].split("]")[0].split(",")]
    costs = [_recount(6, 5), *[_recount(6, 6)] * 3, *[_recount(6, 7)] * 3, _recount(7, 7)]
    assert len(loads) == world
    assert sum(loads) == pytest.approx(sum(costs), rel=5e-3 * world)
    subsets = {sum(c for i, c in enumerate(costs) if mask >> i & 1) for mask in range(256)}
    for load in loads:
        assert any(abs(load - t) <= 5e-3 * max(t, 1.0) for t in subsets), (load, sharding)


@pytest.mark.parametrize("config", sorted(FAST))
def test_sharded_fast_path_accumulation_and_resume(run, fast_oracles, config):
    """Two micro-batches per step equal one (1e-6); a DCP save after 2 steps and a resume
    into fresh models and optimizers for 2 more equal 4 uninterrupted steps of one process
    (1e-6)."""
    _, results = run
    case = results["fast_sharded"]
    assert max_gap(case[f"accumulate-{config}"], fast_oracles[config, "micro"][0]) <= TOL
    assert max_gap(case[f"resumed-{config}"], fast_oracles[config, "4 steps"][0]) <= TOL


@pytest.mark.parametrize("config", sorted(FAST))
def test_sharded_fast_path_nonfinite_gradient_on_one_rank(run, config):
    """A nan in rank 0's shard only, after the recordings were made: with "skip" every rank
    skips; with "raise" every rank raises naming the parameter; no parameter and no state
    entry changes on any rank ("fused": the device-side verdict, combined across ranks on
    the device, masks the recorded step)."""
    world, results = run
    case = results["fast_sharded"]
    skip, raised = case[f"nonfinite-{config}-skip"], case[f"nonfinite-{config}-raise"]
    assert skip["ranks"] == [(None, 1)] * world  # every rank skipped, none raised
    for error, skipped in raised["ranks"]:  # every rank raised naming the parameter
        assert "non-finite gradient" in error and "(7, 7)" in error and skipped == 0
    for outcome in (skip, raised):
        assert outcome["param_gap"] == 0 and outcome["state_gap"] == 0


@pytest.mark.parametrize("config", sorted(FAST))
def test_sharded_fast_path_with_a_4d_weight(run, config):
    """A 4-D weight read as one matrix whose rows FSDP2 shards (empty on 4 ranks): 3 steps
    equal one process (1e-6); "fused" adds up the row shards' squared norms at the owner."""
    _, results = run
    case = results["fast_sharded"]
    reference, single = single_process_conv(config)
    assert max_gap(case[f"conv-{config}"], reference) <= TOL
    assert case[f"conv-paths-{config}"] == [r.path for r in single.fast_path_report()]


def test_sharded_fast_path_with_bf16_iterations(run):
    """With bfloat16 polar iterations the fused stage 1 sends bfloat16 directions, and the
    squared norms of the unrounded directions travel beside them (a row shard's part of its
    matrix's, added by the owner; a 3-D tensor's whole matrices'), so every owner normalizes
    as one process does (an owner that took the norms of the rounded stack instead would
    move one step by about 5% of the parameters' change). The owner returns the scaled
    polar factor in bfloat16, the directions' dtype: after one step FSDP2 and DDP are one
    process's parameters within that rounding, 2^-9 of each entry's change (bound 2^-8;
    measured 1.75e-3 of the largest change), and equal each other (1e-6). Three steps of
    this small net amplify any difference (the rounding grows to 7.3e-3 here): there the
    gap stays within twice the gap between one process's bfloat16 and float32 iterations."""
    _, results = run
    case = results["fast_sharded"]
    start = {n: p.detach().clone() for n, p in Net().named_parameters()}
    for steps in (1, 3):
        fsdp, ddp = case[f"bf16-iterations-fsdp-{steps}"], case[f"bf16-iterations-ddp-{steps}"]
        one_bf16, _ = single_process_fast("fused", steps=steps, bf16_iterations=True)
        assert max_gap(fsdp, ddp) <= TOL
        assert all(p.dtype == torch.float32 for p in fsdp.values())
        if steps == 1:
            for n in start:
                change = float((one_bf16[n] - start[n]).abs().max())
                assert float((fsdp[n] - one_bf16[n]).abs().max()) <= 2**-8 * change + TOL, n
        else:
            one_fp32, _ = single_process_fast("fused", steps=steps)
            assert max_gap(fsdp, one_bf16) <= 2 * max_gap(one_fp32, one_bf16)


def test_replicated_fast_path_with_prescaled_fp16_stacks(run):
    """float16 polar iterations: where every rank holds a matrix whole (DDP), the fused stage
    1 stores it in float16 times a power of two kept per matrix, as one process does, and
    its owner takes the scaled norms and the prescale (the qkv blocks stay unfused). After
    one step DDP is one process's parameters within the float16 rounding of the update it
    sends (2^-11 of each entry's change; bound 2^-10)."""
    _, results = run
    case = results["fast_sharded"]
    # the prescaled stacks: the mid layers (3 matrices), the experts (3), inp and out (1 each)
    assert case["fp16-iterations-ddp-prescaled"] == [1, 1, 3, 3]
    one, opt = single_process_fast("fused", steps=1, fp16_iterations=True)
    assert sorted(len(p) for p in opt._fast._prescales.values()) == [1, 1, 3, 3]
    start = {n: p.detach().clone() for n, p in Net().named_parameters()}
    ddp = case["fp16-iterations-ddp"]
    for n in start:
        change = float((one[n] - start[n]).abs().max())
        assert float((ddp[n] - one[n]).abs().max()) <= 2**-10 * change + TOL, n


def test_fsdp2_fast_path_with_shared_fp16_prescales(run):
    """float16 polar iterations under FSDP2: each rank stores its rows of a matrix in float16
    times the matrix's shared power of two (its own where none is known yet, as on the first
    step; the owner brings the parts to one scale), and every rank sets the next prescale
    from the whole matrix's norm, so the ranks holding rows of a matrix agree on it, and it
    is the power of two one process keeps. After one step FSDP2 is one process's parameters
    within the float16 rounding of the update (bound 2^-10 of each entry's change, as DDP's;
    the Net's experts, a 3-D tensor whose rows are whole matrices, take bfloat16 directions
    and are left out); the ConvNet (both weights one matrix, an empty shard on 4 ranks)
    after five steps, two of them replaying the recordings (the scale arithmetic's too),
    within twice the gap between one process's float16 and float32 iterations."""
    world, results = run
    case = results["fast_sharded"]
    one, _ = single_process_fast("fused", steps=1, fp16_iterations=True)
    one_conv, _ = single_process_conv("fused", steps=1, fp16_iterations=True)
    starts = (
        ({n: p.detach().clone() for n, p in Net().named_parameters()}, one, "fsdp"),
        ({n: p.detach().clone() for n, p in ConvNet().named_parameters()}, one_conv, "conv-1"),
    )
    for start, reference, name in starts:
        got = case[f"fp16-iterations-{name}"]
        for n in (n for n in start if n != "experts"):
            change = float((reference[n] - start[n]).abs().max())
            assert float((got[n] - reference[n]).abs().max()) <= 2**-10 * change + TOL, n
    one_5, opt_5 = single_process_conv("fused", steps=5, fp16_iterations=True)
    one_fp32, _ = single_process_conv("fused", steps=5)
    assert max_gap(case["fp16-iterations-conv-5"], one_5) <= 2 * max_gap(one_fp32, one_5)
    # the prescales: one per matrix, equal on every rank holding rows of it (rank 3 of 4 has
    # no rows of the kernel), and after the last step one process's
    expected = sorted(p.tolist() for p in opt_5._fast._prescales.values())
    for steps in (1, 5):
        every = case[f"fp16-iterations-conv-prescales-{steps}"]
        held = every[: min(world, 3)]
        assert all(rank == every[0] and len(rank) == 2 for rank in held)
    assert sorted(every[0]) == expected


def test_bf16_communication_error_against_float64(run):
    """One step of exact (SVD) Muon under FSDP2 with float32 and with bfloat16 exchanges,
    against the step of one process in float64: the relative error of each matrix's update.
    float32: at most 1e-5 (float32 rounding of the parameters); bfloat16: between 1e-4 and
    1e-2 (bfloat16 keeps 8 bits: about 2^-9 relative rounding on the way there and back;
    measured 2e-3 to 3.5e-3)."""
    _, results = run
    case = results["fast_sharded"]
    net = Net().double()
    start = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = make_optimizer(net)
    x, y = batch(0)
    ((net(x.double()) - y.double()) ** 2).mean().backward()
    opt.step()
    errors = {}
    for comm in ("None", "torch.bfloat16"):
        got = case[f"comm-{comm}"]
        errors[comm] = max(
            float(((start[n] - p) - (start[n] - got[n].double())).norm() / (start[n] - p).norm())
            for n, p in ((n, p.detach()) for n, p in net.named_parameters())
            if p.ndim >= 2
        )
    assert errors["None"] <= 1e-5
    assert 1e-4 <= errors["torch.bfloat16"] <= 1e-2


def test_bf16_communication_against_float32_communication(run):
    """The fast path (float32 Polar Express) under FSDP2, one step with bfloat16 exchanges
    against the same step with float32 ones: the relative difference of each matrix's
    update, largest over the matrices, between 1e-3 and 5e-2 (measured 2.3e-2 at W = 2 and
    4). bfloat16's 8-bit mantissa rounds the direction on the way to its owner (about 2^-9
    relative); the 5-step polynomial is steep below its smallest designed singular value,
    so the rounding moves the smallest directions' outputs more than exact SVD Muon's
    (3.5e-3 above)."""
    _, results = run
    case = results["fast_sharded"]
    start = {n: p.detach() for n, p in Net().named_parameters()}
    fp32, bf16 = case["fast-comm-None"], case["fast-comm-torch.bfloat16"]
    gap = max(
        float(((start[n] - bf16[n]) - (start[n] - fp32[n])).norm() / (start[n] - fp32[n]).norm())
        for n in fp32
        if fp32[n].ndim >= 2
    )
    assert 1e-3 <= gap <= 5e-2


# ------------------------------------------------------------------------ single process


def test_distributed_muloco_needs_a_process_group_and_valid_options():
    w = torch.nn.Parameter(torch.zeros(3, 2))
    with pytest.raises(RuntimeError, match="not initialized"):
        DistributedMuLoCo([w])
    with pytest.raises(ValueError, match="sync_every=0"):
        DistributedMuLoCo([w], sync_every=0)
    with pytest.raises(ValueError, match="compression='gzip'"):
        DistributedMuLoCo([w], compression="gzip")
    with pytest.raises(ValueError, match="outer_momentum=1"):
        DistributedMuLoCo([w], outer_momentum=1)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 40), world=st.integers(1, 9))
def test_shard_rows_matches_torch_chunk(rows, world):
    chunks = [len(c) for c in torch.arange(rows).chunk(world)] if rows else []
    assert shard_rows(rows, world) == chunks + [0] * (world - len(chunks))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"block_period": 0}, ValueError, "block_period=0"),
        ({"block_period": True}, ValueError, "block_period=True"),
        ({"comm_dtype": torch.int8}, ValueError, "comm_dtype=torch.int8"),
        ({"check_replicas": 1}, TypeError, "check_replicas=1"),
        ({"share_replicated": "yes"}, TypeError, "share_replicated='yes'"),
    ],
)
def test_bad_options_raise_naming_the_option(kwargs, error, match):
    with pytest.raises(error, match=match):
        ShardedDualizer(**kwargs)


def test_configure_rejects_non_steepest_optimizers_and_sets_options():
    net = Net()
    with pytest.raises(TypeError, match="need a steepest optimizer"):
        configure(torch.optim.SGD(net.parameters(), lr=0.1))
    opt = make_optimizer(net)
    dualizer = configure(opt, block_period=4)
    assert opt.stacks.distributed is dualizer
    assert [dualizer.is_block_step(s) for s in range(1, 7)] == [0, 1, 1, 1, 0, 1]


def test_local_counter_and_step_count_round_trip():
    net = Net()
    opt = make_optimizer(net)
    for step in range(2):
        x, y = batch(step)
        ((net(x) - y) ** 2).mean().backward()
        opt.step()
        opt.zero_grad()
    assert opt.stacks.distributed is None  # no process group: local
    assert opt.stacks.orthogonalizations == 2 * MATRICES_PER_STEP
    state = opt.state_dict()
    assert state["stacks"] == {"steps": 2}
    fresh = make_optimizer(Net())
    fresh.load_state_dict(state)
    assert fresh.stacks.steps == 2


def test_a_rank_alone_exchanges_nothing_and_equals_single_process(tmp_path):
    """World size 1: the sharded fast path (FSDP2, and replicated plain tensors with float32
    and bfloat16 exchange dtypes) runs no collective (each raises in this run) and its 3
    steps equal the single process's within 1e-6; bfloat16 exchange rounds the update as
    it would travel, so it differs from float32 (by more than 1e-5), and stays close."""
    spawn(1, str(tmp_path), ("alone",))
    case = torch.load(tmp_path / "results.pt", weights_only=False)["alone"]
    for config in FAST:
        reference, _ = single_process_fast(config)
        assert max_gap(case[f"fsdp-{config}"], reference) <= TOL
        assert case[f"fsdp-paths-{config}"][1].startswith("sharded across ranks: 1 ranks")
        assert max_gap(case[f"replicated-{config}-None"], reference) <= TOL
        rounded = max_gap(case[f"replicated-{config}-torch.bfloat16"], reference)
        assert 1e-5 < rounded <= 0.05
