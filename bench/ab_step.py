"""A/B of a change to the fast-path step, side by side on one device in one run.

Variants of steepest.Muon (compile + cuda_graph, Gram form) on one parameter set:
  new:                the code as it is (stage 5 as foreach ops: Inductor writes every
                      parameter from one horizontally fused kernel);
  per-param stage 5:  stage 5 as one p.mul_/p.sub_ pair per parameter (the earlier local_step,
                      one kernel per parameter);
  unfused stage 1:    engine.FUSED_MOMENTUM off: stage 1 as foreach ops writing float32
                      directions, msign computing their norms and casting them (before
                      steepest.optim.fused_momentum).
  one stream, 2 streams: engine.STACK_STREAMS 0 or 2 (default 4): how many CUDA streams
                      the same-shape stacks' compiled steps are spread over, so that one
                      stack's memory-bound passes overlap another's products. Variants since
                      removed (bench/results/ab_step-*streams*): stacks split into halves or
                      quarters; every stack's stage 1 on one (low-priority) stream ahead of
                      the products ("staggered"); the momentum kernel capped at 32 or 66
                      programs looping over its blocks, leaving SMs to other streams'
                      products (2.97 and 2.92 ms against 2.93 ms uncapped).
  R P^2:              the Gram form's R update as R P^2 with P^2 from the symmetric kernel
                      (steepest.polar.gram.R_UPDATE = "square"), one full s x s product
                      less per update; "R P^2 check" with the default check on.
  pointer loads:      the symmetric kernel loading its tiles through pointers, as before
                      session 12, not through TMA descriptors (_syrk_triton.USE_TMA);
                      "pointer loads check" with the default check on: 2.635 against
                      2.603 ms pipelined for TMA. A first version that also read
                      column-major operands through descriptors of their transposes made
                      the step slower, 2.665 against 2.618 ms (not profiled;
                      bench/results/ab_step-*transposed-tma*).
  bf16 stacks:        the fused stage 1 storing bfloat16 directions, which msign copies
                      into normalized float16 for the Gram form, as before session 13
                      (engine.PRESCALED_STACKS off; by default float16 directions times a
                      power-of-two prescale, the normalization folded into the first
                      products); "bf16 stacks check" with the default check on.
  half-products:      the Gram form's s x s products of two iterates as the Triton
                      half-products of commuting_product, not cuBLAS's full products
                      (symmetric.COMMUTING_AUTO_MIN_SIDE = 768; off by default). Measured
                      while they were the default, as "new" against "cuBLAS chain":
                      2.59 vs 2.65 ms pipelined (bench/results/ab_step-*-cuBLAS_chain-*).
                      Less accurate on ill-conditioned input (bench/gram_accuracy.py).
  check foreach, check kernel: nonfinite="raise" (the default), the device-side check pass
                      over every gradient before stage 1 as torch's foreach max-abs
                      reduction (until session 9) or as the Triton kernel of
                      steepest.optim.finite_check (one launch over a table of data
                      pointers; the default on CUDA). A variant since removed, "check
                      late" (session 9), took the verdict after stage 1 from the fused
                      pass's norms, without the check pass, storing M in stage 5 instead:
                      isolated 3.20-3.24 ms, pipelined 2.92-2.99 ms, against 3.08 / 2.81 ms
                      for the kernel check and 3.38-3.53 / 2.85-2.89 ms for the foreach one
                      (bench/results/ab_step-*check_late*; code in commit e59eb8e).
                      A variant since removed, "spare momentum" (session 11, code in commit
                      9aa7fe2): a second momentum buffer per matrix in place of the check
                      pass; the momentum pass wrote into it before the recording, its norms
                      gave the verdict, stage 5 zeroed the update on a False one and the
                      buffers swapped after finite steps. Correct, but 4.57 / 2.675 ms
                      isolated / pipelined against 3.26 / 2.63 ms for the check kernel (no
                      check: 2.88 / 2.51): every momentum pass ran before the fork, so none
                      overlapped the small stacks' products, and the eager passes cost host
                      time (bench/results/ab_step-*spare_momentum*).
All other variants run with nonfinite="ignore" (no finiteness check). Each variant is
compiled and recorded once; then their recorded steps are timed interleaved
(A B A B ...), isolated and pipelined, and the medians printed, with how far each variant's
parameters ended from the first variant's (all start equal and take the same steps).

(bench/results/ab_step-gpt2-small-symmetric-products*.json hold two session-5 runs of the
half-products against cuBLAS's full products ("bmm products"): the whole step was not faster
(3.98 vs 3.78 ms and 3.91 vs 3.84 ms pipelined), because torch.compile then ran the Triton
kernel with a float64 epilogue, 1.5x slower than called directly; fixed in session 8.)

Usage: python bench/ab_step.py [--set gpt2-small] [--rounds 5] [--variants new,...]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics

import torch
from common import SETS, parameters_with_gradients, pipelined, time_fn, variant_tag, write_result

import steepest
import steepest.optim.engine as engine
import steepest.optim.finite_check as finite_check
import steepest.polar.gram as gram
import steepest.polar.kernels._syrk_triton as syrk
import steepest.polar.kernels.symmetric as symmetric
from steepest.optim.batching import map_matrices


def per_param_step(algorithm, params, grads, states, group, lr, weight_decay, finite=None):
    assert finite is None, "built with nonfinite='ignore'"
    directions = algorithm.accumulate(grads, states, group)
    directions = algorithm.precondition(directions, states, group)

    def run(X):
        m, n = X.shape[-2:]
        return algorithm.dualize(X, group) * algorithm.scale(m, n, group)

    updates = map_matrices(run, directions, group["matrix_view"], group["blocks"])
    updates = algorithm.rescale(updates, states, group)
    for p, u in zip(params, updates, strict=True):
        p.mul_(1 - lr * weight_decay)
        p.sub_(u * lr)


LOCAL_STEP = engine.local_step


def _target(key: str):
    """(module, attribute) of a setting: steepest.polar.kernels.symmetric for "symmetric.*"
    keys, steepest.optim.finite_check for "finite_check.*", steepest.polar.gram for
    "gram.*", the symmetric kernel's launcher for "syrk.*", the engine otherwise."""
    module, _, name = key.rpartition(".")
    modules = {"symmetric": symmetric, "finite_check": finite_check, "gram": gram, "syrk": syrk}
    return modules.get(module, engine), name


@contextlib.contextmanager
def engine_set_to(settings: dict):
    """The variant's settings (the engine's local_step, FUSED_MOMENTUM, STACK_STREAMS and the
    kernels' symmetric.COMMUTING_AUTO_MIN_SIDE; read while compiling and recording; on CPU the
    compiled function is called again and Dynamo's guards pick the variant's)."""
    before = {k: getattr(*_target(k)) for k in DEFAULTS}
    for k, v in {**DEFAULTS, **settings}.items():
        setattr(*_target(k), v)
    try:
        yield
    finally:
        for k, v in before.items():
            setattr(*_target(k), v)


def build(shapes, device, settings):
    """A warmed-up optimizer for the variant and a step that sets the variant in the engine
    around every call (on a GPU the recorded graph replays)."""
    settings = dict(settings)
    nonfinite = settings.pop("nonfinite", "ignore")
    torch._dynamo.reset()
    engine._COMPILED.clear()
    torch.manual_seed(0)  # every variant starts from the same parameters and gradients
    params = parameters_with_gradients(shapes, device)
    opt = steepest.Muon(
        params, lr=0.02, compile=True, cuda_graph=device.type == "cuda", nonfinite=nonfinite
    )
    with engine_set_to(settings):
        for _ in range(4):
            opt.step()

    def timed_step():
        with engine_set_to(settings):
            opt.step()

    return timed_step, params


#: the engine settings a variant starts from (the defaults)
DEFAULTS = {
    "local_step": LOCAL_STEP,
    "FUSED_MOMENTUM": True,
    "finite_check.FINITE_KERNEL": finite_check.FINITE_KERNEL,
    "STACK_STREAMS": engine.STACK_STREAMS,
    "symmetric.COMMUTING_AUTO_MIN_SIDE": symmetric.COMMUTING_AUTO_MIN_SIDE,
    "gram.R_UPDATE": gram.R_UPDATE,
    "syrk.USE_TMA": syrk.USE_TMA,
    "PRESCALED_STACKS": engine.PRESCALED_STACKS,
}
#: variant -> the engine settings it changes
VARIANTS = {
    "new": {},
    "per-param stage 5": {"local_step": per_param_step},
    "unfused stage 1": {"FUSED_MOMENTUM": False},
    "one stream": {"STACK_STREAMS": 0},
    "2 streams": {"STACK_STREAMS": 2},
    "half-products": {"symmetric.COMMUTING_AUTO_MIN_SIDE": 768},
    "check foreach": {"nonfinite": "raise", "finite_check.FINITE_KERNEL": "torch"},
    "check kernel": {"nonfinite": "raise"},
    "R P^2": {"gram.R_UPDATE": "square"},
    "R P^2 check": {"gram.R_UPDATE": "square", "nonfinite": "raise"},
    "pointer loads": {"syrk.USE_TMA": False},
    "pointer loads check": {"syrk.USE_TMA": False, "nonfinite": "raise"},
    "bf16 stacks": {"PRESCALED_STACKS": False},
    "bf16 stacks check": {"PRESCALED_STACKS": False, "nonfinite": "raise"},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="gpt2-small")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {list(VARIANTS)}")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shapes = SETS[args.set]
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"--variants: {unknown} unknown; choose from {list(VARIANTS)}")
    built = {name: build(shapes, device, VARIANTS[name]) for name in names}
    variants = {name: step for name, (step, _) in built.items()}
    times: dict[str, dict[str, list[float]]] = {
        k: {"isolated": [], "pipelined": []} for k in variants
    }
    for _ in range(args.rounds):
        for name, step in variants.items():
            times[name]["isolated"].append(time_fn(step, warmup=1, repeat=20))
            times[name]["pipelined"].append(pipelined(step))
    summary = {k: {mode: statistics.median(v) for mode, v in t.items()} for k, t in times.items()}
    # every variant took the same steps from the same start: how far its parameters ended
    # from the first variant's (0 when only the schedule of the same kernels differs)
    first = built[names[0]][1]
    for name, (_, params) in built.items():
        summary[name]["max |p - p_first|"] = max(
            (p - q).abs().max().item() for p, q in zip(params, first, strict=True)
        )
    print(f"{'variant':20s} {'isolated':>10s} {'pipelined':>10s}  (median of {args.rounds})")
    for k, v in summary.items():
        gap = v["max |p - p_first|"]
        print(
            f"{k:20s} {v['isolated']:8.3f} ms {v['pipelined']:8.3f} ms  params vs first {gap:.2e}"
        )
    write_result(
        f"ab_step-{args.set}-{variant_tag(names)}", {"summary": summary, "times": times}, args.out
    )


if __name__ == "__main__":
    main()
