"""A training run that measures the update it just took, every few steps (curvature targets).

At a measured step the parameters are put back to their values before the step, ``measure``
is called with the model, the step's batch loss, the parameters and the update
``u = before - after`` (so that a step of size 1 along ``u`` is the optimizer's step, as
:func:`steepest.diagnostics.taylor_check` takes it), and the parameters are restored to their
values after the step. Hessian-vector products need double backward through attention, so
the run uses the math backend of scaled-dot-product attention.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from steepest.experiments.optimizers import build_optimizer
from steepest.experiments.runner import lr_factor, scale_lrs
from steepest.experiments.tasks import Task

__all__ = ["Measure", "measured_run", "transformer_blocks"]

#: measure(model, loss_fn, params, u) -> named floats of the step
Measure = Callable[
    [torch.nn.Module, Callable[[], torch.Tensor], list[torch.Tensor], list[torch.Tensor]],
    dict[str, float],
]


def measured_run(
    task: Task,
    name: str,
    lr: float,
    adamw_lr: float,
    steps: int,
    measure_every: int,
    seed: int,
    measure: Measure,
) -> dict[str, list[float]]:
    """Train ``task``'s model with optimizer ``name`` for ``steps`` steps (the task's warmup
    and schedule); at steps 0, ``measure_every``, ... and the last, record the batch loss
    (``train_loss``) and what ``measure`` returns. Returns lists keyed by ``step``,
    ``train_loss`` and the measure's names."""
    torch.manual_seed(seed)
    model = task.build_model()
    optimizers = build_optimizer(name, model, lr, adamw_lr, routing=task.routing())
    base = [[g["lr"] for g in opt.param_groups] for opt in optimizers]
    params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
    batches = task.batches(seed)
    curve: dict[str, list[float]] = {"step": [], "train_loss": []}
    with sdpa_kernel(SDPBackend.MATH):
        for step in range(steps):
            scale_lrs(optimizers, base, lr_factor(step, steps, task.warmup, task.schedule))
            batch = next(batches)
            loss = task.loss(model, batch)
            torch.autograd.backward(loss)
            measuring = step % measure_every == 0 or step == steps - 1
            before = [p.detach().clone() for p in params] if measuring else []
            for opt in optimizers:
                opt.step()
                opt.zero_grad(set_to_none=True)
            if not measuring:
                continue
            after = [p.detach().clone() for p in params]
            update = [b - a for a, b in zip(after, before, strict=True)]
            with torch.no_grad():
                for p, b in zip(params, before, strict=True):
                    p.copy_(b)
            values = measure(model, functools.partial(task.loss, model, batch), params, update)
            with torch.no_grad():
                for p, a in zip(params, after, strict=True):
                    p.copy_(a)
            for p in params:
                p.grad = None
            curve["step"].append(float(step))
            curve["train_loss"].append(loss.item())
            for key, value in values.items():
                curve.setdefault(key, []).append(float(value))
    return curve


def transformer_blocks(model: torch.nn.Module, params: Sequence[torch.Tensor]) -> list[list[int]]:
    """Indices into ``params`` grouped by layer of the experiments' GPT: the embeddings, each
    transformer block, then the final norm and head (one group each)."""
    index = {id(p): i for i, p in enumerate(params)}
    groups: dict[str, list[int]] = {}
    for pname, p in model.named_parameters():
        if id(p) not in index:
            continue
        head = pname.split(".")[0]
        key = ".".join(pname.split(".")[:2]) if head == "blocks" else head
        key = "embeddings" if key in ("tok_emb", "pos_emb") else key
        key = "output" if key in ("ln_f", "lm_head") else key
        groups.setdefault(key, []).append(index[id(p)])
    return list(groups.values())
