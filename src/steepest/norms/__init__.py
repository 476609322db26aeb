"""Norm objects for steepest descent: norm(X), dual_norm(G) and the dualizer dualize(G).

Every norm satisfies norm(dualize(G)) == 1 and <G, dualize(G)> == dual_norm(G) for G != 0; a
zero G dualizes to zeros. Matrix norms reduce over the last two dims (..., m, n), vector norms
over the last dim; leading dims are a batch. Weights are (..., d_out, d_in) as in nn.Linear.

The registered norms (steepest.norms.available(); a new norm is a Norm subclass in its own
module, registered with @register_norm(name) and imported below) and their formulas are listed
in the generated algorithm table of the docs. Frobenius (||X||_F, dualizer G / ||G||_F),
Spectral (sigma_max, U V^T), SchattenP(p), Sign (max-entry, sign(G)), ColNorm, RowNorm and
RMS (vectors) are the ones shipped.

(m = d_out, n = d_in; Spectral(rms=True) is sqrt(n/m) sigma_max with dualizer sqrt(m/n) U V^T.)

Scaling: the RMS factors of the LMO table (Beznosikov (2025)) are part of the norm,
not a separate step: ColNorm and RowNorm default to rms=True (the table's norms), Spectral to
rms=False (the plain spectral norm); rms flips each to the other. In every case the object's
norm is c * (unscaled norm) for a shape factor c, its dual is (unscaled dual) / c and its
dualizer is (unscaled dualizer) / c, so both identities hold exactly; dualize returns the
table's LMO direction without its minus sign (optimizers step along -dualize).

References:
    Cesista (2025): F. L. Cesista, "Muon and a selective survey on steepest descent in
        Riemannian and non-Riemannian manifolds", 2025 (§2.3 dualizer, Prop. 4, §4.3).
    Beznosikov (2025): A. Beznosikov, "Matrix optimization and Muon: a natural perspective on
        neural network training, part 2", lecture, MIPT, 2025 (the LMO table).
    T. Pethick et al., "Training deep learning models with norm-constrained LMOs",
        arXiv 2502.07529 (Scion).
"""

from .base import Norm
from .frobenius import Frobenius
from .operator import ColNorm, RowNorm
from .registry import available, get, norm_class, register_norm
from .schatten import SchattenP, Spectral, singular_values
from .sign import Sign
from .vector import RMS

__all__ = [
    "RMS",
    "ColNorm",
    "Frobenius",
    "Norm",
    "RowNorm",
    "SchattenP",
    "Sign",
    "Spectral",
    "available",
    "get",
    "norm_class",
    "register_norm",
    "singular_values",
]
