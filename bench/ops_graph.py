"""Per-op times inside a CUDA graph, where the fast path runs them: cuBLAS against the Triton
symmetric kernel for each product of the Gram and direct iterations on one set's stacks, and
msign per stack with each kernel choice.

Each case is recorded once as `reps` back-to-back calls in one CUDA graph and replayed; the time
is the replay's mean divided by `reps` (no launch overhead, as in a recorded optimizer step).
The Triton kernel is timed called directly and under torch.compile (where the fast path calls
it: Inductor launches user-defined Triton kernels itself), on random inputs and on a Gram
matrix of a normalized random X (the data the step feeds it).

Usage: python bench/ops_graph.py [--set gpt2-small] [--reps 20]
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
from common import SETS, in_graph_ms, write_result

from steepest.polar import msign
from steepest.polar.kernels import symmetric_product


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="gpt2-small")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    torch.set_default_device("cuda")
    half = torch.float16
    rows: list[dict] = []
    compiled_product = torch.compile(symmetric_product, fullgraph=True, dynamic=False)

    def add(name: str, shape: tuple, flops: float, fns: dict) -> None:
        row = {"op": name, "shape": shape}
        for k, fn in fns.items():
            ms = in_graph_ms(fn, args.reps)
            row[k] = ms
            row[f"{k} TFLOP/s"] = flops / (ms * 1e-3) / 1e12
        rows.append(row)
        cells = "  ".join(f"{k} {row[k] * 1e3:7.1f} us ({row[k + ' TFLOP/s']:5.0f})" for k in fns)
        print(f"{name:26s} {str(shape):18s} {cells}", flush=True)

    for (m, n), count in Counter(SETS[args.set]).items():
        s, l = min(m, n), max(m, n)
        X = torch.randn(count, s, l, dtype=half) / l**0.5
        R = torch.randn(count, s, s, dtype=half) / s**0.5
        R = R + R.mT
        add(
            "X X^T",
            (count, s, l),
            2.0 * count * s * s * l,
            {
                "cuBLAS": lambda X=X: torch.bmm(X, X.mT),
                "triton": lambda X=X: symmetric_product(X, kernel="triton"),
                "compiled": lambda X=X: compiled_product(X, kernel="triton"),
            },
        )
        gram = symmetric_product(X / X.float().norm(dim=(1, 2), keepdim=True).half())
        for label, C in (("b R + c R^2", R), ("b R + c R^2 of a Gram R", gram)):
            add(
                label,
                (count, s, s),
                2.0 * count * s**3,
                {
                    "cuBLAS": lambda C=C: torch.baddbmm(C, C, C, beta=-4.7, alpha=2.0),
                    "triton": lambda C=C: symmetric_product(C, 2.0, C, -4.7, kernel="triton"),
                    "compiled": lambda C=C: compiled_product(C, 2.0, C, -4.7, kernel="triton"),
                },
            )
        add(
            "s x s product",
            (count, s, s),
            2.0 * count * s**3,
            {
                "cuBLAS": lambda R=R: torch.bmm(R, R),
            },
        )
        add(
            "Q X",
            (count, s, l),
            2.0 * count * s * s * l,
            {
                "cuBLAS": lambda R=R, X=X: torch.bmm(R, X),
            },
        )
        G = torch.randn(count, m, n)
        add(
            "msign (fp32 in)",
            (count, m, n),
            0.0,
            {
                "auto": lambda G=G: msign(G, form="auto", kernel="auto"),
                "torch": lambda G=G: msign(G, form="auto", kernel="torch"),
            },
        )
    write_result(f"ops_graph-{args.set}", {"rows": rows}, args.out)


if __name__ == "__main__":
    main()
