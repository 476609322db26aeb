"""Targets of ``steepest reproduce`` that live in their own module, one target per module.

Each module exports its target function ``(out, *, progress, **options) -> dict`` and its
verdict function ``(record) -> list[Verdict]``, which :mod:`steepest.experiments.reproduce`
registers in its tables:

* :mod:`.regression`: Muon and GD on linear regression with MNIST vs Gaussian features.
* :mod:`.gradient_norms`: nuclear vs Frobenius gradient norms, J_t, L_t and the Eq. 7 ratio
  along MLP and char-GPT training.
* :mod:`.batch_size`: steps to a target loss against the batch size, Muon vs AdamW.
* :mod:`.amplification`: the NDS ratio AdamW / Muon against the Zipf exponent.
* :mod:`.layer_split`: within- and cross-layer parts of the NDS.
* :mod:`.kronecker_hessian`: low-rank Kronecker fits of attention Hessians.
* :mod:`.grokking`: steps to generalize on modular addition, Muon vs AdamW.
* :mod:`.component_order`: the principal-component learning order, part of ``imbalance``.
"""
