"""The cited identities between members, each against an independent oracle (fp64 SVD/eigh).

Every test steps two optimizers on the same fp64 parameters with the same random gradients
(set by hand) and compares the parameters; tolerances are stated per test. The identities are
from Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and Non-Riemannian
Manifolds" (2025).
"""

import math

import pytest
import torch

import steepest
from steepest.polar import polar_svd, randomized_polar

SHAPES = [(5, 5), (4, 7), (9, 3), (2, 4, 6)]
DT = torch.float64


def gradients(shape, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=DT) for _ in range(steps)]


def run(name, shape, grads, **hp):
    """The parameter after stepping optimizer(name) through the given gradients."""
    p = torch.nn.Parameter(torch.ones(shape, dtype=DT))
    opt = steepest.optimizer(name, [p], **hp)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_shampoo_without_accumulation_is_muon_svd(shape, momentum):
    """Cesista (2025) §3.3.2: (D D^T)^(-1/4) D (D^T D)^(-1/4) = U V^T. Tolerance 1e-9 in fp64."""
    grads = gradients(shape, 3, seed=1)
    common = dict(lr=0.1, momentum=momentum, nesterov=False, scale="spectral")
    shampoo = run("shampoo", shape, grads, accumulate=False, epsilon=0.0, **common)
    muon = run("muon", shape, grads, backend="svd", **common)
    torch.testing.assert_close(shampoo, muon, rtol=0, atol=1e-9)


def test_shampoo_accumulated_matches_eigh_oracle():
    """Two accumulated steps: Delta_2 = L^(-1/4) G_2 R^(-1/4), L = G1 G1^T + G2 G2^T (numpy
    eigh in fp64 as the oracle), scale 1. Tolerance 1e-9."""
    import numpy as np

    g1, g2 = gradients((4, 6), 2, seed=2)

    def root(A):
        lam, Q = np.linalg.eigh(A)
        keep = lam > lam.max() * 1e-12
        return (Q * np.where(keep, np.clip(lam, 1e-300, None) ** -0.25, 0)) @ Q.T

    G1, G2 = g1.numpy(), g2.numpy()
    step1 = root(G1 @ G1.T) @ G1 @ root(G1.T @ G1)
    L, R = G1 @ G1.T + G2 @ G2.T, G1.T @ G1 + G2.T @ G2
    step2 = root(L) @ G2 @ root(R)
    expected = 1.0 - 0.1 * (step1 + step2)
    got = run("shampoo", (4, 6), [g1, g2], lr=0.1, scale=1.0, epsilon=0.0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("shape", SHAPES)
def test_caspr_without_accumulation_tends_to_muon(shape):
    """Cesista (2025) §3.3.3: CASPR without accumulation is U diag(s / sqrt(s^2 + eps)) V^T (checked
    against the fp64 SVD to 1e-9), whose distance to U V^T is at most eps / (2 s_min^2) and
    goes to 0 with eps."""
    (g,) = gradients(shape, 1, seed=3)
    U, s, Vh = torch.linalg.svd(g, full_matrices=False)
    muon = run("muon", shape, [g], lr=1.0, momentum=0.0, backend="svd", scale=1.0)
    errors = []
    for eps in (1e-2, 1e-4, 1e-6, 1e-8):
        caspr = run("caspr", shape, [g], lr=1.0, scale=1.0, accumulate=False, epsilon=eps)
        closed = 1.0 - U @ torch.diag_embed(s / torch.sqrt(s**2 + eps)) @ Vh
        torch.testing.assert_close(caspr, closed, rtol=0, atol=1e-9)
        error = torch.linalg.matrix_norm(caspr - muon, ord=2).max().item()
        assert error <= eps / (2 * s.min().item() ** 2) + 1e-12
        errors.append(error)
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-6


@pytest.mark.parametrize("shape", SHAPES)
def test_schatten_p2_is_nsgd_and_pinf_is_specgd(shape):
    """Cesista (2025) §4.2: Schatten p = 2 dualizes to G / ||G||_F (NSGD), p = inf to U V^T
    (spectral descent). Same momentum and scale on both sides; tolerance 1e-10."""
    grads = gradients(shape, 3, seed=4)
    common = dict(lr=0.05, momentum=0.9, nesterov=True, scale=0.7)
    p2 = run("schatten", shape, grads, p=2, **common)
    nsgd = run("nsgd", shape, grads, **common)
    torch.testing.assert_close(p2, nsgd, rtol=0, atol=1e-10)
    pinf = run("schatten", shape, grads, p=math.inf, **common)
    specgd = run("specgd", shape, grads, **common)
    torch.testing.assert_close(pinf, specgd, rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape", [(5, 5), (4, 7), (2, 3, 4)])
def test_steepest_descent_under_sign_is_signsgd(shape):
    """Unconstrained steepest descent (uscion) under the Sign norm, radius 1, no momentum,
    equals signsgd; and both equal the hand-computed p - lr sum_t sign(g_t). Exact."""
    grads = gradients(shape, 3, seed=5)
    uscion = run("uscion", shape, grads, norm="sign", radius=1.0, momentum=0.0, lr=0.01)
    signsgd = run("signsgd", shape, grads, lr=0.01)
    expected = torch.ones(shape, dtype=DT)
    for g in grads:
        expected = expected - 0.01 * torch.sign(g)
    assert torch.equal(uscion, signsgd)
    torch.testing.assert_close(signsgd, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", ["svd", "polar_express"])
def test_uscion_spectral_is_muon_with_the_same_scale(shape, backend):
    """Scion's Spectral LMO in RMS units is sqrt(d_out/d_in) U V^T: uscion with radius 1
    equals Muon with scale="spectral"; with a plain Spectral() norm and radius r it equals
    Muon with scale=r (svd: 1e-10; polar_express: the same iteration, 1e-10)."""
    grads = gradients(shape, 3, seed=6)
    common = dict(lr=0.05, momentum=0.9, nesterov=False, backend=backend)
    uscion = run("uscion", shape, grads, norm="spectral", radius=1.0, **common)
    muon = run("muon", shape, grads, scale="spectral", **common)
    torch.testing.assert_close(uscion, muon, rtol=0, atol=1e-10)
    if backend == "svd":
        plain = run("uscion", shape, grads, norm=steepest.norms.Spectral(), radius=0.3, **common)
        muon = run("muon", shape, grads, scale=0.3, **common)
        torch.testing.assert_close(plain, muon, rtol=0, atol=1e-10)


def test_scion_constrained_step_closed_form():
    """Constrained Scion: W <- (1 - lr) W - lr rho dualize(D); with the Sign norm and momentum
    0, W1 = (1 - lr) W0 - lr rho sign(G). Exact."""
    (g,) = gradients((3, 4), 1, seed=7)
    got = run("scion", (3, 4), [g], norm="sign", radius=2.0, lr=0.1, momentum=0.0)
    expected = 0.9 * torch.ones(3, 4, dtype=DT) - 0.1 * 2.0 * torch.sign(g)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)


def test_scion_vectors_use_the_rms_norm():
    """A bias under (u)Scion: p1 = p0 - lr rho sqrt(n) g / ||g||_2 (RMS dualizer); 1e-12."""
    (g,) = gradients((6,), 1, seed=15)
    got = run("uscion", (6,), [g], lr=0.1, radius=2.0, momentum=0.0)
    expected = 1.0 - 0.1 * 2.0 * math.sqrt(6) * g / torch.linalg.vector_norm(g)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_polargrad_is_nuclear_norm_times_polar_factor():
    """PolarGrad with momentum 0 and the svd backend: W1 = W0 - lr ||G||_nuc U V^T (fp64 SVD
    oracle; 1e-10)."""
    (g,) = gradients((4, 6), 1, seed=8)
    got = run("polargrad", (4, 6), [g], lr=0.01, momentum=0.0, backend="svd")
    U, s, Vh = torch.linalg.svd(g, full_matrices=False)
    torch.testing.assert_close(got, 1.0 - 0.01 * s.sum() * (U @ Vh), rtol=0, atol=1e-10)


def test_normuon_matches_the_paper_equations():
    """NorMuon, two steps, svd backend, against the paper's equations written out in fp64:
    v = b2 v + (1 - b2) mean_cols(O^2), O^ = O / (sqrt(v) + eps), u = 0.2 sqrt(mn) O^ / ||O^||_F
    (equal to our norm-restoring form for full-rank O, scale "rms"). Tolerance 1e-10."""
    shape, b1, b2, eps, lr = (4, 6), 0.9, 0.95, 1e-8, 0.01
    grads = gradients(shape, 2, seed=9)
    got = run("normuon", shape, grads, lr=lr, momentum=b1, beta2=b2, eps=eps, backend="svd")
    W, M, v = torch.ones(shape, dtype=DT), torch.zeros(shape, dtype=DT), torch.zeros(4, dtype=DT)
    for g in grads:
        M = b1 * M + (1 - b1) * g
        U, _, Vh = torch.linalg.svd(M, full_matrices=False)
        O = U @ Vh
        v = b2 * v + (1 - b2) * (O**2).mean(dim=1)
        O_hat = O / (v.sqrt() + eps)[:, None]
        W = W - lr * 0.2 * math.sqrt(24) * O_hat / torch.linalg.norm(O_hat)
    torch.testing.assert_close(got, W, rtol=0, atol=1e-10)


def test_soap_repeated_gradient_is_spectral_descent():
    """SOAP's first call only fits L, R and the basis (the weights stay); with the same G again,
    Q_L, Q_R are G's singular vectors, so Q_L^T G Q_R = diag(s) and the bias-corrected Adam
    step is diag(s / (s + eps)) ~ I: N = U V^T up to eps / s. Checked against one Muon step
    (svd backend) to 1e-6 in fp64."""
    (g,) = gradients((5, 5), 1, seed=10)
    assert torch.equal(run("soap", (5, 5), [g], lr=0.01, eps=1e-8), torch.ones(5, 5, dtype=DT))
    soap = run("soap", (5, 5), [g, g], lr=0.01, eps=1e-8)
    muon = run("muon", (5, 5), [g], lr=0.01, momentum=0.0, backend="svd", scale=1.0)
    torch.testing.assert_close(soap, muon, rtol=0, atol=1e-6)


def test_soap_four_steps_match_a_numpy_oracle():
    """SOAP (Vyas et al., arXiv 2409.11321, Alg. 3, in the order of their implementation)
    written out in numpy fp64 with the basis refreshed every step: the first call fits L, R
    and the basis; each later call rotates G and M with the previous basis, steps, then
    updates L, R and the basis. Eigenvector signs cancel in N; square gradients make L and R
    full rank from the first call (the basis of a null space is arbitrary, and the next
    gradient's part there would depend on it). Tolerance 1e-9."""
    import numpy as np

    b1, b2, eps, lr = 0.9, 0.95, 1e-8, 0.01
    grads = gradients((5, 5), 4, seed=14)
    got = run("soap", (5, 5), grads, lr=lr, betas=(b1, b2), eps=eps, precondition_every=1)
    W = np.ones((5, 5))
    L, R, M, V = np.zeros((5, 5)), np.zeros((5, 5)), np.zeros((5, 5)), np.zeros((5, 5))
    QL = QR = None
    for t, g in enumerate(grads):
        G = g.numpy()
        if t > 0:
            M = b1 * M + (1 - b1) * G
            V = b2 * V + (1 - b2) * (QL.T @ G @ QR) ** 2
            step = (QL.T @ M @ QR / (1 - b1**t)) / (np.sqrt(V / (1 - b2**t)) + eps)
            W = W - lr * QL @ step @ QR.T
        L, R = b2 * L + (1 - b2) * G @ G.T, b2 * R + (1 - b2) * G.T @ G
        QL, QR = np.linalg.eigh(L)[1], np.linalg.eigh(R)[1]
    np.testing.assert_allclose(got.numpy(), W, rtol=0, atol=1e-9)


def test_lion_two_steps_by_hand():
    """Lion: u = sign(b1 m + (1 - b1) g), m <- b2 m + (1 - b2) g; exact."""
    g1, g2 = gradients((3, 5), 2, seed=11)
    got = run("lion", (3, 5), [g1, g2], lr=0.1, betas=(0.9, 0.99))
    m = 0.01 * g1
    expected = 1.0 - 0.1 * torch.sign(g1) - 0.1 * torch.sign(0.9 * m + 0.1 * g2)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)


def test_cautious_weight_decay_masks_by_sign_agreement():
    """arXiv 2510.12402: p <- p - lr (u + wd 1[u p >= 0] p); signsgd u = sign(g); exact."""
    p0 = torch.tensor([[1.0, -2.0, 3.0, -4.0]], dtype=DT)
    g = torch.tensor([[1.0, 1.0, -1.0, -1.0]], dtype=DT)
    p = torch.nn.Parameter(p0.clone())
    opt = steepest.SignSGD([p], lr=0.1, weight_decay=0.5, cautious_weight_decay=True)
    p.grad = g
    opt.step()
    mask = torch.tensor([[1.0, 0.0, 0.0, 1.0]], dtype=DT)  # sign(g) agrees with sign(p)
    torch.testing.assert_close(p.detach(), p0 - 0.1 * (torch.sign(g) + 0.5 * mask * p0))


@pytest.mark.parametrize("shape", [(6, 6), (5, 9), (3, 8, 4)])
def test_randomized_polar_is_exact_at_full_rank_and_on_low_rank_inputs(shape):
    """randomized_svd (LiMuon) at rank >= min(m, n) is U V^T (svd oracle, 1e-9 in fp64); on an
    exactly rank-2 input with rank=2 it is that input's U_2 V_2^T."""
    gen = torch.Generator().manual_seed(12)
    G = torch.randn(shape, generator=gen, dtype=DT)
    torch.testing.assert_close(
        randomized_polar(G, rank=min(shape[-2:])), polar_svd(G), atol=1e-9, rtol=0
    )
    low = torch.randn(*shape[:-1], 2, generator=gen, dtype=DT) @ torch.randn(
        *shape[:-2], 2, shape[-1], generator=gen, dtype=DT
    )
    torch.testing.assert_close(randomized_polar(low, rank=2), polar_svd(low), atol=1e-9, rtol=0)
    full = run("muon", shape, [G], backend="randomized_svd", rank=min(shape[-2:]), momentum=0.0)
    svd = run("muon", shape, [G], backend="svd", momentum=0.0)
    torch.testing.assert_close(full, svd, atol=1e-9, rtol=0)


def test_randomized_polar_keeps_the_top_singular_directions():
    """rank r < min(m, n) on a matrix with a decaying spectrum: the top-r polar factor
    U_r V_r^T of the fp64 SVD, to 1e-6 (spectral gap s_r / s_(r+1) = 10)."""
    gen = torch.Generator().manual_seed(13)
    U, _ = torch.linalg.qr(torch.randn(10, 10, generator=gen, dtype=DT))
    V, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=DT))
    s = torch.tensor([5.0, 4.0, 3.0, 0.3, 0.2, 0.1, 0.05, 0.01], dtype=DT)
    G = U[:, :8] @ torch.diag(s) @ V.T
    torch.testing.assert_close(
        randomized_polar(G, rank=3), U[:, :3] @ V[:, :3].T, atol=1e-6, rtol=0
    )


def fused_and_separate(name, rows, n, fused_group, seed, **options):
    """Three steps of `name` on one fused (sum(rows), n) fp64 weight (extra group keys
    `fused_group`) and on its row pieces as separate weights, with the same gradients.
    Returns (fused weight, the pieces concatenated)."""
    torch.manual_seed(seed)
    fused = torch.nn.Parameter(torch.randn(sum(rows), n, dtype=DT))
    parts = [torch.nn.Parameter(p.detach().clone()) for p in fused.detach().split(rows)]
    one = steepest.optimizer(
        name, [{"params": [fused], "algorithm": name, **fused_group}], **options
    )
    separate = steepest.optimizer(name, parts, **options)
    for g in gradients((sum(rows), n), 3, seed=seed + 1):
        fused.grad = g.clone()
        for p, piece in zip(parts, g.split(rows), strict=True):
            p.grad = piece.clone()
        one.step()
        separate.step()
    return fused.detach(), torch.cat([p.detach() for p in parts])


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("normuon", dict(backend="svd", beta2=0.9)),
        ("normuon", dict(backend="polar_express", polar_dtype=DT, beta2=0.9)),
        ("shampoo", dict(momentum=0.9)),
        ("caspr", dict(accumulate=False)),
        ("soap", dict(precondition_every=2)),
    ],
)
def test_row_blocks_equal_separate_parameters(name, options):
    """A fused (9, 4) weight with unequal row blocks [2, 3, 4] (a GQA-style QKV) takes exactly
    the steps of three separate (2, 4), (3, 4), (4, 4) weights: each block is dualized (or
    preconditioned) as its own matrix with its own statistics, shape scale and norm ratio.
    fp64, three steps, to 1e-12."""
    blocks = [2, 3, 4]
    fused, separate = fused_and_separate(
        name, blocks, 4, {"blocks": blocks}, 11, lr=0.02, weight_decay=0.1, **options
    )
    torch.testing.assert_close(fused, separate, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["shampoo", "caspr", "soap", "normuon"])
def test_batch_view_of_equal_row_blocks_equals_separate_parameters(name):
    """The other spelling of k equal blocks: a fused (k d, n) weight under the batch view
    matrix_view=(k, d, n) takes exactly the steps of k separate (d, n) weights. fp64, three
    steps, to 1e-10 (SOAP 1e-7: see its numpy-oracle test on round-off r / (|r| + eps) at step
    1; a batched eigh rounds differently). Blocks of 5 x 4: every statistic's null space has
    dimension <= 1, so eigenvectors are unique up to sign (SOAP's accumulated second moment
    would depend on the basis eigh picks inside a larger null space)."""
    k, d, n = 3, 5, 4
    fused, separate = fused_and_separate(name, [d] * k, n, {"matrix_view": (k, d, n)}, 13, lr=0.01)
    atol = 1e-7 if name == "soap" else 1e-10
    torch.testing.assert_close(fused, separate, rtol=0, atol=atol)
