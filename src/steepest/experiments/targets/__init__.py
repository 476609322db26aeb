"""Targets of ``steepest reproduce`` that live in their own module, one concern per module.

Each module exports its target function ``(out, *, progress, **options) -> dict``, its verdict
function ``(record) -> list[Verdict]`` and the ``CLAIM`` and ``CRITERION`` strings that
:mod:`steepest.experiments.reproduce` registers in its tables:

* :mod:`.regression`: Muon and GD on linear regression with MNIST vs Gaussian features.
* :mod:`.gradient_norms`: nuclear vs Frobenius gradient norms, J_t, L_t and the Eq. 7 ratio
  along MLP and char-GPT training.
* :mod:`.batch_size`: steps to a target loss against the batch size, Muon vs AdamW.
"""
