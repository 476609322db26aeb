"""FastPath: the options of the GPU fast path, one validated object per optimizer."""

from __future__ import annotations

from dataclasses import dataclass, field

from .graphs import Capture, cuda_capture

__all__ = ["FAST_KERNELS", "FastPath"]

#: The choices of ``FastPath.kernels``.
FAST_KERNELS = ("auto", "torch")


@dataclass(frozen=True)
class FastPath:
    """How the optimizer's compiled and recorded groups run (``Steepest(..., fast=...)``).

    Which groups take the fast path is decided by the optimizer's ``compile`` and
    ``cuda_graph`` arguments and each algorithm's declared capabilities; these options only
    tune it. Two optimizers in one process may use different options.

    Args:
        streams: on CUDA each same-shape stack of a compiled group runs on one of this many
            side streams, so that one stack's memory-bound passes overlap another's products;
            0 or 1 runs every stack on the current stream (the same kernels and results).
            Default 4 (measured fastest on GPT-2 small on an H100).
        fused_momentum: run stage 1 of members that declare ``fused_momentum`` as one pass
            per matrix (steepest.optim.fast.fused_momentum.momentum_stack), default True.
        prescaled_stacks: where the polar iteration computes in float16 and the member is
            scale invariant, the fused stage 1 stores float16 directions times a power of
            two, and msign folds their normalization into its first products, default True.
        device_check: with ``nonfinite`` "raise" or "skip", compiled groups whose no-op step
            is exact read the finiteness verdict on the device, so the step is queued before
            the host waits for it, default True; False checks on the host before the step.
        recompile_limit: torch.compile compilations allowed per compiled function (stack
            shapes x settings x groups), default 256.
        kernels: the fast path's own Triton kernels (fused stage 1, finiteness check): "auto"
            (where they can run) or "torch" (their torch references).
        capture: the recorder of ``cuda_graph`` (``graphs.cuda_capture``; the CPU tests pass
            ``graphs.closure_capture``, which also records CPU tensors).

    Example:
        >>> import torch, steepest
        >>> from steepest.optim.fast import FastPath
        >>> opt = steepest.Muon([torch.nn.Parameter(torch.randn(4, 4))], fast=FastPath(streams=1))
        >>> opt.fast_options.streams
        1
    """

    streams: int = 4
    fused_momentum: bool = True
    prescaled_stacks: bool = True
    device_check: bool = True
    recompile_limit: int = 256
    kernels: str = "auto"
    capture: Capture = field(default=cuda_capture, compare=False)

    def __post_init__(self) -> None:
        for name, low in (("streams", 0), ("recompile_limit", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"FastPath: {name}={value!r}; need an int >= {low}")
        for name in ("fused_momentum", "prescaled_stacks", "device_check"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"FastPath: {name}={value!r}; need True or False")
        if self.kernels not in FAST_KERNELS:
            raise ValueError(
                f"FastPath: kernels={self.kernels!r} is unknown; use one of {list(FAST_KERNELS)}"
            )
        if not callable(self.capture):
            raise ValueError(f"FastPath: capture={self.capture!r}; need a recorder function")
