"""Stage 3 for the spectral members: the polar factor of a stack under the group's backend.

``polar_precondition="aol"`` rescales each matrix before the iteration (Turbo-Muon,
steepest.polar.aol), with a Polar Express schedule for lower bound AOL_LOWER_BOUND; pair it
with one step fewer (``steps=4``).

Backends: those of ``steepest.polar.msign`` ("svd", "newton_schulz", "polar_express" or a
callable, with the group's ``polar_form``: "direct", "gram" or "auto", and ``polar_kernel``:
"auto", "torch" or "triton", msign's ``kernel``) and "randomized_svd"
(a rank-``rank`` polar factor, ``steepest.polar.randomized_polar``, for low-rank updates;
arXiv 2509.14562).
"""

from __future__ import annotations

import math
from typing import Any, Final

import torch

from steepest.norms import Norm, Spectral
from steepest.polar import BACKENDS, PolarConfig, msign_normed, randomized_polar
from steepest.polar.kernels import KERNELS

from .registry import Group

__all__ = [
    "POLAR_BACKENDS",
    "POLAR_DEFAULTS",
    "GroupSpectral",
    "check_polar",
    "compute_dtype",
    "polar",
]

POLAR_BACKENDS = (*BACKENDS, "randomized_svd")

#: The group keys read by ``polar``.
POLAR_DEFAULTS: dict[str, Any] = {
    "backend": "polar_express",
    "coefficients": None,
    "steps": 5,
    "polar_dtype": None,
    "rank": None,
    "polar_form": "auto",
    "polar_precondition": None,
    "polar_kernel": "auto",
}

#: The lower bound of the Polar Express schedule after AOL preconditioning: of 1e-3, 3e-3,
#: 1e-2 and 3e-2, 1e-2 gave the lowest float32 error with 4 steps on Gaussian 64 x 64 and
#: 64 x 256 matrices (tests/polar/test_aol.py).
AOL_LOWER_BOUND: Final = 1e-2


def check_polar(who: str, hp: Group, prefix: str = "") -> None:
    """Raise ValueError naming a bad backend, rank, steps, coefficients, polar_dtype,
    polar_form or polar_kernel."""
    backend = hp["backend"]
    kernel = hp.get("polar_kernel", "auto")
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(
            f"{who}: {prefix}polar_kernel={kernel!r} is unknown; use one of {list(KERNELS)}"
        )
    if not (callable(backend) or (isinstance(backend, str) and backend in POLAR_BACKENDS)):
        raise ValueError(
            f"{who}: {prefix}backend={backend!r} is unknown; use one of {list(POLAR_BACKENDS)} "
            "or a callable (X, steps) -> X"
        )
    rank = hp.get("rank")
    if backend == "randomized_svd":
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(
                f"{who}: {prefix}rank={rank!r}; backend='randomized_svd' needs an int rank >= 1"
            )
        return
    if rank is not None:
        raise ValueError(
            f"{who}: {prefix}rank={rank!r} applies only to backend='randomized_svd'; pass rank=None"
        )
    if callable(backend):
        return
    try:  # the configuration object checks steps / dtype / coefficients / form
        PolarConfig(
            backend=backend,
            steps=hp["steps"],
            dtype=hp["polar_dtype"],
            coefficients=hp["coefficients"],
            form=hp.get("polar_form", "direct"),
            precondition=hp.get("polar_precondition"),
        )
    except (ValueError, TypeError) as err:
        raise ValueError(f"{who}: {str(err).removeprefix('msign: ')}") from None


def _native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


#: A fact of the machine, read once: whether the CPU has native bfloat16 matrix products.
NATIVE_BF16 = _native_bf16()


def compute_dtype(group: Group, X: torch.Tensor) -> torch.dtype | None:
    """The polar iteration's dtype for the stack X: the group's ``polar_dtype``; when None,
    bfloat16 for a 32- or 16-bit stack on a CPU with native bfloat16 matrix products (about
    twice as fast as float32 there; the 5-step Polar Express factor's error against the
    exact U V^T grows from 8.9% to 9.1%), else msign's default (None: bfloat16 on CUDA,
    float16 for its Gram form; float32 elsewhere)."""
    dtype: torch.dtype | None = group["polar_dtype"]
    if dtype is None and X.device.type == "cpu" and X.dtype != torch.float64 and NATIVE_BF16:
        return torch.bfloat16
    return dtype


def polar(
    X: torch.Tensor,
    group: Group,
    frobenius: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    unit_scaled: bool = False,
) -> torch.Tensor:
    """msign(X) = U V^T of every matrix of the stack X with the group's backend (a new tensor;
    ``frobenius``, ``out_dtype`` and ``unit_scaled`` as in msign_normed, for the fused step).

    References: Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and
    Non-Riemannian Manifolds" (2025), Alg. 2 and §3.3.1; arXiv 2509.14562.
    """
    if group["backend"] == "randomized_svd":
        return randomized_polar(X, group["rank"]).to(out_dtype or X.dtype)
    return msign_normed(
        X,
        frobenius,
        backend=group["backend"],
        steps=group["steps"],
        dtype=compute_dtype(group, X),
        coefficients=group["coefficients"],
        form=group.get("polar_form", "direct"),
        kernel=group.get("polar_kernel", "auto"),
        out_dtype=out_dtype,
        unit_scaled=unit_scaled,
        **_preconditioned(group),
    )


def _preconditioned(group: Group) -> dict[str, Any]:
    """msign's precondition (and, for AOL with Polar Express, its lower bound) of a group."""
    precondition = group.get("polar_precondition")
    if precondition is None:
        return {}
    if group["backend"] == "polar_express":
        return {"precondition": precondition, "lower_bound": AOL_LOWER_BOUND}
    return {"precondition": precondition}


class GroupSpectral(Spectral):
    """The spectral norm whose dualizer is ``polar(X, group)``: the group's polar backend.

    The stage-3 norm of the spectral members (Muon and its family, Scion's "spectral"):
    norm and dual_norm are Spectral's (exact, by the singular values); dualize runs the
    group's backend, form, kernel and preconditioning, so it is exact only for
    backend="svd". rms=True is the RMS -> RMS operator norm (dualizer sqrt(m/n) U V^T).
    The group was checked by ``check_polar``, so nothing is validated here.
    """

    def __init__(self, group: Group, rms: bool = False) -> None:
        self.group = group
        self.rms = rms

    @classmethod
    def examples(cls) -> list[Norm]:
        exact = {**POLAR_DEFAULTS, "backend": "svd"}
        return [cls(exact), cls(exact, rms=True)]

    def _params(self) -> dict[str, object]:
        return {"backend": self.group["backend"], "steps": self.group["steps"], "rms": self.rms}

    def dualize(self, G: torch.Tensor) -> torch.Tensor:
        """polar(G, group) (times sqrt(m/n) with rms=True) for a (..., m, n) stack."""
        U = polar(G, self.group)
        if self.rms:
            m, n = G.shape[-2:]
            U.mul_(math.sqrt(m / n))
        return U

    def _dualize(self, G: torch.Tensor) -> torch.Tensor:
        return polar(G, self.group)
