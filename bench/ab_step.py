"""A/B of fast-path options: variants of steepest.Muon side by side on one device in one run.

Each variant is a comma-separated list of key=value options, given on the command line:
FastPath fields (streams, fused_momentum, prescaled_stacks, device_check, recompile_limit,
kernels) and optimizer keywords (nonfinite, polar_kernel, polar_form, polar_dtype, compile,
cuda_graph); "default" is the default constructed optimizer. Variants run with
nonfinite="ignore" unless they set it. Each variant is built and warmed up (compiled and
recorded) once; then their steps are timed interleaved (A B A B ...), isolated and pipelined,
and the medians printed, with how far each variant's parameters ended from the first
variant's (all start equal and take the same steps).

Usage:
    python bench/ab_step.py --set gpt2-small --variants "default;streams=1;fused_momentum=false"
    python bench/ab_step.py --variants "nonfinite=raise;nonfinite=raise,kernels=torch"
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import fields

import torch
from common import SETS, parameters_with_gradients, pipelined, time_fn, variant_tag, write_result

import steepest
from steepest.optim.fast import FastPath

#: FastPath's option names, and the optimizer keywords a variant may set.
FAST_KEYS = {f.name for f in fields(FastPath)} - {"capture"}
OPTIMIZER_KEYS = {"nonfinite", "polar_kernel", "polar_form", "polar_dtype", "compile", "cuda_graph"}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def parse_variant(spec: str) -> tuple[dict, dict]:
    """'streams=1,nonfinite=raise' -> (FastPath keywords, optimizer keywords)."""
    fast: dict = {}
    optimizer: dict = {"nonfinite": "ignore"}
    if spec.strip() in ("", "default"):
        return fast, optimizer
    for item in spec.split(","):
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or key not in FAST_KEYS | OPTIMIZER_KEYS:
            raise ValueError(
                f"variant {spec!r}: {item!r} is not key=value with a key of "
                f"{sorted(FAST_KEYS | OPTIMIZER_KEYS)}"
            )
        value: object = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        elif raw.isdigit():
            value = int(raw)
        elif raw.lower() == "none":
            value = None
        elif key == "polar_dtype":
            value = DTYPES[raw]
        (fast if key in FAST_KEYS else optimizer)[key] = value
    return fast, optimizer


def build(shapes, device, spec):
    """A warmed-up optimizer for the variant and its step."""
    fast, optimizer = parse_variant(spec)
    torch._dynamo.reset()
    torch.manual_seed(0)  # every variant starts from the same parameters and gradients
    params = parameters_with_gradients(shapes, device)
    opt = steepest.Muon(params, lr=0.02, fast=FastPath(**fast), **optimizer)
    for _ in range(4):
        opt.step()
    return opt.step, params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="gpt2-small")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--variants",
        default="default;streams=1;fused_momentum=false;prescaled_stacks=false",
        help="variants separated by ';', each a comma-separated list of key=value options",
    )
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shapes = SETS[args.set]
    names = [n.strip() for n in args.variants.split(";")]
    for name in names:
        try:
            parse_variant(name)
        except (ValueError, KeyError) as err:
            parser.error(f"--variants: {err}")
    built = {name: build(shapes, device, name) for name in names}
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
    print(f"{'variant':40s} {'isolated':>10s} {'pipelined':>10s}  (median of {args.rounds})")
    for k, v in summary.items():
        gap = v["max |p - p_first|"]
        print(
            f"{k:40s} {v['isolated']:8.3f} ms {v['pipelined']:8.3f} ms  params vs first {gap:.2e}"
        )
    write_result(
        f"ab_step-{args.set}-{variant_tag(names)}", {"summary": summary, "times": times}, args.out
    )


if __name__ == "__main__":
    main()
