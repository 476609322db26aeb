"""lerp_all: (1 - w) start + w end as new tensors, by either route (foreach lerp for plain
tensors; foreach mul and add for DTensors, whose out-of-place foreach lerp torch 2.11 lacks)."""

import pytest
import torch

import steepest.optim.momentum as momentum


@pytest.mark.parametrize("as_dtensors", [False, True], ids=["foreach lerp", "mul and add"])
def test_lerp_all_is_the_interpolation_and_leaves_its_inputs(monkeypatch, as_dtensors):
    monkeypatch.setattr(momentum, "uses_distributed", lambda tensors: as_dtensors)
    torch.manual_seed(0)
    starts = [torch.randn(3, 4), torch.randn(5)]
    ends = [torch.randn(3, 4), torch.randn(5)]
    before = [t.clone() for t in starts + ends]
    out = momentum.lerp_all(starts, ends, 0.9)
    for o, a, b in zip(out, starts, ends, strict=True):
        expected = 0.1 * a.double() + 0.9 * b.double()  # float64 closed form
        torch.testing.assert_close(o.double(), expected, rtol=0, atol=1e-6)
    for t, kept in zip(starts + ends, before, strict=True):
        assert torch.equal(t, kept)  # new tensors: the inputs are unchanged
