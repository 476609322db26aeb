"""How a group runs on a GPU: the compiled five stages, their recording, side streams, the
fused stage 1 and the device-side finiteness verdict, steered by one options object.

Public API:
    FastPath(streams=4, fused_momentum=True, prescaled_stacks=True, device_check=True,
             recompile_limit=256, kernels="auto", capture=cuda_capture)
    graphs.cuda_capture, graphs.closure_capture (the CPU stand-in recorder)
"""

from .graphs import closure_capture, cuda_capture
from .options import FastPath

__all__ = ["FastPath", "closure_capture", "cuda_capture"]
