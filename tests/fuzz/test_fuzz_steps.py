"""Property-based fuzz of optimizer steps over shapes, dtypes and gradient magnitudes.

Properties (each optimizer of fuzz_helpers.optimizer_names()):
* finite in, finite out: from finite parameters and finite gradients of any magnitude in
  [1e-30, 1e30] (capped at what the dtype can hold), three steps leave every parameter finite;
* zero gradients from fresh state move nothing but weight decay: p_new == p * (1 - lr * wd)
  bit for bit (the same multiply done on a copy), and p_new == p exactly when wd == 0;
* finite in, finite out with row blocks (1-4 unequal blocks) for every matrix algorithm.

A float16 parameter on torch's own AdamW goes to inf when g**2 * (1 - beta2) underflows to 0
in float16 and eps=1e-8 rounds to 0 too (exp_avg / (sqrt(0) + 0)); steepest's "adamw" keeps
the moments of 16-bit parameters in float32 and steps on a float32 copy, which the tests at the
end check against torch.optim.AdamW run in float32 with the parameter rounded after each step.
"""

from __future__ import annotations

import math

import pytest
import torch
from fuzz_helpers import counted, make_optimizer, optimizer_names
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import steepest

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@st.composite
def shapes(draw) -> tuple[int, ...]:
    """1x1, 1xn, nx1, extreme aspect ratios, conv (4D), 3D stacks and vectors (no zero-size)."""
    kind = draw(
        st.sampled_from(["1x1", "1xn", "nx1", "wide", "tall", "square", "conv", "3d", "vec"])
    )
    n = draw(st.integers(2, 48))
    if kind == "1x1":
        return (1, 1)
    if kind == "1xn":
        return (1, n)
    if kind == "nx1":
        return (n, 1)
    if kind == "wide":
        return (2, draw(st.integers(200, 600)))
    if kind == "tall":
        return (draw(st.integers(200, 600)), 2)
    if kind == "square":
        return (n, n)
    if kind == "conv":
        return (draw(st.integers(1, 8)), draw(st.integers(1, 4)), 3, 3)
    if kind == "3d":
        return (draw(st.integers(1, 4)), draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    return (n,)


def magnitude_cap(dtype: torch.dtype) -> int:
    """Largest decimal exponent e with randn * 10**e finite in dtype (randn stays under 10)."""
    return min(30, int(math.log10(torch.finfo(dtype).max)) - 2)


def finite_gradient(shape, dtype, exponent: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(shape, generator=gen, dtype=torch.float64) * 10.0**exponent
    return g.to(dtype)


@pytest.mark.parametrize("name", optimizer_names())
@SETTINGS
@given(
    shape=shapes(),
    dtype=st.sampled_from(DTYPES),
    exponent=st.integers(-30, 30),
    seed=st.integers(0, 2**31 - 1),
    weight_decay=st.sampled_from([0.0, 0.1]),
)
def test_finite_parameters_from_finite_input(name, shape, dtype, exponent, seed, weight_decay):
    prop = f"finite-in-finite-out[{name}]"
    p = torch.nn.Parameter(torch.randn(shape, dtype=torch.float64).to(dtype))
    opt = make_optimizer(name, [p], weight_decay)
    with counted(prop):
        exponent = min(exponent, magnitude_cap(dtype))
        for step in range(3):
            p.grad = finite_gradient(shape, dtype, exponent, seed + step)
            assert p.grad.isfinite().all()
            opt.step()
            assert p.dtype == dtype
            bad = (~p.detach().isfinite()).sum().item()
            assert bad == 0, (
                f"{name}: step {step} made {bad} non-finite entries in a {dtype} {shape} "
                f"parameter from finite gradients of scale 1e{exponent}"
            )


@pytest.mark.parametrize("name", optimizer_names())
@SETTINGS
@given(
    shape=shapes(),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**31 - 1),
    weight_decay=st.sampled_from([0.0, 0.1, 0.5]),
)
def test_zero_gradient_moves_only_by_weight_decay(name, shape, dtype, seed, weight_decay):
    prop = f"zero-grad-only-decay[{name}]"
    gen = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype))
    before = p.detach().clone()
    opt = make_optimizer(name, [p], weight_decay)
    (group,) = [g for g in opt.param_groups if any(q is p for q in g["params"])]
    with counted(prop):
        p.grad = torch.zeros_like(p)
        opt.step()
        factor = 1.0 - group["lr"] * group["weight_decay"]
        after = p.detach()
        if factor == 1.0:
            assert torch.equal(after, before), f"{name}: zero gradient moved a {dtype} {shape}"
        elif dtype in (torch.float32, torch.float64):
            expected = before.clone().mul_(factor)
            assert torch.equal(after, expected), (
                f"{name}: zero gradient on a {dtype} {shape} parameter is not p * (1 - lr wd)"
            )
        else:
            # float16/bfloat16: the engine multiplies by the factor rounded to the parameter
            # dtype first, so allow one rounding of the factor plus one of the product.
            exact = before.double() * factor
            ulp = torch.finfo(dtype).eps * exact.abs()
            err = (after.double() - exact).abs()
            assert bool((err <= 2 * ulp).all()), (
                f"{name}: zero gradient on a {dtype} {shape} parameter: max error "
                f"{(err / ulp.clamp_min(1e-300)).max().item():.3g} ulp from p * (1 - lr wd)"
            )


def adamw_rounded_each_step(
    init: torch.Tensor, grads: list[torch.Tensor], **hyperparameters: float
) -> torch.Tensor:
    """Oracle for 16-bit "adamw": torch.optim.AdamW on a float32 parameter (float32 state)
    whose value is rounded to init's dtype after every step, as a 16-bit parameter holds it."""
    master = torch.nn.Parameter(init.float())
    reference = torch.optim.AdamW([master], **hyperparameters)
    for grad in grads:
        master.grad = grad.float()
        reference.step()
        with torch.no_grad():
            master.copy_(master.to(init.dtype))
    return master.detach().to(init.dtype)


def test_torch_adamw_float16_small_gradient_is_not_finite():
    """Why the float32 state exists: torch's AdamW in float16 with gradient 7e-4 computes
    v = 0.05 g**2 -> 0 and eps=1e-8 -> 0 in float16, so the update is exp_avg / 0 = inf."""
    reference = torch.nn.Parameter(torch.ones(1, 1, dtype=torch.float16))
    reference.grad = torch.full((1, 1), 7e-4, dtype=torch.float16)
    torch.optim.AdamW([reference], lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0).step()
    assert not reference.isfinite().all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("scale", [0.0, 7e-4, 1.0, 100.0])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_16bit_matches_float32_torch_adamw(dtype, scale, weight_decay):
    """Three steps of steepest's "adamw" on a 16-bit parameter equal torch.optim.AdamW run in
    float32 with the parameter rounded to the 16-bit dtype after each step (bit for bit), stay
    finite, and keep the moments in float32. A zero gradient (scale 0) leaves the parameter
    as it is when weight_decay is 0 (torch's float16 AdamW gives 0 / 0 = nan there)."""
    gen = torch.Generator().manual_seed(3)
    init = torch.randn(4, 3, generator=gen).to(dtype)
    grads = [(torch.randn(4, 3, generator=gen) * scale).to(dtype) for _ in range(3)]
    hyperparameters = {"lr": 0.1, "betas": (0.9, 0.95), "eps": 1e-8}
    p = torch.nn.Parameter(init.clone())
    opt = steepest.Steepest(
        [p], {"adamw": dict(hyperparameters, weight_decay=weight_decay)}, matrix_algorithm="adamw"
    )
    for grad in grads:
        p.grad = grad.clone()
        opt.step()
    expected = adamw_rounded_each_step(init, grads, weight_decay=weight_decay, **hyperparameters)
    assert p.dtype == dtype and opt.state[p]["exp_avg_sq"].dtype == torch.float32
    assert p.isfinite().all()
    assert torch.equal(p.detach(), expected)
    if scale == 0.0 and weight_decay == 0.0:
        assert torch.equal(p.detach(), init)
    else:
        assert not torch.equal(p.detach(), init)


def test_adamw_float32_is_torch_adamw_bit_for_bit():
    """float32 parameters keep torch's math exactly: the same three steps as torch.optim.AdamW,
    with float32 state stepped in place (no copy)."""
    gen = torch.Generator().manual_seed(4)
    init = torch.randn(5, generator=gen)
    grads = [torch.randn(5, generator=gen) for _ in range(3)]
    p, q = torch.nn.Parameter(init.clone()), torch.nn.Parameter(init.clone())
    opt = steepest.Steepest([p], {"adamw": {"lr": 1e-2, "weight_decay": 0.1}})
    reference = torch.optim.AdamW([q], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for grad in grads:
        p.grad, q.grad = grad.clone(), grad.clone()
        opt.step()
        reference.step()
    assert torch.equal(p.detach(), q.detach())
    assert torch.equal(opt.state[p]["exp_avg_sq"], reference.state[q]["exp_avg_sq"])


@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (2, 0, 3), (0, 3, 3, 3)])
def test_zero_size_parameter_step_is_a_no_op(shape):
    """A parameter with no elements is left as it is and does not disturb the step of the
    others. Oracle: the same optimizer stepped on the non-empty parameter alone."""
    gen = torch.Generator().manual_seed(1)
    init, grad = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    alone = torch.nn.Parameter(init.clone())
    alone.grad = grad.clone()
    make_optimizer("Muon", [alone], 0.0).step()
    p = torch.nn.Parameter(torch.zeros(shape))
    p.grad = torch.zeros(shape)
    q = torch.nn.Parameter(init.clone())
    q.grad = grad.clone()
    make_optimizer("Muon", [p, q], 0.0).step()
    assert p.shape == shape
    assert not torch.equal(q.detach(), init)
    assert torch.equal(q.detach(), alone.detach())


MATRIX_ALGORITHMS = sorted(name for name, a in steepest.optim.ALGORITHMS.items() if a.matrix)


@st.composite
def row_blocks(draw) -> tuple[int, list[int]]:
    """A column count and 1-4 row blocks of 1-12 rows each (unequal, as in a GQA QKV)."""
    blocks = draw(st.lists(st.integers(1, 12), min_size=1, max_size=4))
    return draw(st.integers(1, 12)), blocks


@pytest.mark.parametrize("name", MATRIX_ALGORITHMS)
@SETTINGS
@given(
    cols_and_blocks=row_blocks(),
    dtype=st.sampled_from(DTYPES),
    exponent=st.integers(-30, 30),
    seed=st.integers(0, 2**31 - 1),
)
def test_row_blocks_stay_finite(name, cols_and_blocks, dtype, exponent, seed):
    """Every matrix algorithm with row blocks: finite in, finite out over three steps."""
    prop = f"row-blocks-finite[{name}]"
    cols, blocks = cols_and_blocks
    shape = (sum(blocks), cols)
    p = torch.nn.Parameter(torch.randn(shape, dtype=torch.float64).to(dtype))
    opt = steepest.Steepest([{"params": [p], "algorithm": name, "blocks": blocks}])
    with counted(prop):
        exponent = min(exponent, magnitude_cap(dtype))
        for step in range(3):
            p.grad = finite_gradient(shape, dtype, exponent, seed + step)
            opt.step()
            bad = (~p.detach().isfinite()).sum().item()
            assert bad == 0, (
                f"{name}: step {step} made {bad} non-finite entries in a {dtype} {shape} "
                f"parameter with blocks {blocks} from gradients of scale 1e{exponent}"
            )
