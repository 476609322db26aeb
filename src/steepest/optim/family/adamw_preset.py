"""The "adamw" preset: torch's AdamW on every parameter, through the engine."""

from __future__ import annotations

from ..presets import Preset, preset

__all__ = ["AdamW"]


@preset("adamw")
class AdamW(Preset):
    """AdamW (torch's math, ``torch.optim.adamw.adamw``) on every parameter.

    Keys: lr (3e-4), betas ((0.9, 0.95)), eps, weight_decay, amsgrad, foreach, fused.

    References: arXiv 1711.05101.
    """

    algorithm = "adamw"
    vector_algorithm = "adamw"
