"""bfloat16 Newton-Schulz / Polar Express on the torch path: as accurate as the usual formulation.

Oracle: the same iteration in float64 from the same bfloat16 input. Reference formulation: the
products of torch.optim.Muon's Newton-Schulz (A = X X^T; B = b A + c A^2 as one baddbmm;
X = a X + B X as one baddbmm), each rounded once. Tolerance: steepest's mean relative error over
four seeds is at most 1.25 times the reference's, per shape and schedule (measured: 1.00 on CPU;
the earlier P = a I + B rounded twice gave 1.5-2.9).
"""

import pytest
import torch

from steepest.polar import msign, odd_quintic_iteration, polar_express_coefficients
from steepest.polar.kernels import symmetric_product
from steepest.polar.newton_schulz import CUBIC, JORDAN

SCHEDULES = {
    "jordan": [JORDAN] * 5,
    "polar_express": polar_express_coefficients(5),
    "cubic": [CUBIC] * 6,
}
# (batch, s, l) with s <= l as the iteration takes it: square, wide, from tall, batched, tiny
SHAPES = [
    (1, 48, 48),
    (1, 64, 256),
    (1, 64, 256),
    (4, 32, 96),
    (8, 16, 16),
    (2, 5, 7),
    (1, 100, 300),
]


def _reference(X, coefficients):
    """torch.optim.Muon's Newton-Schulz products, batched."""
    for a, b, c in coefficients:
        A = torch.bmm(X, X.mT)
        B = b * A if c == 0.0 else torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a)
    return X


def _inputs(shape, seed, tall=False):
    batch, s, l = shape
    g = torch.Generator().manual_seed(seed)
    G = (
        torch.randn(batch, l, s, generator=g, dtype=torch.float64).mT
        if tall
        else (torch.randn(batch, s, l, generator=g, dtype=torch.float64))
    )
    X = G / (1.01 * G.norm(dim=(-2, -1), keepdim=True))
    return X.to(torch.bfloat16)


def _error(Y, ref):
    return ((Y.double() - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("index", range(len(SHAPES)))
def test_bfloat16_iteration_is_as_accurate_as_the_usual_formulation(schedule, index):
    coefficients = SCHEDULES[schedule]
    shape, tall = SHAPES[index], index == 2  # the third shape as a transposed tall matrix
    ours = usual = 0.0
    for seed in range(4):
        X = _inputs(shape, seed, tall)
        oracle = _reference(X.double(), coefficients)
        ours += _error(odd_quintic_iteration(X, coefficients, kernel="torch"), oracle)
        usual += _error(_reference(X, coefficients), oracle)
    assert ours <= 1.25 * usual, (schedule, shape, ours / 6, usual / 6)


def test_bfloat16_msign_matches_torch_muon_accuracy():
    """End to end against torch.optim.Muon's own function on a 48 x 48 Gaussian, 5 Jordan steps:
    both normalize by the Frobenius norm, so the float64 msign is the common oracle."""
    muon = pytest.importorskip("torch.optim._muon", reason="torch.optim.Muon needs torch >= 2.9")
    zeropower = getattr(muon, "_zeropower_via_newtonschulz", None)
    if zeropower is None:
        pytest.skip("torch.optim._muon has no _zeropower_via_newtonschulz in this torch")
    ours = theirs = 0.0
    for seed in range(4):
        G = torch.randn(48, 48, generator=torch.Generator().manual_seed(seed))
        Gb = G.to(torch.bfloat16)
        oracle = msign(Gb.double(), "newton_schulz", steps=5, dtype=torch.float64)
        ours += _error(msign(Gb, "newton_schulz", steps=5, dtype=torch.bfloat16), oracle)
        theirs += _error(zeropower(Gb, JORDAN, 5, 1e-7), oracle)
    assert ours <= 1.25 * theirs, (ours / 4, theirs / 4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_epilogue_rounds_once(dtype):
    """symmetric_product's torch path with C and a shift: within one rounding of the float64
    result (half an ulp of the output, relative 2^-8 for bfloat16, 2^-11 for float16)."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 24, 24, generator=g, dtype=torch.float64)
    A = ((A + A.mT) / 8).to(dtype)
    a, b, c = polar_express_coefficients(1, safety=1.0)[0]
    got = symmetric_product(A, c, A, b, kernel="torch", shift=a).double()
    Ad = A.double()
    exact = c * Ad @ Ad + b * Ad + a * torch.eye(24, dtype=torch.float64)
    ulp = 2.0 ** (-8 if dtype == torch.bfloat16 else -11)
    assert ((got - exact).abs() <= ulp * exact.abs() + 1e-6).all()
