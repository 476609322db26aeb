"""momentum_stack (stage 1 of the fused step in one pass) against float64 arithmetic: the torch
path on CPU, the Triton kernel in Triton's interpreter (tests/conftest.py), the CUDA kernel on
a GPU."""

import os

import pytest
import torch

from steepest.optim.fused_momentum import momentum_stack
from steepest.polar.kernels import triton_available

INTERPRETED = triton_available() and os.environ.get("TRITON_INTERPRET") == "1"
needs_interpreter = pytest.mark.skipif(
    not INTERPRETED, reason="needs triton and TRITON_INTERPRET=1 (tests/conftest.py, no GPU)"
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def reference(grads, buffers, beta, nesterov, finite=True):
    """Momentum, direction and norms in float64."""
    ms, ds = [], []
    for g, m in zip(grads, buffers, strict=True):
        g, m = g.double(), m.double()
        g = g if finite else m
        m = beta * m + (1 - beta) * g
        ms.append(m)
        ds.append((1 - beta) * g + beta * m if nesterov else m)
    D = torch.stack(ds)
    return ms, D, D.flatten(1).norm(dim=1)


def assert_near(x, ref, tol=1e-6):
    """max |x - ref| <= tol * max |ref| (float32 rounding of a difference near cancellation)."""
    error = (x.double() - ref).abs().max() / ref.abs().max()
    assert error <= tol, error


def inputs(k, shape, seed=0, device="cpu", scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    grads = [(torch.randn(*shape, generator=gen) * scale).to(device) for _ in range(k)]
    buffers = [(torch.randn(*shape, generator=gen) * scale).to(device) for _ in range(k)]
    return grads, buffers


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("scale", [1e-30, 1.0, 1e30])
def test_torch_path_matches_float64(nesterov, scale):
    grads, buffers = inputs(3, (5, 7), scale=scale)
    ms, D, norms = reference(grads, buffers, 0.9, nesterov)
    stack, got = momentum_stack(grads, buffers, 0.9, nesterov, torch.float32, kernel="torch")
    for m, want in zip(buffers, ms, strict=True):
        assert_near(m, want)
    assert_near(stack, D)
    assert got.dtype == torch.float64 and torch.isfinite(got).all()
    torch.testing.assert_close(got, norms, rtol=1e-6, atol=0)


def test_a_false_finite_flag_leaves_the_buffers_and_gives_m():
    grads, buffers = inputs(2, (4, 6))
    grads[0][0, 0] = float("nan")
    before = [m.clone() for m in buffers]
    stack, norms = momentum_stack(
        grads, buffers, 0.95, True, torch.float32, torch.tensor(False), kernel="torch"
    )
    for m, b in zip(buffers, before, strict=True):
        assert torch.equal(m, b)
    torch.testing.assert_close(stack, torch.stack(before))
    torch.testing.assert_close(norms, torch.stack(before).flatten(1).norm(dim=1).double())


def test_errors_name_the_problem():
    grads, buffers = inputs(2, (4, 6))
    with pytest.raises(ValueError, match="kernel='nope' is unknown"):
        momentum_stack(grads, buffers, 0.9, True, torch.float32, kernel="nope")
    with pytest.raises(ValueError, match="2 gradients and 1 buffers"):
        momentum_stack(grads, buffers[:1], 0.9, True, torch.float32)
    with pytest.raises(ValueError, match="one shape with ndim >= 2"):
        momentum_stack([grads[0], grads[1].T.contiguous()], buffers, 0.9, True, torch.float32)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="kernel='triton' cannot run"):
            momentum_stack(grads, buffers, 0.9, True, torch.float32, kernel="triton")


@needs_interpreter
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("finite", [None, True, False])
@pytest.mark.parametrize("numel", [4096, 5000, 300])
def test_interpreted_kernel_matches_float64(nesterov, finite, numel):
    """The kernel itself (masks past the end, partial sums per block, the finite flag)."""
    from steepest.optim._momentum_triton import BLOCK, momentum_direction_triton

    (g,), (m,) = inputs(1, (numel,), seed=numel)
    ms, D, norms = reference([g], [m], 0.8, nesterov, finite is not False)
    blocks = -(-numel // BLOCK)
    out = torch.full((numel + 3,), 7.0, dtype=torch.float16)  # written from offset 3
    partials = torch.full((blocks + 2,), 7.0, dtype=torch.float64)  # from offset 2
    flag = None if finite is None else torch.tensor(finite)
    big_g, big_m = torch.cat([torch.ones(5), g]), torch.cat([torch.ones(5), m])  # read from 5
    momentum_direction_triton(big_g, big_m, out, partials, 0.8, nesterov, flag, numel, 5, 3, 2)
    m = big_m[5:]
    assert torch.equal(big_m[:5], torch.ones(5))  # nothing before the offsets touched
    assert torch.equal(out[:3], torch.full((3,), 7.0, dtype=torch.float16))
    assert torch.equal(partials[:2], torch.full((2,), 7.0, dtype=torch.float64))
    out, partials = out[3:], partials[2:]
    assert_near(m, ms[0])
    assert_near(out, D[0], tol=1e-3)  # float16 output
    torch.testing.assert_close(partials.sum().sqrt(), norms[0], rtol=1e-6, atol=0)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_cuda_kernel_matches_the_torch_path(dtype):
    grads, buffers = inputs(3, (300, 1111), device="cuda")
    twins = [m.clone() for m in buffers]
    stack, norms = momentum_stack(grads, buffers, 0.95, True, dtype, kernel="triton")
    want, want_norms = momentum_stack(grads, twins, 0.95, True, dtype, kernel="torch")
    for m, twin in zip(buffers, twins, strict=True):
        torch.testing.assert_close(m, twin, rtol=1e-6, atol=1e-7)
    tol = 1e-2 if dtype != torch.float32 else 1e-6
    assert ((stack.double() - want.double()).abs().max() / want.double().abs().max()) <= tol
    torch.testing.assert_close(norms, want_norms, rtol=1e-6, atol=0)


@needs_cuda
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("finite", [None, True, False])
def test_cuda_one_launch_kernel_matches_float64(nesterov, finite):
    """The whole stack in one launch through pointer tables: tensors of two matrices each,
    matrices of a size that is no multiple of the block, the finite flag; mixed dtypes fall
    back to one launch per matrix and agree too."""
    from steepest.optim import fused_momentum

    grads, buffers = inputs(3, (2, 300, 1111), seed=5, device="cuda")
    ms, D, _ = reference(grads, buffers, 0.9, nesterov, finite is not False)
    want = D.reshape(6, 300, 1111)
    flag = None if finite is None else torch.tensor(finite, device="cuda")
    fused_momentum._TABLES.clear()
    stack, norms = momentum_stack(
        grads, buffers, 0.9, nesterov, torch.float32, flag, matrix=(300, 1111), kernel="triton"
    )
    assert len(fused_momentum._TABLES.recent) == 1, "the one-launch path did not run"
    for m, ref in zip(buffers, ms, strict=True):
        assert_near(m, ref)
    assert_near(stack, want)
    torch.testing.assert_close(norms, want.flatten(1).norm(dim=1), rtol=1e-6, atol=0)

    grads, buffers = inputs(2, (300, 1111), seed=6, device="cuda")
    grads[1] = grads[1].to(torch.bfloat16)
    ms, D, norms_want = reference(grads, buffers, 0.9, nesterov, finite is not False)
    fused_momentum._TABLES.clear()
    stack, norms = momentum_stack(
        grads, buffers, 0.9, nesterov, torch.float32, flag, kernel="triton"
    )
    assert not fused_momentum._TABLES.recent, "mixed dtypes take one launch per matrix"
    assert_near(stack, D)
    torch.testing.assert_close(norms, norms_want, rtol=1e-6, atol=0)


@needs_cuda
def test_a_recording_keeps_its_pointer_tables_when_the_cache_evicts_them(monkeypatch):
    """A CUDA graph replays the one-launch kernel on the tables it recorded: evicting them from
    the cache (one entry kept here) and filling freed memory must not change its result."""
    from steepest.optim import fused_momentum
    from steepest.optim.device_tables import DeviceTables

    monkeypatch.setattr(fused_momentum, "_TABLES", DeviceTables(kept=1))
    grads, buffers = inputs(2, (300, 1111), seed=7, device="cuda")
    momentum_stack(grads, buffers, 0.9, True, torch.float32, kernel="triton")  # builds the table
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        stack, _ = momentum_stack(grads, buffers, 0.9, True, torch.float32, kernel="triton")
    assert len(fused_momentum._TABLES.recorded) == 1
    other = inputs(2, (300, 1111), seed=8, device="cuda")
    momentum_stack(*other, 0.9, True, torch.float32, kernel="triton")  # evicts the first table
    assert len(fused_momentum._TABLES.recent) == 1
    torch.cuda.empty_cache()
    junk = [torch.zeros(64, dtype=torch.int64, device="cuda") for _ in range(1000)]
    ms, D, _ = reference(grads, buffers, 0.9, True)
    graph.replay()
    torch.cuda.synchronize()
    del junk
    for m, ref in zip(buffers, ms, strict=True):
        assert_near(m, ref)
    assert_near(stack, D)


@pytest.mark.parametrize(("shape", "matrix"), [((2, 3, 5), (3, 5)), ((4, 2, 3, 3), (4, 18))])
def test_tensors_of_several_matrices_give_one_norm_per_matrix(shape, matrix):
    grads, buffers = inputs(2, shape, seed=3)
    ms, D, _ = reference(grads, buffers, 0.9, True)
    stack, norms = momentum_stack(grads, buffers, 0.9, True, torch.float64, matrix=matrix)
    want = D.reshape(-1, *matrix)
    assert stack.shape == want.shape
    assert_near(stack, want)
    torch.testing.assert_close(norms, want.flatten(1).norm(dim=1), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="does not divide"):
        momentum_stack(grads, buffers, 0.9, True, torch.float64, matrix=(7, 1))


@needs_interpreter
@pytest.mark.parametrize("compiled", [False, True])
def test_interpreted_op_matches_float64_also_compiled(compiled):
    """The custom op that wraps the kernel launches (what torch.compile sees on CUDA), run
    eagerly and under torch.compile(fullgraph=True): its fake and real outputs agree in
    shape, and the buffers are updated in place."""
    import steepest.optim.fused_momentum  # noqa: F401  (registers the op)

    grads, buffers = inputs(2, (2, 3, 700), seed=9)
    ms, D, norms = reference(grads, buffers, 0.9, True)
    op = torch.ops.steepest.momentum_stack_triton

    def run(grads, buffers):
        return op(grads, buffers, 0.9, True, torch.float32, None, 3, 700)

    fn = torch.compile(run, fullgraph=True, backend="eager") if compiled else run
    stack, got = fn(grads, buffers)
    for m, want in zip(buffers, ms, strict=True):
        assert_near(m, want)
    assert stack.shape == (4, 3, 700)
    assert_near(stack, D.reshape(4, 3, 700))
    torch.testing.assert_close(got, D.reshape(4, -1).norm(dim=1), rtol=1e-6, atol=0)
