"""The matrix view of a tensor and the stacking of same-shape matrices, shared by the
optimizers, the parameter routing, the distributed dualizer and the diagnostics.

Public API:
    views: VIEWS, View, matrix_shape, as_matrices, from_matrices, split_matrices,
           join_matrices, check_view, local_part, local_state
    stacking: map_stacked, map_matrices, matrix_count
    kept (internal): KeptForTensors, values kept across steps while the same tensors come
"""

from .stacking import map_matrices, map_stacked, matrix_count
from .views import (
    VIEWS,
    View,
    as_matrices,
    check_view,
    from_matrices,
    join_matrices,
    local_part,
    local_state,
    matrix_shape,
    split_matrices,
)

__all__ = [
    "VIEWS",
    "View",
    "as_matrices",
    "check_view",
    "from_matrices",
    "join_matrices",
    "local_part",
    "local_state",
    "map_matrices",
    "map_stacked",
    "matrix_count",
    "matrix_shape",
    "split_matrices",
]
