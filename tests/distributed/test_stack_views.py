"""The sharded step's stacks without copies (steepest.distributed.sharded helpers), without
processes: directions that lie back to back in one buffer are read as one stack (a view,
no copy), anything else is not; a stack of whole tensors is dualized as the matrices the
single-process engine reads (steepest.matrices.stacking.map_matrices is the oracle)."""

from __future__ import annotations

import pytest
import torch

from steepest.distributed.sharded import _consecutive, _map_stack
from steepest.matrices.stacking import map_matrices


def test_back_to_back_parts_are_one_view():
    D = torch.randn(5, 3, 4)
    parts = [D[0:2], D[2:3], D[3:5]]
    stack = _consecutive(parts)
    assert stack is not None
    assert stack.data_ptr() == D.data_ptr() and stack.shape == (5, 3, 4)
    assert torch.equal(stack, torch.cat(parts))
    D[4, 0, 0] = 7.0  # a view: the write shows through
    assert stack[4, 0, 0] == 7.0


def test_a_stack_of_tensors_is_kept_as_a_view_while_the_same_tensors_come():
    from steepest.distributed import ShardedDualizer

    dualizer = ShardedDualizer()
    buffer = torch.arange(24.0).reshape(4, 3, 2)
    tensors = list(buffer.unbind(0))
    first = dualizer._stack_tensors(tensors, "k")
    again = dualizer._stack_tensors(tensors, "k")  # rebuilt from the kept place
    assert first.data_ptr() == again.data_ptr() == buffer.data_ptr()
    assert torch.equal(again, torch.stack(tensors))
    buffer.add_(1.0)  # a view: what the tensors hold now
    assert torch.equal(dualizer._stack_tensors(tensors, "k"), torch.stack(tensors))
    # other tensors under the same key: found anew; apart, they are copied (every call)
    apart = [torch.full((3, 2), float(i)) for i in range(4)]
    copied = dualizer._stack_tensors(apart, "k")
    assert torch.equal(copied, torch.stack(apart))
    apart[0].fill_(7.0)
    assert torch.equal(dualizer._stack_tensors(apart, "k"), torch.stack(apart))
    # the same tensors once more, after the copies: a view again
    assert dualizer._stack_tensors(tensors, "k").data_ptr() == buffer.data_ptr()


def test_tensors_of_several_matrices_stack_as_their_matrices():
    """unit=(m, n): each tensor's (k_i, m, n) matrices, concatenated (torch.cat of the
    reshapes is the oracle); unit=(): their entries, as the squared norms travel."""
    from steepest.distributed import ShardedDualizer

    dualizer = ShardedDualizer()
    buffer = torch.arange(60.0)
    tensors = [buffer[:12].view(3, 2, 2), buffer[12:16].view(2, 2), buffer[16:60].view(11, 2, 2)]
    want = torch.cat([t.reshape(-1, 2, 2) for t in tensors])
    first = dualizer._stack_tensors(tensors, "m", (2, 2))
    again = dualizer._stack_tensors(tensors, "m", (2, 2))  # from the kept place
    assert first.data_ptr() == again.data_ptr() == buffer.data_ptr()
    assert torch.equal(again, want) and again.shape == (15, 2, 2)
    norms = [buffer[:3], buffer[3:4], buffer[4:15]]
    assert torch.equal(dualizer._stack_tensors(norms, "q", ()), buffer[:15])
    apart = [torch.randn(3, 2, 2), torch.randn(2, 2)]
    copied = dualizer._stack_tensors(apart, "m", (2, 2))
    assert torch.equal(copied, torch.cat([apart[0], apart[1][None]]))


def test_the_grouping_is_kept_while_the_same_parameters_and_dtypes_come():
    """ShardedDualizer._grouped with a key: the kept grouping equals a fresh one for the same
    tensors, and is found anew for other parameters or another direction dtype."""
    from steepest.distributed import ShardedDualizer

    dualizer = ShardedDualizer(share_replicated=False)
    params = [torch.randn(4, 3), torch.randn(2, 2), torch.randn(4, 3)]
    directions = [torch.randn_like(p) for p in params]
    kept = dualizer._grouped(directions, params, "g")
    assert kept == ShardedDualizer(share_replicated=False)._grouped(directions, params, None)
    assert dualizer._grouped(directions, params, "g") is kept
    assert dualizer._grouped([d.double() for d in directions], params, "g") is not kept
    other = [torch.randn(4, 3)]
    assert dualizer._grouped(directions[:1], other, "g")[1] == {"local": [0]}


@pytest.mark.parametrize(
    "case", ["reordered", "separate", "transposed", "other dtype", "other shape"]
)
def test_other_parts_are_not_a_view(case):
    D = torch.randn(4, 3, 3)
    parts = {
        "reordered": [D[2:4], D[0:2]],
        "separate": [torch.randn(2, 3, 3), torch.randn(2, 3, 3)],
        "transposed": [D[0:2].mT, D[2:4].mT],
        "other dtype": [D[0:2], D[2:4].double()],
        "other shape": [D[0:2], D[2:4].reshape(2, 9, 1)],
    }[case]
    assert _consecutive(parts) is None


def _normalized(X: torch.Tensor) -> torch.Tensor:
    """A matrix-wise function: each matrix over its Frobenius norm, times its row sums'
    sign pattern (so a mix-up of matrices or rows shows)."""
    scaled = X / X.norm(dim=(-2, -1), keepdim=True)
    return scaled * torch.sign(X.sum(dim=-1, keepdim=True))


@pytest.mark.parametrize(
    ("shape", "view", "blocks"),
    [
        ((6, 5), "auto", None),
        ((3, 6, 7), "auto", None),
        ((4, 3, 2, 2), "auto", None),
        ((6, 5), "transposed", None),
        ((6, 5), "auto", [2, 4]),
        ((2, 6, 4), (2, 2, 3, 4), None),
    ],
)
def test_a_stack_of_whole_tensors_is_dualized_as_its_matrices(shape, view, blocks):
    X = torch.randn(3, *shape, dtype=torch.float64)
    expected = torch.stack(map_matrices(_normalized, list(X.unbind(0)), view, blocks))
    got = _map_stack(_normalized, X, view, blocks)
    assert got.shape == X.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)


def test_collectives_get_contiguous_buffers(monkeypatch):
    """NCCL refuses strided buffers (gloo does not): the lane hands every collective
    contiguous ones, whatever layout the dualized stack or the packed rows come in."""
    import torch.distributed as dist

    from steepest.distributed.sharded import _Lane

    seen = []

    def gather(out, send, group=None, async_op=False):
        seen.append((out.is_contiguous(), send.is_contiguous()))
        out.view(2, -1).copy_(send.reshape(1, -1).expand(2, -1))  # two ranks, equal results

    def to_all(out, send, out_splits, in_splits, group=None, async_op=False):
        seen.append((out.is_contiguous(), send.is_contiguous()))
        out.copy_(send)

    monkeypatch.setattr(dist, "all_gather_into_tensor", gather)
    monkeypatch.setattr(dist, "all_to_all_single", to_all)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    lane = _Lane(torch.device("cpu"), 1)
    Y = torch.randn(3, 5, 4).mT  # a transposed result, as a compiled step may return
    got = lane.wait(lane.all_gather(lambda: torch.empty(6, 4, 5), Y, [3, 3], None, Y.dtype))
    assert torch.equal(got, torch.cat([Y, Y]))
    rows = torch.randn(8, 6)[:, 0]  # a strided 1-D pack
    got = lane.wait(lane.all_to_all(rows, lambda: torch.empty(8), [4, 4], [4, 4], None))
    assert torch.equal(got, rows)
    assert seen == [(True, True), (True, True)]


def test_a_rank_without_peers_sends_nothing(monkeypatch):
    """A group of one rank: no collective runs and nothing is received; the packed buffer
    (rounded to the exchange dtype, as it would travel) is the result."""
    import torch.distributed as dist

    from steepest.distributed.sharded import _Lane

    def refuse(*args, **kwargs):
        raise AssertionError("a collective ran without peers")

    monkeypatch.setattr(dist, "all_gather_into_tensor", refuse)
    monkeypatch.setattr(dist, "all_to_all_single", refuse)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 1)
    lane = _Lane(torch.device("cpu"), 1)
    Y = torch.randn(3, 5, 4).mT
    got = lane.wait(lane.all_gather(refuse, Y, [3], None, torch.bfloat16))
    assert got.is_contiguous() and torch.equal(got, Y.to(torch.bfloat16))
    flat = torch.randn(12)
    got = lane.wait(lane.all_to_all(flat, refuse, [12], [12], None))
    assert got.data_ptr() == flat.data_ptr()


def test_the_owners_updates_are_contiguous_when_compiled():
    """dualize_directions under a compiling backend (aot_eager functionalizes as Inductor
    does): a dualization that leaves a transposed stack (as a wide stack's iteration does)
    still yields a contiguous update, so the exchange and the recorded last stage read it
    without copying; values equal the eager call's."""
    from types import SimpleNamespace

    from steepest.optim.fast.sharded_step import dualize_directions

    algorithm = SimpleNamespace(
        dualize=lambda X, group: (2 * X.mT.contiguous()).mT,  # transposed layout
        scale=lambda m, n, group: 0.5,
    )
    X = torch.randn(3, 4, 6)
    eager = dualize_directions(algorithm, X, {}, torch.float32, False)
    torch._dynamo.reset()
    compiled = torch.compile(dualize_directions, backend="aot_eager", fullgraph=True)
    got = compiled(algorithm, X, {}, torch.float32, False)
    torch._dynamo.reset()
    assert got.is_contiguous() and eager.is_contiguous()
    assert torch.equal(got, eager) and torch.equal(eager, X)


def _muon_fused_inputs(shapes, seed=0):
    """Gradients, states and group of a Muon group whose stage 1 runs fused (float32)."""
    import steepest

    torch.manual_seed(seed)
    grads = [torch.randn(shape) for shape in shapes]
    states = [{"momentum_buffer": torch.randn(shape)} for shape in shapes]
    algorithm = steepest.optim.ALGORITHMS["muon"]
    group = {**algorithm.defaults, "momentum": 0.9, "nesterov": True}
    return algorithm, grads, states, group


@pytest.mark.parametrize(
    "shapes",
    [[(3, 5), (3, 5), (2, 5)], [(2, 4, 6), (2, 4, 6)], [(0, 5), (4, 2, 3)], [(2, 3, 2, 2)]],
    ids=["rows", "3-d", "empty shard", "4-d"],
)
def test_fused_stage_1_returns_each_local_matrix_squared_norm(shapes):
    """local_stages_1_2 (fused, float32 stacks): one float64 squared Frobenius norm per local
    matrix under the default view (a 3-D tensor's matrices, another tensor as one matrix;
    none for an empty 3-D shard, one zero for an empty row shard), equal to the float64 sum
    of squares of the direction it returns, computed here from the buffers (the Nesterov
    direction (1 - beta) G + beta M' with M' = beta M + (1 - beta) G)."""
    from steepest.matrices.views import matrix_shape
    from steepest.optim.fast.sharded_step import local_stages_1_2

    algorithm, grads, states, group = _muon_fused_inputs(shapes)
    before = [s["momentum_buffer"].double().clone() for s in states]
    dtypes = [torch.float32] * len(grads)
    directions, squares = local_stages_1_2(
        algorithm, grads, states, group, None, dtypes, kernels="torch"
    )
    for g, m, d, q in zip(grads, before, directions, squares, strict=True):
        momentum = 0.9 * m + 0.1 * g.double()
        expected = 0.1 * g.double() + 0.9 * momentum
        assert torch.allclose(d.double(), expected, rtol=1e-6, atol=1e-7)
        *batch, rows, cols = matrix_shape(tuple(g.shape))
        oracle = expected.reshape(*batch, rows * cols).square().sum(dim=-1).reshape(-1)
        assert q is not None and q.dtype == torch.float64
        assert q.shape == oracle.shape and torch.allclose(q, oracle, rtol=1e-6)


def test_unfused_stage_1_returns_no_squared_norms():
    """Unfused (no stack dtypes): the member's own stages 1-2 give the Nesterov direction
    (float64 oracle from the buffers) and no squared norms, so owners compute them."""
    from steepest.optim.fast.sharded_step import local_stages_1_2

    algorithm, grads, states, group = _muon_fused_inputs([(3, 4)])
    before = states[0]["momentum_buffer"].double().clone()
    directions, squares = local_stages_1_2(algorithm, grads, states, group, None, None)
    momentum = 0.9 * before + 0.1 * grads[0].double()
    expected = 0.1 * grads[0].double() + 0.9 * momentum
    assert squares == [None]
    assert torch.allclose(directions[0].double(), expected, rtol=1e-6, atol=1e-7)


def test_the_owner_uses_the_squared_norms_it_is_given():
    """dualize_directions with ``squares`` takes the norms from them, not from X: given the
    exact squared norms it equals the call without (float64 stack, SVD backend); given 4x
    the squares, Muon's eps-damped update, which depends on the norm, changes accordingly
    (the oracle: the same call on X scaled by 2 with its own norms)."""
    import steepest
    from steepest.optim.fast.sharded_step import dualize_directions

    algorithm = steepest.optim.ALGORITHMS["muon"]
    group = {**algorithm.defaults, "backend": "svd", "eps": 0.1}
    torch.manual_seed(1)
    X = torch.randn(3, 4, 6, dtype=torch.float64) * 1e-3
    squares = X.square().sum(dim=(-2, -1))
    plain = dualize_directions(algorithm, X, group, torch.float64, True)
    given = dualize_directions(algorithm, X, group, torch.float64, True, squares)
    assert torch.allclose(given, plain, rtol=1e-12, atol=1e-14)
    doubled = dualize_directions(algorithm, 2 * X, group, torch.float64, True)
    told = dualize_directions(algorithm, X, group, torch.float64, True, 4 * squares)
    assert torch.allclose(told, doubled, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(told, plain, rtol=1e-3)


def test_the_stage_1_layout_is_kept_while_the_same_parameters_and_options_come():
    """The fast path's sharded stage-1 layout of a fused group (dtypes, prescales, their
    per-tensor views): with float16 iterations the tensors that every rank holds whole get a
    prescaled float16 stack (one prescale entry per matrix, each tensor's view of its own),
    the same layout object while the same parameters and options come again, and a fresh one
    for other parameters or another polar dtype."""
    import steepest

    params = [torch.nn.Parameter(torch.randn(8, 3)) for _ in range(2)]
    params.append(torch.nn.Parameter(torch.randn(2, 5, 4)))
    opt = steepest.Muon(params, lr=0.02, polar_dtype=torch.float16)
    runner, group = opt._fast, opt.param_groups[0]
    algorithm = steepest.optim.ALGORITHMS[group["algorithm"]]
    grads = [torch.randn_like(p) for p in params]
    dtypes, prescales, scales, shared = layout = runner._stage_1_layout(
        0, group, algorithm, params, grads
    )
    assert dtypes == [torch.float16] * 3 and not shared  # plain tensors: held whole
    assert [None if p is None else tuple(p.shape) for p in prescales] == [(2,), (2,)]
    assert [tuple(s.shape) for s in scales] == [(1,), (1,), (2,)]
    assert scales[1].data_ptr() == prescales[0].data_ptr() + 4  # the second matrix's entry
    assert runner._stage_1_layout(0, group, algorithm, params, grads) is layout
    group["polar_dtype"] = torch.bfloat16
    dtypes, prescales, scales, _ = runner._stage_1_layout(0, group, algorithm, params, grads)
    assert dtypes == [torch.bfloat16] * 3 and prescales == [None, None] and scales == [None] * 3
    others = [torch.nn.Parameter(torch.randn(8, 3))]
    assert runner._stage_1_layout(0, group, algorithm, others, grads[:1])[0] == [torch.bfloat16]


def test_kept_values_are_found_only_for_the_same_tensors_and_signature():
    """KeptForTensors: a value is found for the very tensor objects it was kept for, in
    order, with an equal signature; not for an equal copy, another order, another length,
    another signature or another key; it holds its tensors weakly (keeps none alive)."""
    import weakref

    from steepest.matrices.kept import KeptForTensors

    kept: KeptForTensors[str] = KeptForTensors()
    a, b = torch.zeros(2), torch.ones(3)
    assert kept.put("k", [a, b], "v", (torch.float32,)) == "v"
    assert kept.get("k", [a, b], (torch.float32,)) == "v"
    assert kept.get("k", [a.clone(), b], (torch.float32,)) is None
    assert kept.get("k", [b, a], (torch.float32,)) is None
    assert kept.get("k", [a], (torch.float32,)) is None
    assert kept.get("k", [a, b], (torch.float64,)) is None
    assert kept.get("other", [a, b], (torch.float32,)) is None
    c = torch.ones(3)
    alive = weakref.ref(c)
    kept.put("k", [a, c], "w")
    assert kept.get("k", [a, c]) == "w" and kept.get("k", [a, b]) is None
    del c
    assert alive() is None


def test_row_scales_bring_parts_to_the_smallest_scale_and_agree_on_the_next():
    """shared_row_scales on a hand-built table of 3 ranks (rows 2, 1, 0) and 3 matrices: parts
    stored at one scale; at two scales (a first step); a zero part (scale 0) beside a stored
    one; the empty rank's entries are ignored whatever they hold."""
    from steepest.distributed import shared_row_scales

    q = torch.tensor([[4.0 * 4, 4.0 * 0.25, 0.0], [9.0 * 4, 1.0 * 16, 2.25 * 1], [7.0, 7.0, 7.0]])
    a = torch.tensor([[2.0, 0.5, 0.0], [2.0, 4.0, 1.0], [8.0, 8.0, 8.0]])
    table = torch.stack((q, a), dim=-1).double()  # unscaled squares (4, 9), (4, 1), (0, 2.25)
    prescales = torch.full((3,), 7.0)
    squares, following, factors = shared_row_scales(table, [2, 1, 0], (0, 3), prescales)
    # at the common scales 2, 1/2 and 1: 4 (4 + 9); 1 + 16 / 64; 2.25
    assert torch.equal(squares, torch.tensor([52.0, 1.25, 2.25]).double())
    norms = torch.tensor([13.0, 5.0, 2.25]).double().sqrt()  # 3.61, 2.24, 1.5
    assert torch.equal(following, torch.tensor([0.25, 0.25, 0.5]).double())
    assert torch.all((norms * following >= 0.5) & (norms * following < 1))
    assert torch.equal(prescales, following.float())
    assert factors.dtype == torch.float32 and factors.shape == (3, 3)
    assert torch.equal(factors, torch.tensor([[1.0, 1, 1], [1, 1, 0.125], [1, 1, 1]]))
    squares, following, factors = shared_row_scales(table, [2, 1, 0], (1, 2), prescales)
    assert squares.tolist() == [1.25] and following.tolist() == [0.25]
    assert torch.equal(factors, torch.tensor([[1.0, 1, 0.125]]))
