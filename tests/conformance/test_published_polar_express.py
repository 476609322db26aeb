"""The Polar Express schedule against the list published in Amsel, Persson, Musco, Gower, "The
Polar Express: Optimal Matrix Sign Methods and Their Application to the Muon Algorithm",
arXiv 2505.16932, Algorithm 1 (degree 5, lower bound 1e-3), and that algorithm's iteration."""

import torch
from conformance_helpers import FLOAT64

import steepest
from steepest.polar import msign, odd_quintic_iteration, polar_express_coefficients

#: Algorithm 1's list (before its safety factor), as printed in the paper.
PUBLISHED = [
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
]


def _safe(triple, safety=1.01):
    a, b, c = triple
    return (a / safety, b / safety**3, c / safety**5)


def _close(got, expected, rtol):
    for g, e in zip(got, expected, strict=True):
        for x, y in zip(g, e, strict=True):
            assert abs(x - y) <= rtol * abs(y), (g, e)


def test_raw_coefficients_match_the_published_list():
    """safety=1.0: the minimax polynomials themselves, 1e-13 relative on the first six (measured
    2e-15), 1e-7 on the last two (the degree-5 Pade limit, solved to 5e-9)."""
    raw = polar_express_coefficients(8, safety=1.0)
    _close(raw[:6], PUBLISHED[:6], 1e-13)
    _close(raw[6:], PUBLISHED[6:], 1e-7)


def test_safety_factor_placement():
    """Both divide every step but the last by 1.01 (p(x / 1.01)). Algorithm 1 fixes "the last"
    as its 8th entry, whatever the number of steps; steepest omits the factor on the last step
    that runs (§4.4 allows it), so 5 steps differ in the 5th triple."""
    _close(polar_express_coefficients(8), [_safe(t) for t in PUBLISHED[:7]] + PUBLISHED[7:], 1e-7)
    five = polar_express_coefficients(5)
    _close(five[:4], [_safe(t) for t in PUBLISHED[:4]], 1e-13)
    _close(five[4:], PUBLISHED[4:5], 1e-13)


def _algorithm_1(G, steps):
    """Algorithm 1 in float64: X = G / (1.01 ||G||_F + 1e-7), tall matrices transposed, the
    safety-scaled list (its last entry repeated), X <- a X + (b A + c A^2) X."""
    schedule = [_safe(t) for t in PUBLISHED[:-1]] + PUBLISHED[-1:]
    schedule = schedule[:steps] + schedule[-1:] * max(0, steps - len(schedule))
    tall = G.shape[-2] > G.shape[-1]
    X = G.mT if tall else G
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * 1.01 + 1e-7)
    for a, b, c in schedule:
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall else X


def test_msign_reproduces_algorithm_1():
    """8 steps (every schedule entry): backend="polar_express" with eps=1e-7 is Algorithm 1.
    5 steps: Algorithm 1 exactly is a callable backend running the paper's safety-scaled list
    (callables get G / (1.01 ||G||_F + eps)), which is how steepest.Muon reproduces it."""
    G = torch.randn(3, 40, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eight = msign(G, "polar_express", steps=8, eps=1e-7, dtype=torch.float64)
    assert ((eight - _algorithm_1(G, 8)).norm() / eight.norm()).item() < FLOAT64
    paper = [_safe(t) for t in PUBLISHED[:5]]
    five = msign(
        G,
        lambda X, steps: odd_quintic_iteration(X, paper[:steps]),
        steps=5,
        eps=1e-7,
        dtype=torch.float64,
    )
    assert ((five - _algorithm_1(G, 5)).norm() / five.norm()).item() < FLOAT64
    p = torch.nn.Parameter(torch.zeros(40, 24, dtype=torch.float64))
    opt = steepest.Muon(
        [p],
        lr=1.0,
        momentum=0.0,
        nesterov=False,
        scale=1.0,
        polar_dtype=torch.float64,
        backend=lambda X, steps: odd_quintic_iteration(X, paper[:steps]),
    )
    p.grad = G[0].clone()
    opt.step()
    expected = -_algorithm_1(G[0], 5)
    assert ((p.detach() - expected).norm() / expected.norm()).item() < 1e-6  # eps=0 vs 1e-7


def test_pytorch_optimizer_polar_express_list_is_another_schedule():
    """pytorch-optimizer's ns_coeffs="polar_express" is not Algorithm 1's safety-scaled list
    (its first triple differs by more than 0.3%): reproduce it with coefficients=<that list>."""
    import pytest

    pytest.importorskip("pytorch_optimizer", reason="pytorch-optimizer is not installed")
    from pytorch_optimizer.optimizer.utils.matrix import NS_COEFFICIENTS

    theirs = NS_COEFFICIENTS["polar_express"][0]
    ours = _safe(PUBLISHED[0])
    assert abs(theirs[0] - ours[0]) > 3e-3 * ours[0]
