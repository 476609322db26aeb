"""Helpers shared by the compile tests of several directories (tests/ is on pytest's path)."""

from __future__ import annotations

import torch


def inductor_unavailable() -> str | None:
    """None if inductor builds a kernel on this machine, else why not (e.g. no C++ compiler)."""
    try:
        torch.compile(lambda t: t * 2 + 1, backend="inductor")(torch.ones(3))
    except Exception as error:  # any build failure means: cannot test inductor here
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    finally:
        torch._dynamo.reset()
    return None
