"""Lion and Signum against pytorch-optimizer and timm: elementwise sign updates, float32."""

import pytest
import torch
from conformance_helpers import FLOAT32, SHAPES, gap, peer, run, start, stream, timm_optim

import steepest

HP = dict(lr=1e-3, weight_decay=0.5)


@pytest.mark.parametrize("library", ["pytorch_optimizer", "timm"])
def test_lion(library):
    if library == "timm":
        make = lambda ps: timm_optim("lion").Lion(ps, betas=(0.9, 0.99), **HP)  # noqa: E731
    else:
        po = peer("pytorch_optimizer", "pytorch-optimizer")
        make = lambda ps: po.Lion(ps, betas=(0.9, 0.99), **HP)  # noqa: E731
    w0, grads = start(SHAPES), stream(SHAPES, 6)
    theirs = run(make, w0, grads, torch.float32)
    ours = run(lambda ps: steepest.Lion(ps, betas=(0.9, 0.99), **HP), w0, grads, torch.float32)
    assert gap(w0, ours, theirs) < FLOAT32


def test_signum_pytorch_optimizer():
    """pytorch_optimizer.SignSGD(momentum=b): the sign of an EMA (b = fraction kept) and
    decoupled decay."""
    po = peer("pytorch_optimizer", "pytorch-optimizer")
    w0, grads = start(SHAPES), stream(SHAPES, 6)
    theirs = run(lambda ps: po.SignSGD(ps, momentum=0.9, **HP), w0, grads, torch.float32)
    ours = run(lambda ps: steepest.Signum(ps, momentum=0.9, **HP), w0, grads, torch.float32)
    assert gap(w0, ours, theirs) < FLOAT32
