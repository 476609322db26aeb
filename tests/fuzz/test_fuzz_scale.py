"""Scale invariance of the matrix step: msign(c G) = msign(G) for every c > 0, and Muon's
momentum is linear in G, so from fresh state with eps=0 the first step must not depend on the
gradient's magnitude. Oracle: the same optimizer stepped on the unscaled gradient (magnitude
~1). With the default eps=1e-7 a direction of Frobenius norm below eps steps that much less
(MuonAlgorithm.damp): a 1e-30 gradient moves nothing.

The iterative backends accumulate ||G||_F in float64 (steepest.polar.msign), so float32
gradients of magnitude 1e-30 and 1e30 give the same step as magnitude 1 (a float32 norm
underflowed to 0 or overflowed to inf there before).
"""

from __future__ import annotations

import pytest
import torch
from fuzz_helpers import counted, make_optimizer, optimizer_names
from hypothesis import given, settings
from hypothesis import strategies as st

import steepest


def first_step(
    name: str, init: torch.Tensor, grad: torch.Tensor, eps: float | None = None
) -> tuple[torch.Tensor, str]:
    p = torch.nn.Parameter(init.clone())
    if eps is None:
        opt = make_optimizer(name, [p], 0.0)
    else:  # the scale-invariant rule: no damping of small directions
        opt = (
            steepest.Muon([p], eps=eps)
            if name == "Muon"
            else steepest.optimizer(name, [p], eps=eps)
        )
    (group,) = [g for g in opt.param_groups if any(q is p for q in g["params"])]
    p.grad = grad
    opt.step()
    return p.detach(), group.get("algorithm", "")


@pytest.mark.parametrize("name", optimizer_names())
@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    m=st.integers(1, 24),
    n=st.integers(1, 24),
    exponent=st.integers(-15, 15),
    seed=st.integers(0, 2**31 - 1),
)
def test_matrix_step_is_invariant_to_gradient_scale(name, m, n, exponent, seed):
    gen = torch.Generator().manual_seed(seed)
    init = torch.randn(m, n, generator=gen)
    grad = torch.randn(m, n, generator=gen)
    reference, algorithm = first_step(name, init, grad)
    if algorithm != "muon":
        return  # the property is about the matrix (msign) algorithms
    with counted(f"scale-invariant-step[{name}]"):
        reference, _ = first_step(name, init, grad, eps=0.0)
        scaled, _ = first_step(name, init, grad * 10.0**exponent, eps=0.0)
        torch.testing.assert_close(scaled, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("exponent", [-30, 30])
def test_muon_step_at_extreme_gradient_magnitude(exponent):
    gen = torch.Generator().manual_seed(0)
    init, grad = torch.randn(8, 5, generator=gen), torch.randn(8, 5, generator=gen)
    reference, _ = first_step("Muon", init, grad)
    assert not torch.equal(reference, init)  # the unscaled step moves the weights
    scaled, _ = first_step("Muon", init, grad * 10.0**exponent, eps=0.0)
    torch.testing.assert_close(scaled, reference, atol=1e-5, rtol=1e-5)
    damped, _ = first_step("Muon", init, grad * 10.0**exponent)  # default eps = 1e-7
    if exponent > 0:
        torch.testing.assert_close(damped, reference, atol=1e-5, rtol=1e-5)
    else:  # ||D||_F ~ 1e-30 < eps: the step is ~1e-23 of the full one
        assert (damped - init).abs().max() <= 1e-20 * (reference - init).abs().max()
