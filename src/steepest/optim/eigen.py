"""Eigendecomposition of preconditioner statistics that does not raise in the middle of training.

torch.linalg.eigh raises when its solver does not converge (in float32 on nearly singular or
badly scaled statistics such as Shampoo's L and R: "linalg.eigh: The algorithm failed to
converge because the input matrix is ill-conditioned"). Shampoo and SOAP refresh their roots and
bases from eigh every few steps, so one such failure would end a training run.
"""

from __future__ import annotations

import torch

__all__ = ["JITTERS", "symmetric_eigh"]

#: Relative diagonal jitters tried in float64 after plain float32/float64 eigh fail: A + j *
#: (trace(A) / k) I, for each j in turn (a shift of the spectrum that keeps the eigenvectors).
JITTERS = (1e-12, 1e-9, 1e-6)


def symmetric_eigh(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(eigenvalues, eigenvectors) of symmetric (..., k, k) A in A's working dtype, or None.

    Tries, in order: eigh in A's dtype (float32 for float16/bfloat16, which eigh lacks), eigh
    in float64, then eigh in float64 of A + j * mean(diag A) I for each j in JITTERS (the
    eigenvalues returned have the jitter taken off again). Returns None when every attempt
    fails or A is not finite, so the caller can keep its previous root or basis.

    Args:
        A: real symmetric (..., k, k) tensor (only its lower triangle is read by eigh).

    Returns:
        (lam, Q) with lam ascending (..., k) and Q (..., k, k) in float32 for 16-bit A, else
        A's dtype; or None.
    """
    work = A.float() if A.dtype in (torch.float16, torch.bfloat16) else A
    if not bool(torch.isfinite(work).all()):
        return None
    try:
        lam, Q = torch.linalg.eigh(work)
        return lam, Q
    except RuntimeError:  # torch.linalg.LinAlgError: the solver did not converge
        pass
    wide = work.double()
    eye = torch.eye(wide.shape[-1], dtype=wide.dtype, device=wide.device)
    level = wide.diagonal(dim1=-2, dim2=-1).abs().mean(-1)[..., None, None]
    for jitter in (0.0, *JITTERS):
        shift = jitter * level
        try:
            lam, Q = torch.linalg.eigh(wide + shift * eye)
        except RuntimeError:
            continue
        lam = lam - shift.squeeze(-1)
        return lam.to(work.dtype), Q.to(work.dtype)
    return None
