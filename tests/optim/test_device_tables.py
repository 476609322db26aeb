"""DeviceTables (the pointer-table cache of the one-launch kernels) on CPU: one build per key,
the oldest table dropped first. What a CUDA-graph recording keeps is checked on the device
(tests/optim/test_fused_momentum.py)."""

import torch

from steepest.optim.fast.device_tables import DeviceTables


def test_builds_once_per_key_and_drops_the_oldest():
    builds = []

    def build(key):
        def make():
            builds.append(key)
            return (torch.tensor([ord(key)]),)

        return make

    cache = DeviceTables(kept=2)
    first = cache.get("a", build("a"))
    assert cache.get("a", build("a")) is first
    cache.get("b", build("b"))
    cache.get("c", build("c"))  # drops "a"
    assert list(cache.recent) == ["b", "c"]
    assert cache.get("a", build("a")) is not first
    assert builds == ["a", "b", "c", "a"]
    assert not cache.recorded  # nothing recorded outside a CUDA graph
    cache.clear()
    assert not cache.recent
