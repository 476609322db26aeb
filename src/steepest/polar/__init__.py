"""Matrix sign / polar factor of batched matrices (seed 000_0ff94013880c6450.txt, Alg. 2)."""

import torch

__all__ = ["msign"]


def msign(G: torch.Tensor, backend: str = "svd", steps: int = 5, dtype=None, coefficients=None):
    """Temporary exact placeholder (svd only); replaced by the full backend set."""
    U, S, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    keep = (S > S.amax(-1, keepdim=True) * max(G.shape[-2:]) * 1e-15).to(U.dtype)
    return ((U * keep.unsqueeze(-2)) @ Vh).to(G.dtype)
