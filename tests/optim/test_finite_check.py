"""all_finite_into (the compiled step's finiteness check) against a per-tensor oracle:
torch.isfinite(t).all() for every tensor. On CPU the foreach fallback; on CUDA the Triton
kernel that reads every tensor through a table of data pointers (Triton's interpreter cannot
run its pointer casts, so the kernel itself is checked on the device)."""

import pytest
import torch

from steepest.optim.fast.finite_check import CHUNK, _kernel_runs, all_finite_into

needs_cuda = pytest.mark.cuda
#: sizes around the kernel's chunk and load block, and tiny ones
SIZES = [(CHUNK + 1,), (3, 5), (4096,), (2 * CHUNK - 1,), (1,), (700, 300)]


def tensors(device, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=gen).to(device=device, dtype=dtype) for s in SIZES]


def check(ts):
    flag = torch.zeros((), dtype=torch.bool, device=ts[0].device)
    all_finite_into(flag, ts)
    return bool(flag)


def cases():
    """(tensor index, flat position, value): first, last and chunk-edge entries."""
    for i, s in enumerate(SIZES):
        n = torch.Size(s).numel()
        for pos in sorted({0, n - 1, min(CHUNK, n - 1), min(CHUNK - 1, n - 1)}):
            for value in (float("inf"), float("-inf"), float("nan")):
                yield i, pos, value


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_one_bad_entry_anywhere_clears_the_flag(device):
    ts = tensors(device)
    assert check(ts)
    for i, pos, value in cases():
        saved = ts[i].view(-1)[pos].clone()
        ts[i].view(-1)[pos] = value
        assert not check(ts), (i, pos, value)
        ts[i].view(-1)[pos] = saved
    assert check(ts)
    if device == "cuda":
        assert _kernel_runs(ts), "the Triton kernel must be the one checked"


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sixteen_bit_and_mixed_dtypes_on_cuda(dtype):
    ts = tensors("cuda", dtype) + tensors("cuda", torch.float32, seed=1)
    assert _kernel_runs(ts) and check(ts)
    ts[2][7] = float("nan")
    assert not check(ts)
    ts[2][7] = 0.0
    ts[-1][0, 0] = float("inf")
    assert not check(ts)
    big = torch.full((10,), 6e4, dtype=dtype, device="cuda")  # finite, near float16's max
    assert check([big])


def test_empty_list_is_finite_and_cpu_uses_the_fallback():
    flag = torch.zeros((), dtype=torch.bool)
    all_finite_into(flag, [])
    assert bool(flag)
    assert not _kernel_runs(tensors("cpu"))
