"""Small int64 device tables (data pointers, sizes) for the one-launch Triton kernels, cached
by the addresses they describe.

Building a table copies from the host, which a CUDA-graph recording cannot hold, and a replay
reads the table's memory long after the call that recorded it. So a table is built only
outside a recording (inside one a miss gives None and the caller takes its other path), and
every table a recording read is kept for good; the others are dropped oldest first.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch

__all__ = ["DeviceTables"]

Tables = tuple[torch.Tensor, ...]


class DeviceTables:
    """A cache of device tables keyed by the caller (device, dtypes, addresses, sizes).

    Args:
        kept: how many tables not read by a recording stay cached.
    """

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self.recent: dict[Hashable, Tables] = {}
        self.recorded: dict[Hashable, Tables] = {}

    def get(self, key: Hashable, build: Callable[[], Tables]) -> Tables | None:
        """The tables for key, built by build() on a miss; None on a miss while the current
        stream records a CUDA graph."""
        capturing = torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
        tables = self.recent.get(key) or self.recorded.get(key)
        if tables is None:
            if capturing:
                return None
            if len(self.recent) >= self.kept:
                self.recent.pop(next(iter(self.recent)))
            tables = self.recent[key] = build()
        if capturing:
            self.recorded[key] = tables
        return tables

    def clear(self) -> None:
        """Forget the tables no recording read."""
        self.recent.clear()
