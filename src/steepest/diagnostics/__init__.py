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

References:
    Cesista (2025): F. L. Cesista, "Muon and a selective survey on steepest descent in
        Riemannian and non-Riemannian manifolds", 2025 (Def. 6, 7: relative size, stable rank).
    arXiv 2606.04662: "Why Muon outperforms Adam: a curvature perspective" (NDS, Taylor
        check, layer split, Kronecker Hessians).
    Shen et al., arXiv 2505.23737: W. Shen, R. Huang, M. Huang, C. Shen, J. Zhang, "On the
        convergence analysis of Muon" (nuclear vs Frobenius gradient norms, smoothness J, L).
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
