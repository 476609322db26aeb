"""The ``steepest`` command. ``steepest`` alone prints this help; options without a
subcommand (``steepest --task quadratic``) run ``steepest compare``.

Subcommands:
    compare     tune and compare optimizers on a task; writes a table, JSON, CSV and plots.
    reproduce   a cited paper's figure: ``<out>/<name>.png`` and ``<out>/<name>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import torch

import steepest
from steepest.experiments.compare import compare, default_settings
from steepest.experiments.optimizers import OPTIMIZERS
from steepest.experiments.report import (
    format_table,
    write_csv,
    write_json,
    write_json_record,
    write_plots,
)
from steepest.experiments.reproduce import CLEARLY, QUICK_OPTIONS, TARGET_CHOICES, TARGETS
from steepest.experiments.tasks import TASKS, make_task, parse_key_values, parse_options

__all__ = ["main", "build_parser"]

DEFAULT_TASK: Final = "shakespeare-char"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive int")
    return value


def _lr_pairs(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        lr = float(value)
    except ValueError:
        lr = -1.0
    if not sep or name not in OPTIMIZERS or not lr > 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected OPTIMIZER=LR with OPTIMIZER one of {', '.join(OPTIMIZERS)} "
            "and LR > 0"
        )
    return name, lr


def _setting_pairs(low: float, high: float) -> Any:
    """An argparse type for ``OPTIMIZER=VALUE`` with ``low <= VALUE < high``."""

    def parse(text: str) -> tuple[str, float]:
        name, sep, value = text.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or name not in OPTIMIZERS or not low <= number < high:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected OPTIMIZER=VALUE with OPTIMIZER one of "
                f"{', '.join(OPTIMIZERS)} and {low:g} <= VALUE < {high:g}"
            )
        return name, number

    return parse


def _horizons(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(v > 0 and math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated positive multiples of --steps, e.g. 0.5,1,2"
        )
    return values


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``steepest`` and its subcommands."""
    parser = argparse.ArgumentParser(prog="steepest", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compare", help="compare optimizers on a task (the default command)")
    p.add_argument("--task", default=DEFAULT_TASK, choices=list(TASKS))
    p.add_argument(
        "--optimizers",
        default="adamw,muon",
        help=f"comma-separated, from {', '.join(OPTIMIZERS)} (default adamw,muon)",
    )
    p.add_argument("--steps", type=_positive_int, help="training steps (default: the task's)")
    p.add_argument("--seeds", type=_positive_int, default=2, help="seeds 0..K-1 (default 2)")
    p.add_argument(
        "--tune",
        action="store_true",
        help="tune per optimizer lr, warmup, beta2 (AdamW) and adamw_lr on widening grids first",
    )
    p.add_argument(
        "--horizons",
        type=_horizons,
        default=(0.5, 1.0),
        help="multiples of --steps at which every optimizer also trains on its own full "
        "schedule (default 0.5,1); gives the schedule-matched ratio",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", type=Path, help="output folder (default runs/compare-<task>)")
    p.add_argument("--eval-every", type=_positive_int, help="default: the task's")
    p.add_argument(
        "--lr",
        type=_lr_pairs,
        action="append",
        default=[],
        metavar="OPT=LR",
        help="matrix learning rate of OPT (repeatable)",
    )
    p.add_argument(
        "--adamw-lr",
        type=_lr_pairs,
        action="append",
        default=[],
        metavar="OPT=LR",
        help="learning rate of OPT's AdamW groups (repeatable)",
    )
    p.add_argument(
        "--warmup",
        type=_setting_pairs(0.0, 1.0),
        action="append",
        default=[],
        metavar="OPT=FRACTION",
        help="warmup fraction of OPT, in [0, 1) (repeatable)",
    )
    p.add_argument(
        "--beta2",
        type=_setting_pairs(0.0, 1.0),
        action="append",
        default=[],
        metavar="OPT=BETA2",
        help="AdamW beta2 of OPT, in [0, 1) (repeatable)",
    )
    p.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a task option, e.g. rank=4 for quadratic (repeatable)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="CPU threads for torch (default: all cores available to the process)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    r = sub.add_parser("reproduce", help="test a paper's claim: figure, JSON and verdict")
    r.add_argument("name", nargs="?", choices=list(TARGETS), help="the target (or --all)")
    r.add_argument("--all", action="store_true", help="run every target; print a verdict table")
    r.add_argument(
        "--quick", action="store_true", help="the targets' small settings (minutes on a CPU)"
    )
    r.add_argument("--out", type=Path, help="output folder (default runs/reproduce)")
    r.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a keyword option of the target, e.g. steps=50 (repeatable)",
    )
    r.add_argument("--threads", type=_positive_int, help="CPU threads for torch")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def target_options(name: str, pairs: list[str]) -> dict[str, Any]:
    """Parse ``["key=value", ...]`` for reproduce target ``name`` by its keyword defaults' types."""
    params = inspect.signature(TARGETS[name]).parameters
    types = {k: type(p.default) for k, p in params.items() if p.kind is p.KEYWORD_ONLY}
    types.pop("progress", None)
    options = parse_key_values(pairs, types, "--option", f"target {name!r}")
    for pair in pairs:
        key = pair.partition("=")[0]
        choices = TARGET_CHOICES.get(name, {}).get(key)
        if choices is not None and options[key] not in choices:
            raise ValueError(f"--option {pair!r}: {key} must be one of {', '.join(choices)}")
        number = isinstance(options[key], (int, float))
        if number and not options[key] > 0 and key not in ("seed", "exponent"):
            raise ValueError(f"--option {pair!r}: {key} must be positive")
    return options


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``steepest`` console script; returns the exit status."""
    given = list(sys.argv[1:] if argv is None else argv)
    argv = given
    parser = build_parser()
    if not given:  # a comparison takes minutes: say what the command does instead
        parser.print_help()
        return 0
    if given[0].startswith("-") and given[0] not in ("-h", "--help"):
        argv = ["compare", *given]
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    try:
        if args.command == "reproduce":
            return _reproduce(parser, args, given)
        return _compare(parser, args, given)
    finally:
        torch.set_num_threads(threads)  # leave the process as we found it


def _compare(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> int:
    optimizers = [name.strip() for name in args.optimizers.split(",") if name.strip()]
    bad = [n for n in optimizers if n not in OPTIMIZERS]
    repeated = sorted({n for n in optimizers if optimizers.count(n) > 1})
    if bad or not optimizers or repeated:
        what = (
            f"unknown {', '.join(map(repr, bad))}"
            if bad
            else f"repeated {', '.join(map(repr, repeated))}"
            if repeated
            else "no names"
        )
        parser.error(
            f"--optimizers {args.optimizers!r}: {what}; give distinct names from "
            f"{', '.join(OPTIMIZERS)}"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available; use --device cpu")
    try:
        task = make_task(args.task, **parse_options(args.task, args.task_option))
    except ValueError as err:
        parser.error(str(err))
    settings = {}
    given_settings = {
        "lr": dict(args.lr),
        "adamw_lr": dict(args.adamw_lr),
        "warmup": dict(args.warmup),
        "beta2": dict(args.beta2),
    }
    for name in optimizers:
        chosen = {k: v[name] for k, v in given_settings.items() if name in v}
        settings[name] = dataclasses.replace(default_settings(task, name), **chosen)
    out = args.out or Path("runs") / f"compare-{task.name}"
    out.mkdir(parents=True, exist_ok=True)
    if args.device == "cpu":
        torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    device = torch.device(args.device)
    steps = args.steps or task.steps
    eval_every = min(args.eval_every or task.eval_every, steps)
    seeds = list(range(args.seeds))

    start = time.perf_counter()
    result = compare(
        task,
        optimizers,
        steps=steps,
        seeds=seeds,
        device=device,
        eval_every=eval_every,
        tune=args.tune,
        settings=settings,
        horizons=args.horizons,
        progress=not args.no_progress,
    )
    record = {
        "task": task.name,
        "task_options": task.options(),
        "optimizers": optimizers,
        "steps": steps,
        "eval_every": eval_every,
        "schedule": task.schedule,
        # the task's pre-tuned settings are in use unless tuning or every setting is given
        "tuned_by": None
        if args.tune or all(name in v for v in given_settings.values() for name in optimizers)
        else task.tuned_by or None,
        "given_settings": {k: v for k, v in given_settings.items() if v},
        "seeds": seeds,
        "tune": args.tune,
        "metrics": list(task.metrics),
        **result,
        "run_summaries": [
            {"optimizer": r.optimizer, "seed": r.seed, **task.run_summary(r.curve)}
            for r in result["runs"]
        ],
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads)",
        "torch_version": torch.__version__,
        "steepest_version": steepest.__version__,
        "python_version": platform.python_version(),
        "command": shlex.join(["steepest", *argv]),
        "wall_time_s": time.perf_counter() - start,
    }
    write_json(record, out / "results.json")
    write_csv(record["runs"], out / "curves.csv")
    write_plots(record, out)
    print(format_table(record))
    print(
        f"\n{task.name}, {len(seeds)} seed(s), {steps} steps, {record['device']}, "
        f"{record['wall_time_s']:.0f} s; written to {out}/"
    )
    return 0


def _reproduce(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    argv: list[str],
    targets: Mapping[str, Callable[..., dict[str, Any]]] = TARGETS,
    quick_options: Mapping[str, dict[str, Any]] = QUICK_OPTIONS,
) -> int:
    """``steepest reproduce``: the named target or every one of ``targets`` (name -> the
    function that runs it; ``quick_options``: its --quick keyword arguments)."""
    if (args.name is None) == (not args.all):
        parser.error("reproduce: give one target NAME or --all (not both)")
    names = list(targets) if args.all else [args.name]
    if args.all and args.option:
        parser.error("reproduce --all: --option applies to one target; drop it or name one")
    try:
        options = {} if args.all else target_options(args.name, args.option)
    except ValueError as err:
        parser.error(str(err))
    out = args.out or Path("runs") / "reproduce"
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    table = []
    for name in names:
        start = time.perf_counter()
        kwargs = {**(quick_options[name] if args.quick else {}), **options}
        record = targets[name](out, progress=not args.no_progress, **kwargs)
        seconds = time.perf_counter() - start
        record.update(_provenance(["steepest", *argv], seconds))
        write_json_record(record, out / f"{name}.json")
        print(f"\nreproduce {name} ({seconds:.0f} s): wrote {out / name}.png and .json")
        for v in record["verdicts"]:
            print(f"  claim:     {v['claim']}")
            print(f"  criterion: {v['criterion']}")
            print(f"  verdict:   {v['outcome']}: {v['evidence']}")
            label = v["criterion"][1:].partition("]")[0] if v["criterion"][0] == "[" else ""
            table.append((name, v["outcome"], label))
    print(f"\n{CLEARLY}\n")
    width = max(len(n) for n, _, _ in table)
    for name, outcome, label in table:
        print(f"{name.ljust(width)}  {outcome.ljust(12)}  {label}".rstrip())
    return 0


def _provenance(command: list[str], seconds: float) -> dict[str, Any]:
    """Machine, versions, the command and its wall time, for a result file."""
    return {
        "device": f"cpu ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads)",
        "torch_version": torch.__version__,
        "steepest_version": steepest.__version__,
        "python_version": platform.python_version(),
        "command": shlex.join(command),
        "wall_time_s": seconds,
    }
