"""CUDA-graph replay of the five stages of one param group.

A Muon step on many matrices launches hundreds of small kernels; on a GPU the launches, not
the arithmetic, set its time. ``GroupGraph`` records the five stages of one group once and
replays the recording on later steps. The stages read lr and weight decay from 0-dim tensors
refreshed before every replay, so learning-rate schedules work unchanged.

What the recording assumes, and how each assumption is kept:

* The same tensors every step. Parameters and optimizer state are fixed tensors; a change of
  their storage (``load_state_dict``, ``p.data = ...``) is detected and the group re-recorded.
  Gradients may be new tensors each step (``zero_grad(set_to_none=True)``): each one whose
  storage differs is copied into its recorded tensor.
* The same hyperparameters. Every group key except ``lr`` and ``weight_decay`` is baked into
  the recording; when one changes (a momentum schedule) the group is re-recorded.
* No host synchronisation and no Python-side state in the stages: only groups whose
  algorithm declares them capturable (``Algorithm.uncapturable(group)`` is "") are recorded.

``capture`` is injectable (``FastPath.capture``): ``cuda_capture`` records with
``torch.cuda.graph``; the CPU tests use ``closure_capture``, which replays the recorded Python
closure on the recorded tensors and so reproduces exactly what a stale recording would read.

References: PyTorch CUDA Graphs (torch.cuda.graph, "whole network capture" and static inputs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["GroupGraph", "closure_capture", "cuda_capture"]

#: A recorder: takes a function of no arguments, returns its replay.
Capture = Callable[[Callable[[], object]], Callable[[], object]]

#: Group keys read outside the recording (stage 5) or not hyperparameters at all.
LIVE_KEYS = frozenset({"params", "param_names", "lr", "weight_decay", "initial_lr"})

#: What a recording depends on: the group's baked-in keys, parameter and state storages.
_Key = tuple[tuple[tuple[str, str], ...], tuple[int, ...], tuple[int, ...]]


def cuda_capture(fn: Callable[[], object]) -> Callable[[], object]:
    """Record fn's kernels with torch.cuda.graph; the replay returns fn's (static) outputs."""
    graph = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()  # type: ignore[no-untyped-call]  # torch stub: untyped __new__
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.graph(graph, stream=side):
        outputs = fn()
    torch.cuda.current_stream().wait_stream(side)

    def replay() -> object:
        graph.replay()
        return outputs

    return replay


def closure_capture(fn: Callable[[], object]) -> Callable[[], object]:
    """The CPU stand-in of cuda_capture: nothing runs now; the replay calls fn again on the
    tensors it closed over, as a CUDA graph would read the recorded addresses."""
    return fn


def _storages(tensors: list[torch.Tensor]) -> tuple[int, ...]:
    return tuple(map(torch.Tensor.data_ptr, tensors))


def _state_tensors(states: list[dict[str, Any]]) -> list[torch.Tensor]:
    return [v for s in states for v in s.values() if isinstance(v, torch.Tensor)]


def _signature(group: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in group.items() if k not in LIVE_KEYS))


def recording_key(
    group: Mapping[str, Any], params: list[torch.Tensor], states: list[dict[str, Any]]
) -> _Key:
    """What a recording of these stages depends on: the group's baked-in keys and the
    parameters' and states' storages (``GroupGraph.run`` re-records when it changes)."""
    return _signature(group), _storages(params), _storages(_state_tensors(states))


class GroupGraph:
    """The stages of one param group, run eagerly for ``warmup`` steps, then recorded once
    and replayed.

    Args:
        capture: the recorder (``cuda_capture`` on a GPU, ``closure_capture`` in tests).
        warmup: eager steps before recording (lazy initialisation, compilation and autotuning
            must happen outside the recording), default 2.

    Attributes:
        recordings: how many times this group was recorded (1 in a steady run).
    """

    def __init__(self, capture: Capture, warmup: int = 2) -> None:
        self.capture = capture
        self.warmup = warmup
        self.recordings = 0
        self._key: _Key | None = None
        self._eager_steps = 0
        self._replay: Callable[[], object] | None = None
        self._grads: list[torch.Tensor] = []
        #: where the recorded gradient tensors lie (fixed while the recording lives)
        self._places: tuple[int, ...] = ()
        self._count = (0, 0)

    def run(
        self,
        stages: Callable[[list[torch.Tensor]], object],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[dict[str, Any]],
        group: Mapping[str, Any],
        counters: Any,
        key: _Key | None = None,
    ) -> object:
        """Run the stages for these gradients (eagerly, recording, or from the recording);
        returns what they return (a replay: what the recorded call returned).

        Args:
            stages: the stages, a function of the gradients.
            params, grads, states, group: the group's work for this step.
            counters: the optimizer's ``Stacks``; its orthogonalization counters advance on
                every replay as they would eagerly.
            key: ``recording_key(group, params, states)`` when the caller has it (several
                recordings of one group's step share it).
        """
        if key is None:
            key = recording_key(group, params, states)
        if key != self._key:
            self._key, self._eager_steps, self._replay = key, 0, None
        if self._eager_steps < self.warmup:
            self._eager_steps += 1
            return stages(grads)
        if self._replay is None:
            self._grads = list(grads)
            self._places = _storages(self._grads)
            before = (counters.orthogonalizations, counters.block_orthogonalizations)
            recorded = self._grads
            self._replay = self.capture(lambda: stages(recorded))
            after = (counters.orthogonalizations, counters.block_orthogonalizations)
            self._count = (after[0] - before[0], after[1] - before[1])
            counters.orthogonalizations, counters.block_orthogonalizations = before
            self.recordings += 1
        elif (places := _storages(grads)) != self._places:
            # only inputs at another place are copied (a kept one would copy onto itself)
            moved = [
                (r, g)
                for r, g, now, then in zip(self._grads, grads, places, self._places, strict=True)
                if now != then
            ]
            torch._foreach_copy_([r for r, _ in moved], [g for _, g in moved])
        counters.orthogonalizations += self._count[0]
        counters.block_orthogonalizations += self._count[1]
        return self._replay()
