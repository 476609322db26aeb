"""The "mars_muon" member (MARS-M): Muon fed by MARS's variance-reduced momentum."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, overload

import torch

from ..checks import check_choice, check_nonnegative
from ..precision import work_dtype
from ..presets import Preset, preset
from ..registry import Group, State, register
from .muon import MuonAlgorithm

__all__ = ["MarsMuon", "MarsMuonAlgorithm"]

#: How g_{t-1} is obtained: the last step's gradient, or a second closure call at x_{t-1}.
VARIANCE_REDUCTION = ("approximate", "exact")


class MarsMuonAlgorithm(MuonAlgorithm):
    """MARS-M: a variance-corrected gradient, clipped, into Muon's momentum and msign.

    Math, per parameter (momentum beta, correction gamma, clip threshold c_max):
        c_t = g_t + gamma * beta / (1 - beta) * (g_t - g_{t-1})
        c_t <- c_t * min(1, c_max / ||c_t||_F)          (clip=None: no clipping)
        M_t = beta M_{t-1} + (1 - beta) c_t             (Nesterov: (1 - beta) c_t + beta M_t)
        W  <- (1 - lr wd) W - lr * scale(m, n) * msign(M_t)
    g_t = grad f(x_t, xi_t). ``variance_reduction="exact"`` takes g_{t-1} = grad f(x_{t-1}, xi_t),
    the previous weights on the current batch (a second closure call per step, MarsMuon.step);
    "approximate" (default) reuses the last step's gradient grad f(x_{t-1}, xi_{t-1}). On the
    first step there is no g_{t-1} and c_1 = g_1. Defaults follow the papers: gamma 0.025,
    clip 1, beta 0.95 without Nesterov, scale "rms" (0.2 sqrt(max(m, n))).
    With gamma = 0 and clip=None this is Muon (the same momentum of g, the same msign).

    References: Yuan, Liu, Wu, Zhou, Gu, "MARS: Unleashing the Power of Variance Reduction for
    Training Large Models", arXiv 2411.10438, Alg. 1 (c_t, clipping; MARS-approx);
    Liu, Yuan, Gu, "MARS-M: When Variance Reduction Meets Matrices", arXiv 2510.21800, Alg. 1.
    """

    name = "mars_muon"
    defaults: Mapping[str, Any] = {
        **MuonAlgorithm.defaults,
        "lr": 0.01,
        "nesterov": False,
        "scale": "rms",
        "gamma": 0.025,
        "clip": 1.0,
        "variance_reduction": "approximate",
    }

    def validate(self, who: str, hp: Group, prefix: str = "") -> None:
        super().validate(who, hp, prefix)
        check_nonnegative(who, f"{prefix}gamma", hp["gamma"], 0.025)
        clip = hp["clip"]
        if clip is not None:
            check_nonnegative(who, f"{prefix}clip", clip, 1.0)
            if clip == 0:
                raise ValueError(f"{who}: {prefix}clip=0 must be > 0 or None (no clipping)")
        check_choice(
            who, f"{prefix}variance_reduction", hp["variance_reduction"], VARIANCE_REDUCTION
        )
        if hp["momentum"] == 0 and hp["gamma"] != 0:
            raise ValueError(
                f"{who}: {prefix}momentum=0 with gamma={hp['gamma']!r}: the correction "
                "gamma * beta / (1 - beta) needs momentum in (0, 1); try momentum=0.95"
            )

    def init_state(self, p: torch.Tensor, group: Group) -> State:
        state = super().init_state(p, group)
        state["previous_grad"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["variance_reduction"] == "exact":
            state["previous_param"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] = torch.zeros((), dtype=torch.int64, device="cpu")
        return state

    #: stage 1 differs from Muon's plain EMA momentum, so neither the fused stage 1 nor the
    #: prescaled float16 stack applies
    fused_momentum = False
    scale_invariant = False

    def uncapturable(self, group: Group) -> str:
        return "the step counter and the clipping norm are read on the host"

    def accumulate(
        self, grads: list[torch.Tensor], states: list[State], group: Group
    ) -> list[torch.Tensor]:
        weight = group["gamma"] * group["momentum"] / (1 - group["momentum"])
        corrected = []
        for g, state in zip(grads, states, strict=True):
            c = g.to(work_dtype(g.dtype))
            if int(state["step"]) > 0 and weight != 0:
                c = c + weight * (c - state["previous_grad"].to(c.dtype))
            if group["clip"] is not None:
                norm = torch.linalg.vector_norm(c, dtype=torch.float64)  # no overflow at 1e30
                c = c * (group["clip"] / norm).clamp(max=1.0).to(c.dtype)
            corrected.append(c.to(g.dtype))
            if group["variance_reduction"] == "approximate":
                state["previous_grad"].copy_(g)
            state["step"] += 1
        return super().accumulate(corrected, states, group)


register(MarsMuonAlgorithm())


@preset("mars_muon")
class MarsMuon(Preset):
    """MARS-M on the matrices, AdamW on the rest.

    With ``variance_reduction="exact"`` every ``step`` needs a closure that zeroes the
    gradients, evaluates the loss on one fixed batch and calls backward: it is called at the
    current weights and again at the previous ones (torch.optim.LBFGS's closure contract).
    """

    algorithm = "mars_muon"

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        exact = [
            p
            for g in self.param_groups
            if g["algorithm"] == MarsMuonAlgorithm.name and g["variance_reduction"] == "exact"
            for p in g["params"]
        ]
        if not exact:
            return super().step(closure)
        if closure is None:
            raise ValueError(
                f"{type(self).__name__}: variance_reduction='exact' needs step(closure) (the "
                "gradient at the previous weights on the current batch); pass a closure or "
                "use variance_reduction='approximate'"
            )
        with torch.enable_grad():
            loss = closure()
        self._previous_point_gradients(exact, closure)
        super().step()
        return loss

    @torch.no_grad()
    def _previous_point_gradients(
        self, exact: list[torch.Tensor], closure: Callable[[], float]
    ) -> None:
        """state["previous_grad"] = grad f(x_{t-1}, xi_t) for every exact parameter that has
        taken a step; state["previous_param"] = x_t. Every gradient is left as the first
        closure call set it."""
        every = [p for g in self.param_groups for p in g["params"]]
        saved = {p: p.grad for p in every}
        stepped = [p for p in exact if p.grad is not None and int(self.state[p]["step"]) > 0]
        if stepped:
            current = {p: p.detach().clone() for p in stepped}
            for p in stepped:
                p.copy_(self.state[p]["previous_param"])
            for p in every:
                p.grad = None
            with torch.enable_grad():
                closure()
            for p in stepped:
                if p.grad is not None:
                    self.state[p]["previous_grad"].copy_(p.grad)
                p.copy_(current[p])
            for p in every:
                p.grad = saved[p]
        for p in exact:
            if p.grad is not None:
                self.state[p]["previous_param"].copy_(p)
