"""orthogonality_error against hand-built cases with known singular vectors and values."""

import pytest
import torch
from polar_helpers import with_spectrum

from steepest.polar import msign, orthogonality_error


def test_exact_polar_factor_has_zero_error_and_scaled_one_has_known_error():
    gen = torch.Generator().manual_seed(0)
    G, U, V = with_spectrum([2.0, 1.0, 0.5], 5, 4, generator=gen)
    assert orthogonality_error(G, U @ V.mT).item() < 1e-12
    assert orthogonality_error(G, 0.7 * U @ V.mT).item() == pytest.approx(0.3, abs=1e-12)
    # per-direction values 1.2, 0.9, 0.6 -> worst |sigma - 1| = 0.4
    O = (U * torch.tensor([1.2, 0.9, 0.6], dtype=torch.float64)) @ V.mT
    assert orthogonality_error(G, O).item() == pytest.approx(0.4, abs=1e-12)


def test_only_nonzero_directions_of_g_count():
    gen = torch.Generator().manual_seed(1)
    s = torch.tensor([1.0, 0.3, 0.0, 0.0], dtype=torch.float64)
    G, U, V = with_spectrum(s, 6, 4, generator=gen)
    # O is U V^T on the two nonzero directions and 0.1 on the two null ones: error 0
    O = (U * torch.tensor([1.0, 1.0, 0.1, 0.1], dtype=torch.float64)) @ V.mT
    assert orthogonality_error(G, O).item() < 1e-12
    # a zero G has no direction to judge
    assert orthogonality_error(torch.zeros(3, 3), torch.ones(3, 3)).item() == 0.0


def test_batched_returns_one_value_per_matrix():
    gen = torch.Generator().manual_seed(2)
    G, U, V = with_spectrum([1.0, 0.5], 4, 3, batch=(2, 3), generator=gen)
    scales = torch.linspace(0.5, 1.0, 6, dtype=torch.float64).reshape(2, 3, 1, 1)
    err = orthogonality_error(G, scales * (U @ V.mT))
    assert err.shape == (2, 3) and err.dtype == torch.float64
    assert torch.allclose(err, 1.0 - scales[..., 0, 0], atol=1e-12)
    G[1, 2] = 0.0
    assert orthogonality_error(G, scales * (U @ V.mT))[1, 2].item() == 0.0


def test_svd_backend_on_random_float32_input_is_orthogonal():
    gen = torch.Generator().manual_seed(3)
    G = torch.randn(3, 7, 5, generator=gen)
    assert orthogonality_error(G, msign(G, "svd")).max() < 1e-5


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same shape"):
        orthogonality_error(torch.randn(3, 4), torch.randn(4, 3))
    with pytest.raises(ValueError, match="rtol=2.0"):
        orthogonality_error(torch.randn(3, 4), torch.randn(3, 4), rtol=2.0)
    with pytest.raises(TypeError, match="floating"):
        orthogonality_error(torch.ones(3, 3, dtype=torch.int64), torch.ones(3, 3))
