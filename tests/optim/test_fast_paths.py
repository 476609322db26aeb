"""The GPU fast path on CPU: the five stages recorded (cuda_graph) and compiled (compile).

Oracle: the eager optimizer on a copy of the same parameters and gradients. The recording is
replayed with ``graphs.closure_capture`` (``FastPath(capture=...)``), which re-runs the
recorded closure on the recorded tensors, so a recording that read stale gradients, stale
hyperparameters or stale state would diverge from the eager run, as a CUDA graph would.
"""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch._dynamo.utils import counters

import steepest
from steepest.optim import stages
from steepest.optim.fast import FastPath
from steepest.optim.fast.graphs import closure_capture, cuda_capture

STAND_IN = FastPath(capture=closure_capture)

SHAPES = [(8, 4), (4, 4), (8, 4), (4, 8), (2, 3, 5), (6,)]


def make_pair(recorded_kwargs=None, **kwargs):
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(*s, dtype=torch.float64)) for s in SHAPES]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    options = {"fast": STAND_IN, **(recorded_kwargs or {"cuda_graph": True})}
    recorded = steepest.Muon(ps, **kwargs, **options)
    eager = steepest.Muon(qs, **kwargs)
    return ps, qs, recorded, eager


def feed(ps, qs, *, fresh: bool, seed: int):
    """The same random gradients for both; new tensors (fresh) or written in place."""
    gen = torch.Generator().manual_seed(seed)
    for p, q in zip(ps, qs, strict=True):
        g = torch.randn(p.shape, dtype=p.dtype, generator=gen)
        if fresh or p.grad is None:
            p.grad, q.grad = g.clone(), g.clone()
        else:
            p.grad.copy_(g)
            q.grad.copy_(g)


def assert_same(ps, qs):
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, atol=0, rtol=0)


@pytest.mark.parametrize("fresh", [True, False], ids=["new-grad-tensors", "in-place-grads"])
def test_recorded_steps_equal_eager_under_a_schedule(fresh):
    ps, qs, rec, eager = make_pair(lr=0.05, weight_decay=0.1, polar_dtype=torch.float64)
    schedules = [torch.optim.lr_scheduler.StepLR(o, 1, gamma=0.8) for o in (rec, eager)]
    for t in range(7):
        feed(ps, qs, fresh=fresh, seed=t)
        rec.step()
        eager.step()
        for s in schedules:
            s.step()
        assert_same(ps, qs)
    assert [g.recordings for g in rec.graphs.values()] == [1]  # recorded once, then replayed
    assert (
        rec.stacks.orthogonalizations == eager.stacks.orthogonalizations == 7 * 6
    )  # 6 matrices per step


def test_a_changed_hyperparameter_records_again():
    ps, qs, rec, eager = make_pair(lr=0.05, polar_dtype=torch.float64)
    for t in range(8):
        if t == 5:  # a momentum schedule: baked into the recording, so it must re-record
            for o in (rec, eager):
                o.param_groups[0]["momentum"] = 0.5
        feed(ps, qs, fresh=True, seed=t)
        rec.step()
        eager.step()
        assert_same(ps, qs)
    assert rec.graphs[0].recordings == 2


def test_load_state_dict_records_again_and_resumes_exactly():
    ps, qs, rec, eager = make_pair(lr=0.05, polar_dtype=torch.float64)
    for t in range(4):
        feed(ps, qs, fresh=True, seed=t)
        rec.step()
        eager.step()
    rec.load_state_dict(copy.deepcopy(eager.state_dict()))  # new state tensors
    assert rec.graphs == {}
    for t in range(4, 9):
        feed(ps, qs, fresh=True, seed=t)
        rec.step()
        eager.step()
        assert_same(ps, qs)


def test_uncapturable_groups_and_cpu_tensors_stay_eager():
    _, _, svd, _ = make_pair(backend="svd")
    real = FastPath(capture=cuda_capture)  # the real recorder: CUDA tensors only
    ps, qs, cpu, eager = make_pair({"cuda_graph": True, "fast": real}, lr=0.05)
    for t in range(4):
        feed(ps, qs, fresh=True, seed=t)
        cpu.step()
        eager.step()
    assert_same(ps, qs)
    assert cpu.graphs == {}
    assert svd.graphs == {}
    (row, _), (svd_row, _) = cpu.fast_path_report(), svd.fast_path_report()
    assert (row.path, svd_row.path) == ("eager", "eager")
    assert "parameters on cpu" in row.reason
    assert "backend='svd'" in svd_row.reason


def test_compiled_stages_match_eager_and_do_not_recompile():
    torch._dynamo.reset()
    counters.clear()
    ps, qs, comp, eager = make_pair(
        {"compile": "eager"}, lr=0.05, weight_decay=0.1, polar_dtype=torch.float64
    )
    schedules = [torch.optim.lr_scheduler.StepLR(o, 1, gamma=0.8) for o in (comp, eager)]
    graphs = None
    for t in range(6):
        feed(ps, qs, fresh=True, seed=t)
        comp.step()
        eager.step()
        for s in schedules:
            s.step()
        if t == 1:
            graphs = counters["stats"]["unique_graphs"]
    assert graphs == 1  # stages 1-4 of the matrix group, all four stack shapes, one graph
    assert counters["stats"]["unique_graphs"] == graphs, "recompiled after warm-up"
    assert comp.stacks.orthogonalizations == eager.stacks.orthogonalizations == 6 * 6
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0)
    torch._dynamo.reset()


def test_compiled_and_recorded_together_match_eager():
    torch._dynamo.reset()
    ps, qs, fast, eager = make_pair(
        {"compile": "eager", "cuda_graph": True}, lr=0.05, polar_dtype=torch.float64
    )
    for t in range(6):
        feed(ps, qs, fresh=True, seed=t)
        fast.step()
        eager.step()
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0)
    assert fast.graphs[0].recordings == 1
    assert fast.stacks.orthogonalizations == eager.stacks.orthogonalizations
    torch._dynamo.reset()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"compile": 3}, "compile=3"),
        ({"compile": ""}, "compile=''"),
        ({"cuda_graph": 1}, "cuda_graph=1"),
        ({"fast": {"streams": 2}}, "fast=.*FastPath"),
    ],
)
def test_bad_fast_path_options_raise(kwargs, match):
    p = torch.nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match=match):
        steepest.Muon([p], **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"streams": -1}, "streams=-1; need an int >= 0"),
        ({"streams": True}, "streams=True"),
        ({"recompile_limit": 0}, "recompile_limit=0; need an int >= 1"),
        ({"fused_momentum": 1}, "fused_momentum=1; need True or False"),
        ({"prescaled_stacks": "yes"}, "prescaled_stacks='yes'"),
        ({"device_check": None}, "device_check=None"),
        ({"kernels": "triton"}, r"kernels='triton' is unknown; use one of \['auto', 'torch'\]"),
        ({"capture": 3}, "capture=3"),
    ],
)
def test_fast_path_options_are_validated(kwargs, match):
    with pytest.raises(ValueError, match="FastPath: " + match):
        FastPath(**kwargs)


def test_two_optimizers_in_one_process_take_their_own_options(monkeypatch):
    """One optimizer with the fused stage 1 and the device-side check, one without, stepped
    alternately in one process: each follows its own options (the fused stage ran only for
    the first; only the first reads the verdict on the device) and both equal eager."""
    torch._dynamo.reset()
    calls = []
    real = stages.fused_stages_1_to_4
    monkeypatch.setattr(stages, "fused_stages_1_to_4", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    shapes = SHAPES[:4]
    ps = [torch.nn.Parameter(torch.randn(*s, dtype=torch.float64)) for s in shapes]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    rs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    kwargs = {"lr": 0.05, "polar_dtype": torch.float64, "compile": "eager"}
    fused = steepest.Muon(ps, **kwargs)
    plain = steepest.Muon(qs, fast=FastPath(fused_momentum=False, device_check=False), **kwargs)
    eager = steepest.Muon(rs, lr=0.05, polar_dtype=torch.float64)
    assert [r.device_check for r in fused.fast_path_report()] == [True]
    assert [r.device_check for r in plain.fast_path_report()] == [False]
    for t in range(4):
        gen = torch.Generator().manual_seed(t)
        for p, q, r in zip(ps, qs, rs, strict=True):
            r.grad = torch.randn(p.shape, dtype=p.dtype, generator=gen)
            p.grad, q.grad = r.grad.clone(), r.grad.clone()
        fused.step()
        count = len(calls)
        plain.step()
        assert len(calls) == count, "the second optimizer took the first one's fused stage"
        eager.step()
    assert len(calls) == 4  # every step of the first optimizer (its buffers exist from the start)
    for p, q, r in zip(ps, qs, rs, strict=True):
        torch.testing.assert_close(p, r, atol=1e-12, rtol=0)
        torch.testing.assert_close(q, r, atol=1e-12, rtol=0)
    torch._dynamo.reset()


def test_nonfinite_ignore_skips_the_check_like_torch(monkeypatch):
    p = torch.nn.Parameter(torch.ones(4, 4))
    opt = steepest.Muon([p], nonfinite="ignore")

    def no_check(*args, **kwargs):
        raise AssertionError("nonfinite='ignore' must not check (a host sync on a GPU)")

    monkeypatch.setattr(opt, "_gradients_finite", no_check)
    p.grad = torch.full((4, 4), float("nan"))
    opt.step()  # no error: as torch.optim, the NaN reaches the weights
    assert torch.isnan(p).all()
    assert opt.skipped_steps == 0


@pytest.mark.parametrize("cautious", [False, True])
def test_compiled_five_stages_follow_live_lr_and_weight_decay(cautious):
    """Stage 5 is inside the compiled graph and the recording: lr and weight decay changed by
    hand (including from 0) must reach the weights without recompiling or re-recording."""
    torch._dynamo.reset()
    counters.clear()
    ps, qs, fast, eager = make_pair(
        {"compile": "eager", "cuda_graph": True},
        lr=0.05,
        cautious_weight_decay=cautious,
        polar_dtype=torch.float64,
    )
    graphs = None
    for t in range(8):
        for o in (fast, eager):
            o.param_groups[0]["lr"] = 0.05 * 0.7**t
            o.param_groups[0]["weight_decay"] = 0.0 if t < 3 else 0.2 * t
        feed(ps, qs, fresh=True, seed=t)
        fast.step()
        eager.step()
        for p, q in zip(ps, qs, strict=True):
            torch.testing.assert_close(p, q, atol=1e-12, rtol=0)
        if t == 1:
            graphs = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == graphs, "recompiled after warm-up"
    assert fast.graphs[0].recordings == 1
    torch._dynamo.reset()


def _state_copy(opt):
    return {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}


def _assert_state_equal(opt, saved):
    for p, s in opt.state.items():
        assert s.keys() == saved[id(p)].keys()
        for k, v in s.items():
            assert torch.equal(v, saved[id(p)][k]), (tuple(p.shape), k)


@pytest.mark.parametrize("bad_index", [0, 3, 5], ids=["muon-first", "muon-last", "adamw-vector"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("nonfinite", ["raise", "skip"])
@pytest.mark.parametrize("momentum", [0.95, 0.0])
def test_device_side_check_makes_a_nonfinite_step_an_exact_no_op(
    bad_index, value, nonfinite, momentum
):
    """The compiled Muon step takes the finiteness verdict on the device (no wait before it is
    queued): a poisoned gradient, in a masked matrix group or in the AdamW group that runs after
    the verdict, must leave every weight and state tensor bit-identical, raise naming the
    parameter or count the skip, and not count the step; the clean steps after it must equal
    an eager optimizer's that never saw the poisoned step."""
    torch._dynamo.reset()
    ps, qs, fast, eager = make_pair(
        {"compile": "eager", "cuda_graph": True},
        lr=0.05,
        weight_decay=0.1,
        momentum=momentum,
        nonfinite=nonfinite,
        polar_dtype=torch.float64,
    )
    for t in range(3):  # warm-up, recording, one replay
        feed(ps, qs, fresh=True, seed=t)
        fast.step()
        eager.step()
    checks = [r.device_check for r in fast.fast_path_report()]
    assert checks == [True, False], "the device-side path must be taken"
    weights = [p.detach().clone() for p in ps]
    saved = _state_copy(fast)
    steps, orthogonalizations = fast.stacks.steps, fast.stacks.orthogonalizations
    feed(ps, qs, fresh=True, seed=10)
    ps[bad_index].grad[(0,) * ps[bad_index].ndim] = value
    if nonfinite == "raise":
        where = next(
            f"param_groups[{g}]['params'][{i}] (shape {tuple(ps[bad_index].shape)})"
            for g, group in enumerate(fast.param_groups)
            for i, q in enumerate(group["params"])
            if q is ps[bad_index]
        )
        with pytest.raises(FloatingPointError, match=re.escape(where) + ".*nothing was updated"):
            fast.step()
        assert fast.skipped_steps == 0
    else:
        fast.step()
        assert fast.skipped_steps == 1
    assert all(torch.equal(p, w) for p, w in zip(ps, weights, strict=True))
    _assert_state_equal(fast, saved)
    assert (fast.stacks.steps, fast.stacks.orthogonalizations) == (steps, orthogonalizations)
    for t in range(4, 7):  # the eager optimizer never saw the poisoned step
        feed(ps, qs, fresh=True, seed=t)
        fast.step()
        eager.step()
        for p, q in zip(ps, qs, strict=True):
            torch.testing.assert_close(p, q, atol=1e-12, rtol=0)
    assert fast.graphs[0].recordings == 1
    torch._dynamo.reset()


def test_device_side_check_only_where_the_no_op_is_exact():
    """NorMuon (a second moment in stage 4), 8-bit momentum, nonfinite="ignore" and the eager
    path keep the host-side check (or none)."""
    p = torch.nn.Parameter(torch.randn(4, 6))
    p.grad = torch.randn_like(p)
    cases = [
        (steepest.Muon([p], compile="eager"), True),
        (steepest.Muon([p], compile="eager", nonfinite="ignore"), False),
        (steepest.Muon([p], compile="eager", fast=FastPath(device_check=False)), False),
        (steepest.Muon([p]), False),
        (steepest.Muon([p], compile="eager", momentum_8bit=True), False),
        (steepest.optimizer("normuon", [p], compile="eager"), False),
        (steepest.optimizer("polargrad", [p], compile="eager"), True),
    ]
    for opt, on_device in cases:
        assert [r.device_check for r in opt.fast_path_report()] == [on_device], opt


@pytest.mark.cuda
@pytest.mark.parametrize("nonfinite", ["raise", "skip"])
def test_device_side_check_on_a_recorded_cuda_step(nonfinite):
    """The real fast path: inductor, a CUDA-graph recording, the verdict copied to pinned host
    memory behind an event. A poisoned step changes nothing; clean steps match eager steps."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    shapes = [(64, 32), (32, 32), (64, 32), (48,)]
    ps = [torch.nn.Parameter(torch.randn(*s, device="cuda")) for s in shapes]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    kwargs = {"lr": 0.05, "weight_decay": 0.1, "nonfinite": nonfinite, "polar_dtype": torch.float32}
    fast = steepest.Muon(ps, compile=True, cuda_graph=True, **kwargs)
    eager = steepest.Muon(qs, **kwargs)

    def feed_cuda(seed):
        gen = torch.Generator(device="cuda").manual_seed(seed)
        for p, q in zip(ps, qs, strict=True):
            p.grad = torch.randn(p.shape, device="cuda", generator=gen)
            q.grad = p.grad.clone()

    for t in range(4):
        feed_cuda(t)
        fast.step()
        eager.step()
    assert [r.device_check for r in fast.fast_path_report()] == [True, False]
    weights = [p.detach().clone() for p in ps]
    saved = _state_copy(fast)
    feed_cuda(10)
    ps[1].grad[3, 4] = float("nan")
    if nonfinite == "raise":
        with pytest.raises(FloatingPointError, match=r"\(shape \(32, 32\)\).*nothing was updated"):
            fast.step()
    else:
        fast.step()
        assert fast.skipped_steps == 1
    assert all(torch.equal(p, w) for p, w in zip(ps, weights, strict=True))
    _assert_state_equal(fast, saved)
    for t in range(5, 8):
        feed_cuda(t)
        fast.step()
        eager.step()
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, atol=2e-5, rtol=1e-4)
    assert fast.graphs[0].recordings == 1
    torch._dynamo.reset()


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("finite", [None, True, False])
def test_fused_stage_1_equals_accumulate_then_dualize(monkeypatch, nesterov, finite):
    """run_stages' fused branch (momentum_stack per same-shape stack, msign with the known
    norms) against the unfused stages on a copy: equal in float64, also the masked no-op."""
    from steepest.optim.fast.fused_momentum import momentum_stack

    calls = []

    def spy(grads, *args, **kwargs):
        calls.append(tuple(grads[0].shape))
        return momentum_stack(grads, *args, **kwargs)

    monkeypatch.setattr(stages, "momentum_stack", spy)
    results = []
    for fused in (True, False):
        torch.manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(*s, dtype=torch.float64)) for s in SHAPES[:5]]
        opt = steepest.Muon(ps, nesterov=nesterov, polar_dtype=torch.float64, weight_decay=0.1)
        group = opt.param_groups[0]
        algorithm = steepest.optim.ALGORITHMS["muon"]
        states = [opt.state[p] for p in ps]
        lr, wd = torch.tensor(0.05, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64)
        flag = None if finite is None else torch.tensor(finite)
        for t in range(3):
            gen = torch.Generator().manual_seed(t)
            grads = [torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in ps]
            with torch.no_grad():
                stages.run_stages(algorithm, ps, grads, states, group, lr, wd, flag, fused)
        results.append(([p.detach().clone() for p in ps], [s["momentum_buffer"] for s in states]))
    assert sorted(set(calls)) == [(2, 3, 5), (4, 4), (4, 8), (8, 4)]  # fused run only
    assert len(calls) == 3 * 4
    (p_fused, m_fused), (p_plain, m_plain) = results
    for a, b in zip(p_fused + m_fused, p_plain + m_plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    if finite is False:
        torch.manual_seed(0)
        for p, s in zip(p_fused, SHAPES[:5], strict=True):
            assert torch.equal(p, torch.randn(*s, dtype=torch.float64))  # untouched


@pytest.mark.parametrize("form", ["gram", "direct"])
def test_float16_iterations_take_a_prescaled_float16_stack(monkeypatch, form):
    """With a float16 iteration, the fused stage 1 of Muon stores float16 directions times
    the stack's power-of-two prescale (kept across steps by the caller): the parameters
    follow the unfused step (float32 directions, msign's scaled float16 copy) to float16
    rounding, and every prescale is a power of two with norm * prescale in [1/2, 1).
    PolarGrad, whose dualizer is not scale invariant, keeps bfloat16 directions."""
    from steepest.optim.fast.fused_momentum import momentum_stack

    seen = []

    def spy(grads, *args, **kwargs):
        seen.append((args[3], kwargs.get("prescale") is not None))
        return momentum_stack(grads, *args, **kwargs)

    monkeypatch.setattr(stages, "momentum_stack", spy)
    shapes = [(24, 8), (24, 8), (8, 40), (3, 8, 16)]
    results = []
    for name in ("muon", "muon", "polargrad"):
        fused = len(results) != 1
        torch.manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(*s)) for s in shapes]
        opt = steepest.Muon(ps, polar_dtype=torch.float16, polar_form=form, lr=0.05)
        group = opt.param_groups[0]
        group["algorithm"] = name
        algorithm = steepest.optim.ALGORITHMS[name]
        states = [opt.state[p] for p in ps]
        for st, p in zip(states, ps, strict=True):
            st.setdefault("momentum_buffer", torch.zeros_like(p))
        pieces = stages.same_shape(list(ps))
        prescales = [torch.zeros(len(k) * (3 if len(shapes[k[0]]) == 3 else 1)) for k in pieces]
        lr, wd = torch.tensor(0.05), torch.tensor(0.0)
        for t in range(4):
            gen = torch.Generator().manual_seed(t)
            grads = [torch.randn(p.shape, generator=gen) * 10.0**t for p in ps]
            with torch.no_grad():
                stages.run_stages(
                    algorithm, ps, grads, states, group, lr, wd, None, fused, prescales
                )
        results.append([p.detach().clone() for p in ps])
        if name == "muon" and fused:
            assert seen and all(d == torch.float16 and pre for d, pre in seen)
            for piece, pre in zip(pieces, prescales, strict=True):
                exponents = torch.log2(pre)
                assert torch.equal(exponents, exponents.round())
                # the last step's directions (Nesterov, momentum 0.95), one norm per matrix
                D = torch.cat(
                    [
                        torch.lerp(grads[i], states[i]["momentum_buffer"], 0.95).reshape(
                            -1, *shapes[i][-2:]
                        )
                        for i in piece
                    ]
                )
                ratio = torch.linalg.matrix_norm(D.double()) * pre.double()
                assert ((ratio >= 0.5) & (ratio < 1.0)).all(), ratio
        if name == "polargrad":
            assert all(d == torch.bfloat16 and not pre for d, pre in seen)
        seen.clear()
    fused, plain, _ = results
    for a, b in zip(fused, plain, strict=True):
        assert ((a - b).norm() / b.norm()).item() < 2e-3


def test_momentum_raised_from_zero_creates_its_buffers_then_fuses(monkeypatch):
    """A group built with momentum 0 has no buffers; once a schedule raises the momentum the
    first step creates them (unfused) and later steps fuse, matching the eager optimizer."""
    ps = [torch.nn.Parameter(torch.randn(4, 6, dtype=torch.float64)) for _ in range(2)]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    fast = steepest.Muon(ps, momentum=0.0, polar_dtype=torch.float64, compile="eager")
    eager = steepest.Muon(qs, momentum=0.0, polar_dtype=torch.float64)
    fused = []
    real = stages.fused_stages_1_to_4
    monkeypatch.setattr(stages, "fused_stages_1_to_4", lambda *a: fused.append(1) or real(*a))
    torch._dynamo.reset()
    for t in range(4):
        if t == 1:
            for o in (fast, eager):
                o.param_groups[0]["momentum"] = 0.9
        feed(ps, qs, fresh=True, seed=t)
        fast.step()
        eager.step()
    assert fused, "the fused stage 1 never ran"
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0)
    torch._dynamo.reset()


@pytest.mark.cuda
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_stack_streams_on_cuda_give_the_one_stream_result(monkeypatch, cuda_graph):
    """Same-shape stacks on side streams (FastPath.streams) run the same kernels as on one
    stream: weights and momenta are bit-identical over steps with fresh gradient tensors and a
    learning-rate change, recorded or not, and the side streams were used."""
    shapes = [(256, 96), (96, 96), (256, 96), (96, 256), (64,)]  # three matrix stacks, a vector
    ends = {}
    for count in (0, 4):
        torch._dynamo.reset()
        torch.manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(*s, device="cuda")) for s in shapes]
        opt = steepest.Muon(
            ps, lr=0.02, weight_decay=0.1, compile=True, cuda_graph=cuda_graph,
            fast=FastPath(streams=count),
        )  # fmt: skip
        gen = torch.Generator(device="cuda").manual_seed(1)
        for t in range(7):
            for p in ps:
                p.grad = torch.randn(p.shape, device="cuda", generator=gen)
            if t == 5:
                opt.param_groups[0]["lr"] = 0.01
            opt.step()
        torch.cuda.synchronize()
        assert bool(opt._fast._streams) == (count > 1)
        momenta = [opt.state[p]["momentum_buffer"] for p in ps[:4]]
        ends[count] = [t.detach().clone() for t in ps + momenta]
    assert ends[4][0].abs().sum() > 0
    for a, b in zip(ends[0], ends[4], strict=True):
        assert torch.equal(a, b)
    torch._dynamo.reset()


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["muon", "polargrad"])
def test_fused_stage_1_on_cuda_matches_the_unfused_step(monkeypatch, name):
    """On CUDA the fused stage 1 stacks the direction in bfloat16 (Triton momentum kernel,
    msign on the known norms; for PolarGrad also <D, msign D> from the stack): one compiled
    step's update is within 3% of the unfused compiled step's (float32 directions; the
    rounded direction moved Muon's and PolarGrad's updates alike by 1.4% on an H100, the
    polynomials amplifying it along small singular values), and PolarGrad's update is
    ||D||_* times a polar factor (SVD oracle)."""
    shapes = [(768, 256), (256, 256), (256, 768)] * 2
    deltas = {}
    for fused in (True, False):
        torch._dynamo.reset()
        torch.manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(*s, device="cuda")) for s in shapes]
        options = FastPath(fused_momentum=fused)
        opt = steepest.optimizer(name, ps, lr=1.0, momentum=0.9, compile=True, fast=options)
        gen = torch.Generator(device="cuda").manual_seed(1)
        for _ in range(3):  # the first step makes the buffers (unfused); then fused
            for p in ps:
                p.grad = torch.randn(p.shape, device="cuda", generator=gen)
            before = [p.detach().clone() for p in ps]
            opt.step()
        directions = [opt.state[p]["momentum_buffer"].double() for p in ps]
        deltas[fused] = [(b - p.detach()).double() for b, p in zip(before, ps, strict=True)]
    for a, b, D in zip(deltas[True], deltas[False], directions, strict=True):
        assert (a - b).norm() / b.norm() < 3e-2
        if name == "polargrad":  # the update's nuclear norm is ||D||_* up to the polar error
            s_update = torch.linalg.svdvals(a)
            ratio = s_update.sum() / (torch.linalg.svdvals(D).sum() * min(D.shape))
            assert 0.85 < ratio < 1.13
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ["muon", "polargrad"])
def test_compiled_step_of_every_maskable_member_equals_eager(monkeypatch, name):
    """The compiled step (fused stage 1 where the algorithm takes known norms) computes each
    algorithm's own update: PolarGrad keeps its nuclear-norm factor (oracle: the eager step,
    float64), and both members take the fused stage 1 from the second step on."""
    torch._dynamo.reset()
    fused = []
    real = stages.fused_stages_1_to_4
    monkeypatch.setattr(stages, "fused_stages_1_to_4", lambda *a: fused.append(1) or real(*a))
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(*s, dtype=torch.float64)) for s in SHAPES[:4]]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    kwargs = {"lr": 0.01, "momentum": 0.9, "polar_dtype": torch.float64}
    fast = steepest.optimizer(name, ps, compile="eager", **kwargs)
    eager = steepest.optimizer(name, qs, **kwargs)
    for t in range(3):
        feed(ps, qs, fresh=True, seed=t)
        fast.step()
        eager.step()
    assert fused, f"the fused stage 1 never ran for {name}"
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0)
    torch._dynamo.reset()


def test_polar_kernel_is_a_group_key_that_reaches_msign(monkeypatch):
    """Each group names msign's kernel (polar_kernel): checked at construction, passed per
    call, so two groups of one optimizer can differ; the torch choice gives the default's
    result on CPU (where "auto" resolves to torch)."""
    import steepest.optim.polar_step as polar_step

    with pytest.raises(ValueError, match=r"polar_kernel='cublas' is unknown; use one of"):
        steepest.Muon([torch.nn.Parameter(torch.randn(4, 4))], polar_kernel="cublas")
    seen = []
    real = polar_step.msign_normed

    def spy(X, frobenius, **kwargs):
        seen.append(kwargs["kernel"])
        return real(X, frobenius, **kwargs)

    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(6, 4)), torch.nn.Parameter(torch.randn(6, 4))
    groups = [
        {"params": [a], "algorithm": "muon", "polar_kernel": "torch"},
        {"params": [b], "algorithm": "muon"},
    ]
    opt = steepest.Muon(groups)
    monkeypatch.setattr(polar_step, "msign_normed", spy)
    before = [a.detach().clone(), b.detach().clone()]
    a.grad = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    b.grad = a.grad.clone()
    opt.step()
    assert seen == ["torch", "auto"]
    step_a, step_b = before[0] - a.detach(), before[1] - b.detach()
    assert step_a.abs().sum() > 0
    torch.testing.assert_close(step_a, step_b, atol=1e-6, rtol=0)  # up to p - lr u rounding


def test_a_group_added_later_is_compiled_and_recorded_and_matches_eager():
    """add_param_group after the first recordings: the new group (new shapes: a recompile)
    gets its own recording, the old one keeps its own, and both follow the eager twin."""
    torch._dynamo.reset()
    ps, qs, fast, eager = make_pair(
        {"compile": "eager", "cuda_graph": True}, lr=0.05, polar_dtype=torch.float64
    )
    extra = [torch.nn.Parameter(torch.randn(5, 7, dtype=torch.float64)) for _ in range(2)]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in extra]
    for t in range(8):
        if t == 3:
            fast.add_param_group({"params": extra, "algorithm": "muon", "lr": 0.03})
            eager.add_param_group({"params": twins, "algorithm": "muon", "lr": 0.03})
            ps, qs = ps + extra, qs + twins
        feed(ps, qs, fresh=True, seed=t)
        fast.step()
        eager.step()
        for p, q in zip(ps, qs, strict=True):
            torch.testing.assert_close(p, q, atol=1e-12, rtol=0)
    assert {i: g.recordings for i, g in fast.graphs.items()} == {0: 1, 2: 1}
    paths = [r.path for r in fast.fast_path_report()]
    assert paths == ["compiled+recorded", "eager", "compiled+recorded"]  # AdamW: its own step
    torch._dynamo.reset()


@pytest.mark.cuda
def test_the_default_optimizer_on_cuda_takes_the_fast_path_and_says_so():
    """steepest.Muon(params) on CUDA compiles and records its matrix group (the report says
    so, one FastPathNotice at the first step, none later), matches the eager optimizer, and
    compile=False, cuda_graph=False turns it off without a notice."""
    import warnings

    torch._dynamo.reset()
    torch.manual_seed(0)
    shapes = [(96, 64), (64, 64), (96, 64), (32,)]
    ps = [torch.nn.Parameter(torch.randn(*s, device="cuda")) for s in shapes]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    kwargs = {"lr": 0.02, "polar_dtype": torch.float32}
    fast = steepest.Muon(ps, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eager = steepest.Muon(qs, compile=False, cuda_graph=False, **kwargs)
        for t in range(6):
            gen = torch.Generator(device="cuda").manual_seed(t)
            for p, q in zip(ps, qs, strict=True):
                p.grad = torch.randn(p.shape, device="cuda", generator=gen)
                q.grad = p.grad.clone()
            fast.step()
            eager.step()
    notices = [w for w in caught if issubclass(w.category, steepest.optim.FastPathNotice)]
    assert len(notices) == 1 and "compile=False, cuda_graph=False" in str(notices[0].message)
    report = fast.fast_path_report()
    assert [(r.path, r.device_check) for r in report] == [
        ("compiled+recorded", True),
        ("eager", False),
    ]
    assert [r.path for r in eager.fast_path_report()] == ["eager", "eager"]
    assert fast.graphs[0].recordings == 1
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, atol=2e-5, rtol=1e-4)
    torch._dynamo.reset()


def test_a_step_inside_the_callers_torch_compile_runs_the_stages_eagerly():
    """Under an outer torch.compile of the training step the optimizer neither compiles nor
    records on its own (the caller's graph holds the stages), even when asked to record, and
    the result equals the eager step."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(6, 4, dtype=torch.float64)) for _ in range(2)]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    kwargs = {"lr": 0.05, "polar_dtype": torch.float64}
    inner = steepest.Muon(ps, cuda_graph=True, fast=STAND_IN, **kwargs)
    eager = steepest.Muon(qs, **kwargs)
    step = torch.compile(inner.step, backend="eager")
    for t in range(3):
        feed(ps, qs, fresh=True, seed=t)
        step()
        eager.step()
    assert inner.graphs == {}
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0)
    torch._dynamo.reset()


def test_a_replay_copies_only_the_inputs_at_another_place(monkeypatch):
    """GroupGraph.run after recording: an input at its recorded place is read there (not
    copied onto itself: for a kept stack that would be a pass over it), one at another place
    is copied into the recorded tensor; the replay sees the new values."""
    from types import SimpleNamespace

    from steepest.optim.fast.graphs import GroupGraph

    kept, fresh = torch.zeros(3), torch.zeros(2)
    graph = GroupGraph(closure_capture, warmup=0)
    counters_ = SimpleNamespace(orthogonalizations=0, block_orthogonalizations=0)

    def stages(xs):
        return torch.cat(xs).sum()

    assert float(graph.run(stages, [], [kept, fresh], [], {}, counters_)) == 0  # records
    copies = []
    original = torch._foreach_copy_
    monkeypatch.setattr(
        torch, "_foreach_copy_", lambda dst, src: (copies.append(len(dst)), original(dst, src))
    )
    kept.fill_(1.0)  # in place: read where recorded
    assert float(graph.run(stages, [], [kept, torch.full((2,), 5.0)], [], {}, counters_)) == 13
    assert copies == [1] and torch.equal(fresh, torch.full((2,), 5.0))
    assert float(graph.run(stages, [], [kept, fresh], [], {}, counters_)) == 13
    assert copies == [1]
