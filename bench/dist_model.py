"""The sharded Muon step at W GPUs, predicted from one GPU's measurements (docs/performance.md).

    python bench/dist_model.py RESULTS.json [--bus-gbps B | --links W>1-RESULTS.json]
    python bench/dist_model.py --single gpt2-small=2.48,1.3b=65.3 \\
        --adamw gpt2-small=0.94,1.3b=12.9 --bus-gbps B

RESULTS.json is bench/dist.py's world-size-1 file (its single-process, fused AdamW,
replicated and FSDP2 rows); without it, --single (and --adamw) give the single-process fast
path's and fused AdamW's pipelined step in ms. Per set, layout (replicated, FSDP2) and
W = 2, 4, 8 (N matrix entries, S same-shape stacks, d and u bytes per direction and update
entry):

  elementwise  stages 1-2 and 5 (momentum, weight decay, the update): taken as the fused
               AdamW step (both read and write parameter, gradient and state, about 26-28
               bytes per entry); replicated ranks run it on every entry, FSDP2 ranks on 1 / W
  polar        (single - elementwise) times the busiest rank's share of the polar flops under
               the rank plan (steepest.distributed.plan_shapes)
  sharing      the sharded step's own cost at W = 1 (its pipelined time minus the single
               process's: splitting, packing, the degenerate exchange); 0 without RESULTS.json
  bytes/rank   replicated, S all-gathers of the updates: N u (W - 1) / W;
               FSDP2, 2 S all-to-alls of this rank's N / W entries: (N / W)(d + u)(W - 1) / W
  comm         bytes/rank over the bus bandwidth (nccl-tests' definition, so the (W - 1) / W
               factors above are the ones it divides out)
  step         elementwise + sharing + max(polar, comm) + min(polar, comm) / S: the S
               stacks form a pipeline (stack i + 1's exchange travels while stack i is
               orthogonalized), so all of the longer part and one stack's share of the
               shorter are paid; "no overlap": elementwise + sharing + polar + comm
  AdamW        fused AdamW at W: its full step replicated (DDP), 1 / W of it under FSDP2
  hides at     the bus bandwidth above which comm fits under polar

The bandwidth comes from --bus-gbps (state it as an assumption until measured) or from a
bench/dist.py file of W > 1 (--links); a W = 1 file has none (no link is used). On CUDA the
fused stage 1 sends 16-bit directions (d = 2) and its owners return 16-bit updates (u = 2;
an unfused group's travel in float32, u = 4): --direction-bytes, --update-bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from common import SETS  # noqa: E402

from steepest.distributed import plan_shapes  # noqa: E402

WORLDS = (2, 4, 8)


def per_set(text: str, option: str) -> dict[str, float]:
    """ "name=ms,name=ms" -> {name: ms}, names checked against SETS."""
    out = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name not in SETS or not value:
            raise ValueError(f"{option}: {item!r}; need set=ms with a set in {sorted(SETS)}")
        out[name] = float(value)
    return out


def inputs(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """Per set: single, adamw, sharing (per layout) in ms; and where they came from."""
    if args.results is not None:
        results = json.loads(Path(args.results).read_text())
        if results["world"] != 1:
            raise ValueError(f"{args.results}: world={results['world']}; need W = 1")
        rows = []
        for s in results["sets"]:
            single = s["rows"]["single process"]["pipelined_ms"]
            adamw = s["rows"].get("AdamW (fused)", {}).get("pipelined_ms", 0.0)
            sharing = {  # noise can take a sharded row below the single process
                layout: max(0.0, s["rows"][layout]["pipelined_ms"] - single)
                for layout in ("replicated", "FSDP2")
                if layout in s["rows"]
            }
            rows.append({"set": s["set"], "single": single, "adamw": adamw, "sharing": sharing})
        return rows, f"{args.results} ({results['machine']['device']})"
    if args.single is None:
        raise ValueError("give bench/dist.py's W = 1 JSON or --single set=ms,...")
    single = per_set(args.single, "--single")
    adamw = per_set(args.adamw, "--adamw") if args.adamw else {}
    rows = [
        {"set": name, "single": ms, "adamw": adamw.get(name, 0.0), "sharing": {}}
        for name, ms in single.items()
    ]
    return rows, "--single " + args.single + (f" --adamw {args.adamw}" if args.adamw else "")


def bus_bandwidth(args: argparse.Namespace) -> tuple[dict[str, float] | None, str]:
    """Bytes per second for "all_gather" and "all_to_all", and where they came from."""
    if args.bus_gbps is not None:
        rate = args.bus_gbps * 1e9
        return {"all_gather": rate, "all_to_all": rate}, f"--bus-gbps {args.bus_gbps}"
    if args.links is not None:
        data = json.loads(Path(args.links).read_text())
        links = data["bandwidth"]
        if "all_gather_bus_bytes_per_s" not in links:
            raise ValueError(f"--links {args.links}: W = {data['world']} has no link bandwidth")
        rates = {
            "all_gather": links["all_gather_bus_bytes_per_s"],
            "all_to_all": links["all_to_all_bus_bytes_per_s"],
        }
        return rates, f"measured at W = {data['world']} ({args.links})"
    return None, "none given: comm in bytes only"


def predict(
    sets: list[dict[str, Any]],
    rates: dict[str, float] | None,
    direction_bytes: float,
    update_bytes: float,
) -> list[dict[str, Any]]:
    """One row per set, layout and W (times in ms)."""
    rows = []
    for s in sets:
        shapes = SETS[s["set"]]
        entries = sum(m * n for m, n in shapes)
        stacks = len(set(shapes))
        total = sum(plan_shapes(shapes, 1).loads)
        polar_one = max(0.0, s["single"] - s["adamw"])
        for layout in ("replicated", "FSDP2"):
            for w in WORLDS:
                share = max(plan_shapes(shapes, w).totals) / total
                if layout == "replicated":
                    moved = entries * update_bytes * (w - 1) / w
                    elementwise, adamw, collective = s["adamw"], s["adamw"], "all_gather"
                else:
                    moved = (entries / w) * (direction_bytes + update_bytes) * (w - 1) / w
                    elementwise, adamw, collective = s["adamw"] / w, s["adamw"] / w, "all_to_all"
                row = {
                    "set": s["set"],
                    "layout": layout,
                    "W": w,
                    "elementwise_ms": elementwise,
                    "polar_ms": polar_one * share,
                    "sharing_ms": s["sharing"].get(layout, 0.0),
                    "bytes_per_rank": moved,
                    "collectives": stacks if layout == "replicated" else 2 * stacks,
                    "adamw_ms": adamw,
                    "single_over_W_ms": s["single"] / w,
                    "hides_above_gbps": moved / (polar_one * share * 1e-3) / 1e9
                    if polar_one > 0
                    else float("inf"),
                }
                if rates is not None:
                    comm = moved / rates[collective] * 1e3
                    fixed = elementwise + row["sharing_ms"]
                    row["comm_ms"] = comm
                    longer, shorter = max(row["polar_ms"], comm), min(row["polar_ms"], comm)
                    row["step_ms"] = fixed + longer + shorter / stacks
                    row["no_overlap_ms"] = fixed + row["polar_ms"] + comm
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default=None, help="bench/dist.py's W = 1 JSON")
    parser.add_argument("--single", default=None, help="set=ms,...: single-process fast path")
    parser.add_argument("--adamw", default=None, help="set=ms,...: fused AdamW")
    parser.add_argument("--bus-gbps", type=float, default=None, help="bus bandwidth, GB/s")
    parser.add_argument("--links", default=None, help="a bench/dist.py JSON of W > 1")
    parser.add_argument("--direction-bytes", type=float, default=2.0)
    parser.add_argument("--update-bytes", type=float, default=2.0)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.bus_gbps is not None and args.bus_gbps <= 0:
        raise ValueError(f"--bus-gbps {args.bus_gbps}: need a positive bandwidth")
    sets, source = inputs(args)
    rates, where = bus_bandwidth(args)
    rows = predict(sets, rates, args.direction_bytes, args.update_bytes)
    print(f"one-GPU inputs: {source}")
    print(
        f"bandwidth: {where}; bytes per entry: direction {args.direction_bytes:g}, "
        f"update {args.update_bytes:g}"
    )
    head = ("set", "layout", "W", "elem", "polar", "sharing", "MB/rank", "comm", "step")
    print(
        "{:11s} {:10s} {:>2s} {:>7s} {:>7s} {:>7s} {:>8s} {:>7s} {:>7s}".format(*head)
        + f" {'no ovl':>7s} {'AdamW':>7s} {'single/W':>8s} {'hides at':>9s}  (ms, GB/s)"
    )
    for r in rows:
        line = (
            f"{r['set']:11s} {r['layout']:10s} {r['W']:2d} {r['elementwise_ms']:7.2f} "
            f"{r['polar_ms']:7.2f} {r['sharing_ms']:7.2f} {r['bytes_per_rank'] / 1e6:8.1f}"
        )
        if "comm_ms" in r:
            line += f" {r['comm_ms']:7.2f} {r['step_ms']:7.2f} {r['no_overlap_ms']:7.2f}"
        else:
            line += f" {'-':>7s} {'-':>7s} {'-':>7s}"
        line += f" {r['adamw_ms']:7.2f} {r['single_over_W_ms']:8.2f} {r['hides_above_gbps']:9.1f}"
        print(line)
    if args.json:
        payload = {"inputs": source, "bandwidth": where, "rows": rows}
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return rows


if __name__ == "__main__":
    main()
