"""rescale_rows (the owner's rare rescale of a sharded fused step's row parts) against float64
products: the torch path on CPU, the Triton kernel in Triton's interpreter (tests/conftest.py),
the CUDA kernel on a GPU."""

import os

import pytest
import torch

from steepest.optim.fast.row_scales import rescale_rows
from steepest.polar.kernels import triton_available

INTERPRETED = triton_available() and os.environ.get("TRITON_INTERPRET") == "1"


def case(device="cpu"):
    """Three float16 (5, 300) matrices: the first with row factors 1/2 and 1/8 on two row
    ranges, the second all ones (and a NaN entry, which stays as it is), the third 2^-20 on
    one row (its products land in float16's subnormals)."""
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(3, 5, 300, generator=gen).to(torch.float16)
    X[1, 2, 7] = float("nan")
    factors = torch.ones(3, 5)
    factors[0, :2], factors[0, 2:] = 0.5, 0.125
    factors[2, 4] = 2.0**-20
    return X.to(device), factors.to(device)


def expected(X, factors):
    return (X.double() * factors.double()[..., None]).to(torch.float16)


@pytest.mark.parametrize("kernel", ["torch", "interpreted"])
def test_rows_take_their_factors_and_all_one_matrices_stay(kernel):
    if kernel == "interpreted" and not INTERPRETED:
        pytest.skip("needs triton and TRITON_INTERPRET=1 (tests/conftest.py, no GPU)")
    X, factors = case()
    want = expected(X, factors)
    if kernel == "torch":
        assert rescale_rows(X, factors) is X
    else:
        from steepest.kernels.row_scale import rescale_rows_triton

        rescale_rows_triton(X, factors)
    assert torch.equal(X[0], want[0]) and torch.equal(X[2], want[2])
    assert torch.equal(X[1].isnan(), want[1].isnan())
    assert torch.equal(X[1].nan_to_num(), want[1].nan_to_num())


def test_errors_name_the_argument():
    X, factors = case()
    before = X.clone()
    with pytest.raises(ValueError, match=r"kernel='fast' is unknown"):
        rescale_rows(X, factors, kernel="fast")
    with pytest.raises(ValueError, match=r"need a \(K, rows, cols\) X and \(K, rows\) float32"):
        rescale_rows(X, factors[:, :4])
    with pytest.raises(ValueError, match=r"need a \(K, rows, cols\) X and \(K, rows\) float32"):
        rescale_rows(X, factors.double())
    with pytest.raises(ValueError, match="kernel='triton' needs a contiguous CUDA X"):
        rescale_rows(X, factors, kernel="triton")
    assert torch.equal(X.nan_to_num(), before.nan_to_num())


@pytest.mark.cuda
def test_cuda_kernel_matches_float64_also_compiled():
    X, factors = case("cuda")
    want = expected(X, factors)
    torch.compile(rescale_rows, fullgraph=True)(X, factors, "triton")
    assert torch.equal(X.nan_to_num(), want.nan_to_num())
