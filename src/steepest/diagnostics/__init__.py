"""Diagnostics that tell when and why spectral updates beat Adam, each one call.

Public API:
    matrix:     singular_values, batched_singular_values, stable_rank, nuclear_rank,
                effective_rank, matrix_norm, relative_size(dW, W, norm="frobenius"),
                orthogonality_gap(U, normalize=False), rank_summary
    updates:    snapshot(params), update_stats(params, before, grads=None), matrix_view
    curvature:  hessian_vector_product, directional_sharpness(loss_fn, params, direction,
                normalized=False), taylor_check(loss_fn, params, direction, lr),
                layer_split(loss_fn, params, direction, blocks=None), layer_hessian
    smoothness: nuclear_frobenius_ratio, smoothness_estimates, muon_advantage_ratio
    kronecker:  kronecker_approx(H, shape_a, shape_b, rank), kronecker_sum, KroneckerApprox
    monitor:    Monitor(model, optimizer, every=10, metrics=..., path="monitor.jsonl")

References: seeds/000_0ff94013880c6450.txt (Def. 6, 7), seeds/003_e51c56d7d69de86a.txt
(NDS, Taylor check, layer split, Kronecker Hessians), seeds/004_67262c901d7d220a.txt (nuclear vs
Frobenius gradient norms, smoothness J and L).
"""

from .curvature import (
    directional_sharpness,
    hessian_vector_product,
    layer_hessian,
    layer_split,
    taylor_check,
)
from .kronecker import KroneckerApprox, kronecker_approx, kronecker_sum
from .matrix import (
    BUILTIN_NORMS,
    batched_singular_values,
    effective_rank,
    matrix_norm,
    nuclear_rank,
    orthogonality_gap,
    rank_summary,
    relative_size,
    singular_values,
    stable_rank,
)
from .monitor import DEFAULT_METRICS, METRICS, Monitor
from .smoothness import muon_advantage_ratio, nuclear_frobenius_ratio, smoothness_estimates
from .updates import matrix_view, snapshot, update_stats

__all__ = [
    "BUILTIN_NORMS",
    "DEFAULT_METRICS",
    "METRICS",
    "Monitor",
    "KroneckerApprox",
    "batched_singular_values",
    "directional_sharpness",
    "effective_rank",
    "hessian_vector_product",
    "kronecker_approx",
    "kronecker_sum",
    "layer_hessian",
    "layer_split",
    "matrix_norm",
    "matrix_view",
    "muon_advantage_ratio",
    "nuclear_frobenius_ratio",
    "nuclear_rank",
    "orthogonality_gap",
    "rank_summary",
    "relative_size",
    "singular_values",
    "smoothness_estimates",
    "snapshot",
    "stable_rank",
    "taylor_check",
    "update_stats",
]
