"""momentum_stack (stage 1 of the fused step in one pass) against float64 arithmetic: the torch
path on CPU, the Triton kernel in Triton's interpreter (tests/conftest.py), the CUDA kernel on
a GPU."""

import os

import pytest
import torch

from steepest.optim.fast.fused_momentum import momentum_stack
from steepest.polar.kernels import triton_available

INTERPRETED = triton_available() and os.environ.get("TRITON_INTERPRET") == "1"
needs_interpreter = pytest.mark.skipif(
    not INTERPRETED, reason="needs triton and TRITON_INTERPRET=1 (tests/conftest.py, no GPU)"
)
needs_cuda = pytest.mark.cuda


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
    from steepest.kernels.momentum import BLOCK, momentum_direction_triton

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
    from steepest.optim.fast import fused_momentum

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
    from steepest.optim.fast import fused_momentum
    from steepest.optim.fast.device_tables import DeviceTables

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
    import steepest.optim.fast.fused_momentum  # noqa: F401  (registers the op)

    grads, buffers = inputs(2, (2, 3, 700), seed=9)
    ms, D, norms = reference(grads, buffers, 0.9, True)
    op = torch.ops.steepest.momentum_stack_triton

    def run(grads, buffers):
        return op(grads, buffers, 0.9, True, torch.float32, None, 3, 700, None, False)

    fn = torch.compile(run, fullgraph=True, backend="eager") if compiled else run
    stack, got = fn(grads, buffers)
    for m, want in zip(buffers, ms, strict=True):
        assert_near(m, want)
    assert stack.shape == (4, 3, 700)
    assert_near(stack, D.reshape(4, 3, 700))
    torch.testing.assert_close(got, D.reshape(4, -1).norm(dim=1), rtol=1e-6, atol=0)


# ------------------------------------------------------------- the prescaled float16 stack


def expected_prescale(norms, prescale):
    """The scale each row carries and the next prescale, by the rule's definition: keep the
    prescale while norm * prescale lies in [1/4, 8], else 2^-e for norm = f 2^e, f in
    [1/2, 1); the next prescale is 2^-e (kept for zero norms)."""
    exact = torch.tensor(
        [2.0 ** -torch.frexp(torch.tensor(float(x), dtype=torch.float64))[1].item() for x in norms],
        dtype=torch.float64,
    )
    ratio = norms * prescale.double()
    keep = ((ratio >= 0.25) & (ratio <= 8.0)) | (norms == 0)
    applied = torch.where(keep, prescale.double(), exact)
    return applied, torch.where(norms > 0, exact, prescale.double())


def check_prescaled(stack, got, prescale, before, D, norms, kept=False):
    """stack, norms and prescale against the float64 reference under the rule above (with
    ``kept``, a masked step's: the prescale is not checked here)."""
    applied, following = expected_prescale(norms, before)
    assert stack.dtype == torch.float16 and torch.isfinite(stack).all()
    torch.testing.assert_close(got, norms * applied, rtol=1e-6, atol=0)
    if not kept:
        assert torch.equal(prescale.double(), following)
    scaled = D * applied[:, None, None].reshape(-1, *([1] * (D.ndim - 1)))
    assert ((stack.double() - scaled).abs().max() / scaled.abs().max()) <= 1e-3


@pytest.mark.parametrize("kernel", ["torch", "interpreted op"])
def test_prescaled_stack_follows_the_rule_across_steps(kernel):
    """Step 1 from a zero prescale rewrites every row with its own power of two; step 2 keeps
    it (norms changed little); a gradient spike (x 1e4, far past the window) and a 1e-6 drop
    make those rows take their own scale; a zero matrix stays zero with its prescale kept;
    a False finite flag leaves the prescale. Magnitudes 1e-30 and 1e30 land in float16's
    range all the same."""
    if kernel != "torch" and not INTERPRETED:
        pytest.skip("needs triton and TRITON_INTERPRET=1 (tests/conftest.py, no GPU)")
    import steepest.optim.fast.fused_momentum  # noqa: F401  (registers the op)

    def run(grads, buffers, prescale, finite=None):
        if kernel == "torch":
            return momentum_stack(
                grads, buffers, 0.9, True, torch.float16, finite, kernel="torch", prescale=prescale
            )
        op = torch.ops.steepest.momentum_stack_triton
        return op(grads, buffers, 0.9, True, torch.float16, finite, 33, 150, prescale, False)

    grads, buffers = inputs(5, (33, 150), seed=3)
    grads[2], buffers[2] = grads[2] * 1e-30, buffers[2] * 1e-30
    grads[3], buffers[3] = grads[3] * 1e30, buffers[3] * 1e30
    grads[4].zero_(), buffers[4].zero_()
    prescale = torch.zeros(5)
    for step in range(4):
        if step == 2:
            grads[0] = grads[0] * 1e4
            grads[1] = grads[1] * 1e-6
            buffers[1].mul_(1e-6)
        finite = torch.tensor(step != 3)
        ms, D, norms = reference(grads, buffers, 0.9, True, finite=bool(finite))
        before = prescale.clone()
        stack, got = run(grads, buffers, prescale, finite)
        check_prescaled(stack, got, prescale, before, D, norms, kept=step == 3)
        if step == 3:  # masked: the prescale stays
            assert torch.equal(prescale, before)
            continue
        if step == 1:  # nothing rewritten: every row kept step 1's power of two
            assert torch.equal(expected_prescale(norms, before)[0], before.double())
        if step == 2:  # the spike and the drop left the window
            assert not torch.equal(expected_prescale(norms, before)[0][:2], before[:2].double())
        assert torch.count_nonzero(stack[4]) == 0


@needs_interpreter
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("finite", [None, False])
def test_interpreted_op_with_prescale_also_compiled(nesterov, finite):
    """The op with a prescale under torch.compile(fullgraph=True): a row kept in the window
    (written once) and a row whose prescale would overflow float16 (rewritten by the fixup
    kernel from G and the updated M), against the float64 reference."""
    import steepest.optim.fast.fused_momentum  # noqa: F401  (registers the op)

    grads, buffers = inputs(2, (2, 3, 700), seed=11)
    flag = None if finite is None else torch.tensor(finite)
    ms, D, norms = reference(grads, buffers, 0.9, nesterov, finite is not False)
    D, norms = D.reshape(4, 3, 700), D.reshape(4, -1).norm(dim=1)
    own = torch.tensor([2.0 ** -torch.frexp(x)[1].item() for x in norms], dtype=torch.float32)
    prescale = torch.stack([own[0], own[1] * 2**20, own[2] / 8, own[3] * 4])  # 2 rows miss

    def run(grads, buffers, prescale):
        op = torch.ops.steepest.momentum_stack_triton
        return op(grads, buffers, 0.9, nesterov, torch.float16, flag, 3, 700, prescale, False)

    before = prescale.clone()
    stack, got = torch.compile(run, fullgraph=True, backend="eager")(grads, buffers, prescale)
    for m, want in zip(buffers, ms, strict=True):
        assert_near(m, want)
    if finite is None:
        check_prescaled(stack, got, prescale, before, D, norms)
    else:  # the masked step: the direction is M, the prescale unchanged
        check_prescaled(stack, got, before.clone(), before, D, norms, kept=True)
        assert torch.equal(prescale, before)
    applied, _ = expected_prescale(norms, before)
    assert applied[1] != before[1] and applied[2] != before[2]  # the two rewritten rows


@pytest.mark.parametrize("kernel", ["torch", "interpreted op"])
@pytest.mark.parametrize("finite", [None, False])
def test_a_shared_prescale_is_kept_unless_zero_or_overflowing(kernel, finite):
    """``shared``: rows stored times the given prescale even far below the window (a row
    part of a larger matrix), rewritten with their own power of two where the prescale is
    zero or would take the row's norm above 8; on return the prescale holds the scale each
    row was stored times; stack and norms against the float64 reference."""
    if kernel != "torch" and not INTERPRETED:
        pytest.skip("needs triton and TRITON_INTERPRET=1 (tests/conftest.py, no GPU)")
    import steepest.optim.fast.fused_momentum  # noqa: F401  (registers the op)

    grads, buffers = inputs(5, (3, 40), seed=4)
    flag = None if finite is None else torch.tensor(finite)
    _, D, norms = reference(grads, buffers, 0.9, True, finite is not False)
    own = torch.tensor([2.0 ** -torch.frexp(x)[1].item() for x in norms], dtype=torch.float32)
    # kept (in the window), kept (1/64 of the window's lower end), zero, overflowing, kept
    given = torch.stack([own[0], own[1] / 2**8, own[2] * 0, own[3] * 2**6, own[4] * 4])
    prescale = given.clone()
    if kernel == "torch":
        stack, got = momentum_stack(
            grads, buffers, 0.9, True, torch.float16, flag, kernel="torch", prescale=prescale,
            shared=True,
        )  # fmt: skip
    else:
        op = torch.ops.steepest.momentum_stack_triton
        stack, got = op(grads, buffers, 0.9, True, torch.float16, flag, 3, 40, prescale, True)
    applied = torch.stack([given[0], given[1], own[2], own[3], given[4]]).double()
    assert torch.equal(prescale.double(), applied)
    assert_near(got, norms * applied)
    for row in range(5):
        assert_near(stack[row], D[row] * applied[row], 2**-10)


def test_prescale_is_checked():
    grads, buffers = inputs(2, (4, 6))
    before = [m.clone() for m in buffers]
    with pytest.raises(
        ValueError, match=r"prescale is \(\(3,\), torch.float32\); need a contiguous \(2,\)"
    ):
        momentum_stack(grads, buffers, 0.9, True, torch.float16, prescale=torch.zeros(3))
    with pytest.raises(ValueError, match="shared=True needs a prescale"):
        momentum_stack(grads, buffers, 0.9, True, torch.float16, shared=True)
    with pytest.raises(ValueError, match="prescale is"):
        momentum_stack(
            grads, buffers, 0.9, True, torch.float16, prescale=torch.zeros(2, dtype=torch.float64)
        )
    assert all(torch.equal(m, b) for m, b in zip(buffers, before, strict=True))


@needs_cuda
@pytest.mark.parametrize("finite", [None, True, False])
@pytest.mark.parametrize("shared", [False, True])
def test_cuda_prescaled_stack_matches_the_torch_path(finite, shared):
    """The one-launch kernel, the row kernel and the table fixup against the torch path: one
    row kept, one far past the window (rewritten), a zero matrix, two matrices per tensor;
    ``shared``: also a zero prescale (rewritten) and one far below the window (kept)."""
    grads, buffers = inputs(3, (2, 300, 1111), device="cuda")
    grads[2].zero_(), buffers[2].zero_()
    twins = [m.clone() for m in buffers]
    flag = None if finite is None else torch.tensor(finite, device="cuda")
    prescale = torch.tensor([1e-3, 2.0**30, 1.0, 2.0**-10, 0.5, 0.5], device="cuda")
    if shared:
        prescale[4:] = torch.tensor([0.0, 2.0**-40])
    prescale_twin = prescale.clone()
    common = dict(matrix=(300, 1111), shared=shared)
    stack, norms = momentum_stack(
        grads,
        buffers,
        0.95,
        True,
        torch.float16,
        flag,
        kernel="triton",
        prescale=prescale,
        **common,
    )
    want, want_norms = momentum_stack(
        grads,
        twins,
        0.95,
        True,
        torch.float16,
        flag,
        kernel="torch",
        prescale=prescale_twin,
        **common,
    )
    assert torch.equal(prescale, prescale_twin)
    assert torch.isfinite(stack).all()
    assert ((stack.double() - want.double()).abs().max() / want.double().abs().max()) <= 2e-3
    torch.testing.assert_close(norms, want_norms, rtol=1e-6, atol=0)
