"""The step at W GPUs, predicted from one GPU's measurements (docs/performance.md).

    python bench/dist_model.py RESULTS.json [--bus-gbps B] [--links W>1-RESULTS.json]
        [--comm-bytes 4]

RESULTS.json is bench/dist.py's W = 1 file. Per set and layout (replicated, FSDP2) and
W = 2, 4, 8:

  compute   the single-process fast path's pipelined step times the busiest rank's share of
            the polar flops under the rank plan (steepest.distributed.plan_shapes): the step
            is taken to scale with the polar iteration's flops
  sharing   the sharded step's own cost at W = 1 (its pipelined time minus the single
            process's: splitting, packing, the degenerate exchange), kept as is
  comm      bytes each rank moves over the link divided by the bus bandwidth:
            replicated, one all-gather of all updates: N b (W - 1) / W;
            FSDP2, two all-to-alls of its 1 / W share: 2 (N b / W) (W - 1) / W
            (N entries, b bytes each: --comm-bytes, 4 for float32, 2 for bfloat16)
  step      sharing + max(compute, comm) + comm / stacks (stack i + 1's exchange hides
            behind stack i's products, the first and last exchanges do not); without
            overlap: sharing + compute + comm

The bus bandwidth (nccl-tests' definition) comes from --bus-gbps or a bench/dist.py file of
W > 1 (--links); a W = 1 file holds only a device-to-device copy bandwidth, which is not a
link: without either, the comm column is printed in bytes only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from common import SETS  # noqa: E402

from steepest.distributed import plan_shapes  # noqa: E402

WORLDS = (2, 4, 8)


def bus_bandwidth(args: argparse.Namespace) -> tuple[dict[str, float] | None, str]:
    """Bytes per second for "all_gather" and "all_to_all", and where they came from."""
    if args.bus_gbps is not None:
        rate = args.bus_gbps * 1e9
        return {"all_gather": rate, "all_to_all": rate}, f"--bus-gbps {args.bus_gbps}"
    if args.links is not None:
        data = json.loads(Path(args.links).read_text())
        links = data["bandwidth"]
        rates = {
            "all_gather": links["all_gather_bus_bytes_per_s"],
            "all_to_all": links["all_to_all_bus_bytes_per_s"],
        }
        return rates, f"measured at W = {data['world']} ({args.links})"
    return None, "no link bandwidth given (W = 1 has none): comm in bytes only"


def predict(results: dict, rates: dict[str, float] | None, comm_bytes: int) -> list[dict]:
    """One row per set, layout and W."""
    rows = []
    for s in results["sets"]:
        shapes = SETS[s["set"]]
        entries = sum(m * n for m, n in shapes)
        stacks = len(set(shapes))
        single = s["rows"]["single process"]["pipelined_ms"]
        total = sum(plan_shapes(shapes, 1).loads)
        for layout, collective in (("replicated", "all_gather"), ("FSDP2", "all_to_all")):
            sharing = max(0.0, s["rows"][layout]["pipelined_ms"] - single)  # noise can go below
            for w in WORLDS:
                plan = plan_shapes(shapes, w)
                compute = single * max(plan.totals) / total
                if layout == "replicated":
                    moved = entries * comm_bytes * (w - 1) / w
                else:
                    moved = 2 * (entries * comm_bytes / w) * (w - 1) / w
                row = {
                    "set": s["set"],
                    "layout": layout,
                    "W": w,
                    "compute_ms": compute,
                    "sharing_ms": sharing,
                    "bytes_per_rank": moved,
                    "single_over_W_ms": single / w,
                }
                if rates is not None:
                    comm = moved / rates[collective] * 1e3
                    row["comm_ms"] = comm
                    row["step_ms"] = sharing + max(compute, comm) + comm / stacks
                    row["no_overlap_ms"] = sharing + compute + comm
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="bench/dist.py's W = 1 JSON")
    parser.add_argument("--bus-gbps", type=float, default=None, help="link bus bandwidth, GB/s")
    parser.add_argument("--links", default=None, help="a bench/dist.py JSON of W > 1")
    parser.add_argument("--comm-bytes", type=int, default=4, choices=(2, 4))
    args = parser.parse_args(argv)
    results = json.loads(Path(args.results).read_text())
    if results["world"] != 1:
        raise ValueError(f"{args.results}: world={results['world']}; need bench/dist.py at W = 1")
    rates, source = bus_bandwidth(args)
    print(f"bandwidth: {source}; device: {results['machine']['device']}")
    head = f"{'set':12s} {'layout':10s} {'W':>2s} {'compute':>8s} {'sharing':>8s} {'MB/rank':>8s}"
    print(head + f" {'comm':>8s} {'step':>8s} {'no ovl':>8s} {'single/W':>8s}  (ms)")
    for r in predict(results, rates, args.comm_bytes):
        line = (
            f"{r['set']:12s} {r['layout']:10s} {r['W']:2d} {r['compute_ms']:8.2f} "
            f"{r['sharing_ms']:8.2f} {r['bytes_per_rank'] / 1e6:8.1f}"
        )
        if "comm_ms" in r:
            line += f" {r['comm_ms']:8.2f} {r['step_ms']:8.2f} {r['no_overlap_ms']:8.2f}"
        else:
            line += f" {'-':>8s} {'-':>8s} {'-':>8s}"
        print(line + f" {r['single_over_W_ms']:8.2f}")


if __name__ == "__main__":
    main()
