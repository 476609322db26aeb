"""msign_many and gram_quintic_iteration_many: msign of several stacks, batched across shapes.

Oracles: the fp64 scalar polynomial applied to known singular values (U p(s) V^T, built with
with_spectrum), exact U V^T from the SVD, and msign called stack by stack.
"""

import pytest
import torch
from polar_helpers import compose, normalized, with_spectrum

from steepest.polar import (
    gram_quintic_iteration,
    gram_quintic_iteration_many,
    msign,
    msign_many,
    newton_schulz_coefficients,
    polar_express_coefficients,
    polar_svd,
)

# A GPT-block-like mix: one short side 4 in four shapes (wide, tall, another long side, square),
# a second short side, a leading batch dimension and a stack that is the transpose of another.
SHAPES = [(3, 4, 12), (2, 12, 4), (4, 16), (2, 4, 4), (5, 10), (10, 5), (2, 3, 6, 9)]


def _spectra(gen):
    """(G, U, V, s) per shape: G = U diag(s) V^T with s spread over two decades."""
    out = []
    for shape in SHAPES:
        *batch, m, n = shape
        s = torch.logspace(0, -2, min(m, n), dtype=torch.float64)
        G, U, V = with_spectrum(s, m, n, tuple(batch), gen)
        out.append((G, U, V, s))
    return out


@pytest.mark.parametrize("form", ["direct", "gram", "auto"])
@pytest.mark.parametrize("backend", ["polar_express", "newton_schulz"])
def test_every_stack_gets_its_scalar_polynomial(form, backend):
    """Against the fp64 oracle: singular values p_5(...p_1(s)) with each stack's own
    normalization, singular vectors kept, whatever other stacks share the batch."""
    spectra = _spectra(torch.Generator().manual_seed(0))
    outs = msign_many([G for G, *_ in spectra], backend, dtype=torch.float64, form=form)
    if backend == "polar_express":
        schedule, safety = polar_express_coefficients(5), 1.01
    else:
        schedule, safety = newton_schulz_coefficients(None, 5), 1.0
    for (G, U, V, s), out in zip(spectra, outs, strict=True):
        assert out.shape == G.shape and out.dtype == G.dtype
        mapped = compose(schedule, normalized(s.numpy(), safety))
        expected = (U * torch.as_tensor(mapped).unsqueeze(-2)) @ V.mT
        assert torch.allclose(out, expected, atol=1e-10, rtol=0), G.shape


@pytest.mark.parametrize("form", ["direct", "gram", "auto"])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_equals_msign_stack_by_stack(form, dtype, tol):
    gen = torch.Generator().manual_seed(1)
    Gs = [torch.randn(*shape, generator=gen, dtype=dtype) for shape in SHAPES]
    outs = msign_many(Gs, form=form)
    for G, out in zip(Gs, outs, strict=True):
        assert (out - msign(G, form=form)).abs().max() < tol, G.shape


def test_svd_and_callable_backends_run_per_stack():
    gen = torch.Generator().manual_seed(2)
    Gs = [torch.randn(*shape, generator=gen, dtype=torch.float64) for shape in SHAPES]
    for G, out in zip(Gs, msign_many(Gs, "svd"), strict=True):
        exact = polar_svd(G.reshape(-1, *G.shape[-2:])).reshape(G.shape)
        assert (out - exact).abs().max() < 1e-12
    seen = []

    def backend(X, steps):
        seen.append(tuple(X.shape))
        return X * 2

    outs = msign_many(Gs[:2], backend)
    assert seen == [(3, 4, 12), (2, 4, 12)]  # one call per stack, each turned wide
    assert torch.allclose(outs[1], 2 * Gs[1] / (1.01 * Gs[1].norm(dim=(-2, -1), keepdim=True)))


def test_empty_stacks_and_zero_matrices():
    G = torch.randn(3, 4, 12, dtype=torch.float64)
    G[1] = 0
    empty = torch.zeros(0, 12, 4, dtype=torch.float64)
    out_empty, out = msign_many([empty, G], form="gram")
    assert out_empty.shape == empty.shape
    assert torch.equal(out[1], torch.zeros(4, 12, dtype=torch.float64))
    assert torch.allclose(out, msign(G, form="gram"), atol=1e-12, rtol=0)
    assert msign_many([]) == []


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="msign: G must be a torch.Tensor"):
        msign_many([torch.randn(4, 4), "not a tensor"])
    with pytest.raises(ValueError, match="msign: steps=0"):
        msign_many([torch.randn(4, 4)], steps=0)
    with pytest.raises(ValueError, match=r"msign_many: Gs are on \['cpu', 'meta'\]"):
        msign_many([torch.randn(4, 4), torch.empty(4, 4, device="meta")])


def test_gram_iteration_many_equals_one_stack_at_a_time():
    gen = torch.Generator().manual_seed(3)
    Xs = [
        torch.randn(k, 6, l, generator=gen, dtype=torch.float64) / 20
        for k, l in ((2, 18), (3, 6), (1, 30))
    ]
    schedule = polar_express_coefficients(5)
    outs = gram_quintic_iteration_many(Xs, schedule)
    for X, out in zip(Xs, outs, strict=True):
        assert (out - gram_quintic_iteration(X, schedule)).abs().max() < 1e-14


@pytest.mark.parametrize(
    ("Xs", "match"),
    [
        ([], "Xs is empty"),
        ([torch.zeros(1, 4, 8), torch.zeros(1, 5, 8)], r"shape \(1, 5, 8\); need .* s = 4"),
        ([torch.zeros(1, 4, 8), torch.zeros(1, 4, 3)], r"shape \(1, 4, 3\).* s <= l"),
        ([torch.zeros(1, 4, 8), torch.zeros(1, 4, 8, dtype=torch.float64)], "torch.float64"),
    ],
)
def test_gram_iteration_many_rejects_mismatched_stacks(Xs, match):
    with pytest.raises(ValueError, match=match):
        gram_quintic_iteration_many(Xs, polar_express_coefficients(5))


def test_compiles_without_graph_breaks():
    gen = torch.Generator().manual_seed(4)
    Gs = [torch.randn(*shape, generator=gen) for shape in SHAPES[:4]]
    compiled = torch.compile(msign_many, fullgraph=True, backend="eager")
    for out, ref in zip(compiled(Gs, form="auto"), msign_many(Gs, form="auto"), strict=True):
        assert torch.equal(out, ref)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device)")
def test_cuda_megabatch_is_as_accurate_as_stack_by_stack():
    """float16 Gram form with the Triton kernels: a GPT-2 block's four shapes batched together
    are as close to the fp64 polar factor as msign called per stack."""
    gen = torch.Generator().manual_seed(5)
    shapes = [(2, 2304, 768), (2, 768, 768), (2, 3072, 768), (2, 768, 3072)]
    Gs = [torch.randn(*shape, generator=gen).cuda() for shape in shapes]
    outs = msign_many(Gs, form="auto")
    for G, out in zip(Gs, outs, strict=True):
        ref = msign(G.double(), dtype=torch.float64, form="direct")
        single = msign(G, form="auto")
        err_many = ((out.double() - ref).norm() / ref.norm()).item()
        err_single = ((single.double() - ref).norm() / ref.norm()).item()
        assert err_many < 1.2 * err_single + 1e-3, (G.shape, err_many, err_single)
