"""steepest.polar.kernels against the float64 oracle, on CPU (torch fallback) and CUDA (Triton).

Oracle: alpha * X X^T + beta * C computed in float64 from the same (rounded) inputs. Tolerances:
float32 products land near 1e-6 relative error; bfloat16 operands with fp32 accumulation and one
bfloat16 rounding of the output near 3e-3, so bfloat16 cases assert ||out - ref|| / ||ref|| < 1e-2.
Every output buffer is filled with NaN first, so an element the kernel never writes fails the test.

The tests marked cuda need a GPU with triton (`pytest -m cuda`; without a GPU they skip).
The CPU tests run everywhere and cover the torch fallback, the kernel choice and the errors;
the interpreter tests run the Triton kernel itself on CPU (Triton's interpreter, float16
operands: its tl.dot mishandles bfloat16), so CI checks every tile config's indexing, masks,
epilogue and mirror without a GPU.
"""

import os
import zlib

import pytest
import torch

from steepest.polar import msign, odd_quintic_iteration, polar_express_coefficients
from steepest.polar.kernels import (
    AUTO_MIN_SIDE,
    KERNELS,
    resolve_kernel,
    symmetric_product,
    triton_available,
)

needs_cuda = pytest.mark.cuda

# (batch, s, l): not divisible by 64 or 128, batch 1 and > 1, s = l, s > l, tiny.
SHAPES = [
    (1, 1, 1),
    (1, 5, 3),
    (2, 7, 19),
    (1, 64, 64),
    (3, 65, 127),
    (1, 128, 128),
    (2, 129, 200),
    (1, 200, 200),
    (4, 257, 300),
    (2, 300, 129),
    (1, 384, 1000),
    (3, 768, 2304),
]


def _relative_error(out, ref):
    return ((out.double() - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def _oracle(X, alpha, C, beta):
    Xd = X.double()
    ref = alpha * (Xd @ Xd.mT)
    return ref if C is None else ref + beta * C.double()


def _symmetric(batch, s, dtype, device, generator):
    C = torch.randn(batch, s, s, generator=generator, dtype=torch.float64)
    return (C + C.mT).to(device=device, dtype=dtype)


def _assert_mirrored(out, config):
    """Off-diagonal tiles are stored as exact transposes of the computed ones. A diagonal tile is
    one product whose float32 sums may round differently at (i, j) and (j, i) (the interpreter's
    tl.dot is a NumPy matmul, whose vectorized reduction order depends on the position), so there
    one unit in the last place of the stored dtype is allowed."""
    tile = int(config.split("x")[0])
    block = torch.arange(out.shape[-1]) // tile
    same_tile = block[:, None] == block[None, :]
    assert torch.equal(out[..., ~same_tile], out.mT[..., ~same_tile]), "mirrored tiles differ"
    gap = (out.float() - out.mT.float()).abs()[..., same_tile]
    ulp = torch.finfo(out.dtype).eps * out.float().abs()[..., same_tile].clamp_min(1.0)
    assert (gap <= ulp).all(), "a diagonal tile is not symmetric to one unit in the last place"


def _inputs(batch, s, l, dtype, device, seed, transposed=False):
    generator = torch.Generator().manual_seed(seed)
    if transposed:  # a column-major view, as msign passes for tall matrices
        X = torch.randn(batch, l, s, generator=generator).mT
    else:
        X = torch.randn(batch, s, l, generator=generator)
    X = X.to(device=device, dtype=dtype)
    return X, _symmetric(batch, s, dtype, device, generator)


# ---------------------------------------------------------------- CPU: the torch fallback


@pytest.mark.parametrize("shape", SHAPES[:9])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("with_c", [False, True])
def test_torch_fallback_matches_float64_on_cpu(shape, dtype, tol, with_c):
    batch, s, l = shape
    X, C = _inputs(batch, s, l, dtype, "cpu", seed=hash((shape, with_c)) % 2**31)
    alpha, beta = (-0.6, 1.7) if with_c else (1.3, 0.0)
    C = C if with_c else None
    out = torch.full((batch, s, s), float("nan"), dtype=dtype)
    result = symmetric_product(X, alpha, C, beta, kernel="auto", out=out)
    assert result is out
    assert torch.isfinite(out).all()
    assert _relative_error(out, _oracle(X, alpha, C, beta)) < tol
    # Without `out`, the same values in a new tensor.
    again = symmetric_product(X, alpha, C, beta, kernel="torch")
    assert torch.equal(again, out)


def test_torch_fallback_keeps_leading_batch_dims_and_beta_zero_ignores_c():
    generator = torch.Generator().manual_seed(3)
    X = torch.randn(2, 3, 6, 9, generator=generator, dtype=torch.float64)
    C = torch.full((2, 3, 6, 6), float("nan"), dtype=torch.float64)
    out = symmetric_product(X, 2.0, C, 0.0, kernel="torch")
    assert out.shape == (2, 3, 6, 6)
    torch.testing.assert_close(out, 2.0 * X @ X.mT, rtol=1e-12, atol=1e-12)


def test_quintic_polynomial_of_a_symmetric_matrix_on_cpu():
    """b A + c A^2 = symmetric_product(A, c, A, b) against float64 matrix powers."""
    generator = torch.Generator().manual_seed(4)
    X = torch.randn(3, 40, 70, generator=generator)
    A = X @ X.mT / 70
    b, c = -4.7750, 2.0315
    poly = symmetric_product(A, c, A, b, kernel="torch")
    Ad = A.double()
    assert _relative_error(poly, b * Ad + c * Ad @ Ad) < 1e-5


def test_resolve_kernel_on_cpu_picks_torch_and_rejects_triton():
    X = torch.randn(2, 8, 8)
    assert resolve_kernel("auto", X) == "torch"
    assert resolve_kernel("torch", X) == "torch"
    with pytest.raises(ValueError, match="kernel='triton' cannot run"):
        resolve_kernel("triton", X)
    with pytest.raises(ValueError, match="kernel='cublas' is unknown"):
        resolve_kernel("cublas", X)
    assert set(KERNELS) == {"auto", "torch", "triton"}


def test_resolve_kernel_auto_never_picks_triton_for_float32_or_small_sides():
    big = torch.empty(1, AUTO_MIN_SIDE, AUTO_MIN_SIDE, device="meta")
    assert resolve_kernel("auto", big) == "torch"  # not CUDA
    assert resolve_kernel("auto", torch.randn(1, 4, 4, dtype=torch.bfloat16)) == "torch"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"alpha": True}, TypeError, "alpha=True"),
        ({"beta": "1"}, TypeError, "beta='1'"),
        ({"C": torch.zeros(2, 5, 4)}, ValueError, r"C has shape \(2, 5, 4\)"),
        ({"C": torch.zeros(2, 5, 5, dtype=torch.float64)}, ValueError, "C is torch.float64"),
        ({"out": torch.zeros(2, 5, 6)}, ValueError, "out is"),
        ({"out": torch.zeros(5, 2, 5).transpose(0, 1)}, ValueError, "contiguous"),
        ({"kernel": "fast"}, ValueError, "kernel='fast' is unknown"),
        ({"scale": torch.ones(3)}, ValueError, r"scale is \(\(3,\), torch.float32\)"),
        ({"scale": torch.ones(2, dtype=torch.int64)}, ValueError, "need a real tensor"),
    ],
)
def test_symmetric_product_rejects_bad_arguments(kwargs, error, match):
    X = torch.randn(2, 5, 7)
    with pytest.raises(error, match=match):
        symmetric_product(X, **kwargs)


def test_torch_path_scales_each_matrix_after_the_product():
    """scale (alpha X X^T + beta C + shift I), one factor per matrix of the leading shape."""
    X, C = _inputs(6, 5, 9, torch.float64, "cpu", seed=8)
    X, C = X.reshape(2, 3, 5, 9), C.reshape(2, 3, 5, 5)
    scale = torch.tensor([[0.5, -2.0, 0.0], [3.0, 1e-3, 1.0]], dtype=torch.float64)
    got = symmetric_product(X, 0.7, C, -1.1, kernel="torch", shift=0.3, scale=scale)
    plain = 0.7 * X @ X.mT - 1.1 * C + 0.3 * torch.eye(5, dtype=torch.float64)
    assert torch.allclose(got, scale[..., None, None] * plain, atol=1e-12, rtol=0)


def test_symmetric_product_rejects_non_matrices():
    with pytest.raises(ValueError, match="need a floating"):
        symmetric_product(torch.arange(6).reshape(2, 3))
    with pytest.raises(ValueError, match="need a floating"):
        symmetric_product(torch.randn(5))


def test_msign_kernel_choice_on_cpu():
    generator = torch.Generator().manual_seed(5)
    G = torch.randn(3, 12, 7, generator=generator)
    auto = msign(G)
    assert torch.equal(auto, msign(G, kernel="torch"))
    # The torch path still computes the scalar quintics: compare with an explicit fp64 iteration.
    X = G.double().mT / (1.01 * torch.linalg.matrix_norm(G.double()).reshape(3, 1, 1))
    for a, b, c in polar_express_coefficients(5):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    assert _relative_error(auto, X.mT) < 1e-5
    with pytest.raises(ValueError, match="kernel='triton' cannot run"):
        msign(G, kernel="triton")
    with pytest.raises(ValueError, match="msign: kernel='cuda' is unknown"):
        msign(G, kernel="cuda")
    with pytest.raises(ValueError, match="kernel='triton' cannot run"):
        odd_quintic_iteration(G.mT, [(1.0, 0.0, 0.0)], kernel="triton")


# ---------------------------------------------------------------- CPU: the kernel, interpreted

INTERPRETED = triton_available() and os.environ.get("TRITON_INTERPRET") == "1"
needs_interpreter = pytest.mark.skipif(
    not INTERPRETED, reason="needs triton and TRITON_INTERPRET=1 (tests/conftest.py, no GPU)"
)


@needs_interpreter
@pytest.mark.parametrize("config", ["128x64w8s3", "128x128w8s3", "64x64w4s4"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 7, 19), (1, 129, 191), (2, 200, 64)])
@pytest.mark.parametrize("transposed", [False, True])
def test_interpreted_triton_kernel_matches_float64(config, shape, transposed):
    from steepest.kernels.syrk import syrk_triton

    batch, s, l = shape
    seed = zlib.crc32(repr((config, shape, transposed)).encode())  # str hashes vary per run
    X, C = _inputs(batch, s, l, torch.float16, "cpu", seed, transposed)
    X = X / 4  # keep alpha * X X^T + beta * C well inside float16's range
    for C_used, alpha, beta in ((None, 1.3, 0.0), (C, -0.6, 1.7)):
        out = torch.full((batch, s, s), float("nan"), dtype=torch.float16)
        syrk_triton(X, alpha, C_used, beta, out, config=config)
        assert torch.isfinite(out).all(), "unwritten (NaN) output elements"
        assert _relative_error(out, _oracle(X, alpha, C_used, beta)) < 2e-3
        _assert_mirrored(out, config)


@needs_interpreter
@pytest.mark.parametrize("config", ["128x64w8s3", "64x64w4s4"])
@pytest.mark.parametrize("s", [1, 70, 129])
def test_interpreted_kernel_adds_the_diagonal_shift(config, s):
    """shift I lands on the diagonal of every diagonal tile (and nowhere else): the whole
    quintic polynomial a I + b R + c R^2 from one launch."""
    from steepest.kernels.syrk import syrk_triton

    X, C = _inputs(2, s, s, torch.float16, "cpu", seed=s)
    R = (X / 4 + X.mT / 4).contiguous()
    out = torch.full((2, s, s), float("nan"), dtype=torch.float16)
    syrk_triton(R, -0.6, C, 1.7, out, config=config, shift=3.25)
    ref = _oracle(R, -0.6, C, 1.7) + 3.25 * torch.eye(s, dtype=torch.float64)
    assert _relative_error(out, ref) < 2e-3
    _assert_mirrored(out, config)


@needs_interpreter
@pytest.mark.parametrize("config", ["128x64w8s3", "64x64w4s4"])
@pytest.mark.parametrize("shape, transposed", [((3, 70, 90), False), ((2, 129, 64), True)])
def test_interpreted_kernel_scales_each_matrix_in_float32(config, shape, transposed):
    """The factor multiplies the float32 result before its one rounding: an unscaled X X^T
    of entries up to 2^7 (beyond float16's range as a product) lands normalized."""
    batch, s, l = shape
    X, C = _inputs(batch, s, l, torch.float16, "cpu", seed=s, transposed=transposed)
    X = X * 64
    scale = torch.rand(batch, generator=torch.Generator().manual_seed(1)) / (64 * 64 * l)
    scale[0] = 0.0
    out = torch.full((batch, s, s), float("nan"), dtype=torch.float16)
    from steepest.kernels.syrk import syrk_triton

    syrk_triton(X, 1.0, C, 2e-4, out, config=config, shift=1e-3, scale=scale)
    ref = _oracle(X, 1.0, C, 2e-4) + 1e-3 * torch.eye(s, dtype=torch.float64)
    ref = ref * scale.double()[:, None, None]
    assert torch.isfinite(out).all()
    assert torch.count_nonzero(out[0]) == 0
    assert _relative_error(out, ref) < 2e-3
    _assert_mirrored(out, config)


def test_torch_path_adds_the_diagonal_shift():
    X, C = _inputs(2, 6, 9, torch.float64, "cpu", seed=4)
    got = symmetric_product(X, 0.5, C, 2.0, kernel="torch", shift=-1.5)
    expected = 0.5 * X @ X.mT + 2.0 * C - 1.5 * torch.eye(6, dtype=torch.float64)
    assert torch.allclose(got, expected, atol=1e-12, rtol=0)
    with pytest.raises(TypeError, match="symmetric_product: shift='1'; need a Python float"):
        symmetric_product(X, shift="1")


@needs_interpreter
def test_interpreted_triton_kernel_writes_only_its_output():
    """Rows and columns past s wrap onto valid rows for loading; nothing outside out[:s, :s]
    (here: a larger buffer's margin) may be written."""
    from steepest.kernels.syrk import syrk_triton

    X, _ = _inputs(1, 70, 90, torch.float16, "cpu", seed=5)
    buffer = torch.zeros(1, 80, 80, dtype=torch.float16)
    out = buffer[:, :70, :70]
    syrk_triton(X / 4, 1.0, None, 0.0, out, config="64x64w4s4")
    assert torch.count_nonzero(buffer[:, 70:, :]) == 0
    assert torch.count_nonzero(buffer[:, :, 70:]) == 0
    assert _relative_error(out, _oracle(X / 4, 1.0, None, 0.0)) < 2e-3


@needs_interpreter
@pytest.mark.parametrize("config", ["128x64w8s3", "64x64w4s4"])
@pytest.mark.parametrize("shape", [(2, 200, 64), (1, 136, 200), (3, 8, 24), (1, 264, 136)])
def test_interpreted_tma_loads_match_float64(config, shape):
    """The TMA path (tiles through descriptors, rows past s and columns past l zero-filled by
    the descriptor's bounds) on shapes that are not tile multiples: alone and with C and
    shift."""
    from steepest.kernels.syrk import syrk_triton, tma_usable

    batch, s, l = shape
    X, C = _inputs(batch, s, l, torch.float16, "cpu", s + l)
    X = X / 4
    assert tma_usable(X)
    for C_used, alpha, beta, shift in ((None, 1.3, 0.0, 0.0), (C, -0.6, 1.7, 2.5)):
        out = torch.full((batch, s, s), float("nan"), dtype=torch.float16)
        syrk_triton(X, alpha, C_used, beta, out, config=config, shift=shift, tma=True)
        ref = _oracle(X, alpha, C_used, beta) + shift * torch.eye(s, dtype=torch.float64)
        assert torch.isfinite(out).all(), "unwritten (NaN) output elements"
        assert _relative_error(out, ref) < 2e-3


def test_tma_usable_needs_16_byte_aligned_strides_and_offset():
    from steepest.kernels.syrk import tma_usable

    X = torch.zeros(2, 16, 24, dtype=torch.float16)
    assert tma_usable(X)
    assert not tma_usable(X.mT)  # column-major: pointer loads
    assert not tma_usable(torch.zeros(2, 16, 20, dtype=torch.float16))  # 40-byte rows
    assert not tma_usable(X[:, :, 1:])  # offset of 2 bytes
    assert tma_usable(X[:, 8:, :])  # offset of 8 rows: 384 bytes
    assert not tma_usable(X[:, :, ::2])  # no unit stride


@needs_interpreter
def test_interpreted_gram_msign_takes_the_symmetric_kernel(monkeypatch):
    """msign's Gram form with kernel="triton" on CPU through the interpreter, the CUDA
    requirement lifted: every symmetric product takes the Triton kernel, the products of two
    iterates stay full products, and the result matches the float64 iteration."""
    import steepest.kernels.syrk as syrk_module
    from steepest.polar.kernels import symmetric

    G = torch.randn(2, 40, 100, generator=torch.Generator().manual_seed(9))
    ref = msign(G.double(), dtype=torch.float64, form="gram")  # torch bmm: the oracle
    monkeypatch.setattr(symmetric, "_triton_unsupported", lambda X: None)
    calls = []
    launch = syrk_module.syrk_triton

    def spy(*args, **kwargs):
        calls.append(1)
        return launch(*args, **kwargs)

    monkeypatch.setattr(syrk_module, "syrk_triton", spy)
    out = msign(G, dtype=torch.float16, form="gram", kernel="triton")
    assert len(calls) == 7  # X X^T twice, R^2 in each of the 5 steps
    assert _relative_error(out, ref) < 2e-2


# ---------------------------------------------------------------- CUDA: the Triton kernels


@needs_cuda
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_c", [False, True])
@pytest.mark.parametrize("transposed", [False, True])
def test_triton_symmetric_product_matches_float64(shape, with_c, transposed):
    batch, s, l = shape
    seed = hash((shape, with_c, transposed)) % 2**31
    X, C = _inputs(batch, s, l, torch.bfloat16, "cuda", seed, transposed)
    alpha, beta = (2.03, -4.77) if with_c else (0.9, 0.0)
    C = C if with_c else None
    ref = _oracle(X, alpha, C, beta)
    for _ in range(2):  # fresh NaN poison each run
        out = torch.full((batch, s, s), float("nan"), dtype=torch.bfloat16, device="cuda")
        symmetric_product(X, alpha, C, beta, kernel="triton", out=out)
        torch.cuda.synchronize()
        assert torch.isfinite(out).all(), "unwritten (NaN) output elements"
        assert _relative_error(out, ref) < 1e-2
        assert torch.equal(out, out.mT), "the mirrored tiles must be exact transposes"


@needs_cuda
@pytest.mark.parametrize(
    "config", ["128x64w8s3", "128x64w8s4", "128x128w8s3", "128x64w4s4", "64x64w4s4"]
)
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 129, 191), (1, 256, 256), (3, 300, 520)])
def test_every_triton_tile_config_matches_float64(config, shape):
    from steepest.kernels.syrk import syrk_triton

    batch, s, l = shape
    X, C = _inputs(
        batch, s, l, torch.bfloat16, "cuda", seed=zlib.crc32(repr((config, shape)).encode())
    )
    for C_used, beta in ((None, 0.0), (C, 0.5)):
        out = torch.full((batch, s, s), float("nan"), dtype=torch.bfloat16, device="cuda")
        syrk_triton(X, -1.1, C_used, beta, out, config=config)
        torch.cuda.synchronize()
        assert torch.isfinite(out).all()
        assert _relative_error(out, _oracle(X, -1.1, C_used, beta)) < 1e-2


@needs_cuda
@pytest.mark.parametrize("config", ["128x64w8s3", "64x64w4s4"])
@pytest.mark.parametrize("shape", [(2, 8, 8), (2, 136, 200), (3, 296, 520), (2, 768, 2304)])
def test_triton_tma_and_pointer_loads_match_float64(config, shape):
    """Both load paths on the device, alone and with C and shift: each against the oracle."""
    from steepest.kernels.syrk import syrk_triton, tma_usable

    batch, s, l = shape
    X, C = _inputs(batch, s, l, torch.float16, "cuda", s * l)
    X = X / 4
    assert tma_usable(X)
    ref = _oracle(X, -1.1, C, 0.5) + 3.0 * torch.eye(s, dtype=torch.float64, device="cuda")
    for tma in (False, True):
        out = torch.full((batch, s, s), float("nan"), dtype=torch.float16, device="cuda")
        syrk_triton(X, -1.1, C, 0.5, out, config=config, shift=3.0, tma=tma)
        torch.cuda.synchronize()
        assert torch.isfinite(out).all()
        assert _relative_error(out, ref) < 2e-3


@needs_cuda
def test_triton_float16_matches_float64():
    X, C = _inputs(2, 150, 333, torch.float16, "cuda", seed=11)
    out = torch.full((2, 150, 150), float("nan"), dtype=torch.float16, device="cuda")
    symmetric_product(X / 8, 1.0, C, 0.25, kernel="triton", out=out)
    assert _relative_error(out, _oracle(X / 8, 1.0, C, 0.25)) < 1e-2


@needs_cuda
@pytest.mark.parametrize("shape", [(1, 130, 300), (4, 257, 257), (3, 640, 200), (2, 1100, 1300)])
def test_msign_with_triton_kernels_is_as_accurate_as_torch(shape):
    """Against the float64 iteration on the same bf16-rounded input, the Triton path's error is
    at most that of the torch (cuBLAS) bf16 path plus a small margin."""
    generator = torch.Generator().manual_seed(hash(shape) % 2**31)
    G = torch.randn(*shape, generator=generator).to("cuda", torch.bfloat16)
    ref = msign(G.double(), dtype=torch.float64, kernel="torch")
    err_triton = _relative_error(msign(G, kernel="triton"), ref)
    err_torch = _relative_error(msign(G, kernel="torch"), ref)
    assert err_triton < 1.5 * err_torch + 2e-3, (err_triton, err_torch)
    assert err_triton < 5e-2


@needs_cuda
def test_auto_routes_by_measured_rule():
    small = torch.randn(2, 64, 96, device="cuda", dtype=torch.bfloat16)
    large = torch.randn(1, AUTO_MIN_SIDE, AUTO_MIN_SIDE + 7, device="cuda", dtype=torch.bfloat16)
    assert resolve_kernel("auto", small) == "torch"
    assert resolve_kernel("auto", large) == "triton"
    assert resolve_kernel("auto", large.float()) == "torch"
    assert resolve_kernel("auto", large[:, :, : AUTO_MIN_SIDE - 1]) == "torch"


@needs_cuda
def test_odd_quintic_iteration_compiles_fullgraph_with_triton():
    generator = torch.Generator().manual_seed(12)
    X = (torch.randn(3, 200, 330, generator=generator) / 400).to("cuda", torch.bfloat16)
    schedule = polar_express_coefficients(5)
    eager = odd_quintic_iteration(X, schedule, kernel="triton")
    compiled = torch.compile(odd_quintic_iteration, fullgraph=True, dynamic=False)
    out = compiled(X, schedule, kernel="triton")
    assert _relative_error(out, eager.double()) < 1e-2
