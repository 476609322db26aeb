"""How far the Gram form's result lies from the float64 iteration, with the chain's s x s
products as cuBLAS full products or as the Triton half-products (commuting_product), and with
R updated as P R P or as R P^2 (steepest.polar.gram.R_UPDATE).

For each stack shape and input kind (Gaussian; log-uniform singular values in [1e-3, 1]; a
rank-8 signal plus 1% noise, like a gradient), msign(form="gram") in float16 with every
symmetric product on the Triton kernel, once with the chain on cuBLAS and once on the
half-products, against the 5-step Polar Express iteration in float64 on the same input.
Prints the worst relative Frobenius error over the stack and the worst error of the singular
values against the float64 map p(s), and times each variant in a CUDA graph.

Usage: python bench/gram_accuracy.py [--variants cuBLAS,half,R P^2]
"""

from __future__ import annotations

import argparse

import torch
from common import (
    in_graph_ms,
    polar_express_float64,
    sample_matrices,
    variant_tag,
    write_result,
)

from steepest.polar import gram, msign
from steepest.polar.kernels import symmetric

NEVER = 1 << 30
#: variant -> (COMMUTING_AUTO_MIN_SIDE, R_UPDATE)
VARIANTS = {"cuBLAS": (NEVER, "sandwich"), "half": (0, "sandwich"), "R P^2": (NEVER, "square")}
SHAPES = ((6, 384, 1536), (18, 384, 384), (12, 768, 3072), (12, 768, 2304))


def reference(G: torch.Tensor) -> torch.Tensor:
    X = G.double()
    return polar_express_float64(X / (1.01 * torch.linalg.matrix_norm(X, keepdim=True)))


def errors(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    out = out.double()
    rel = torch.linalg.matrix_norm(out - ref) / torch.linalg.matrix_norm(ref)
    sv = torch.linalg.svdvals(out) - torch.linalg.svdvals(ref)
    return rel.max().item(), sv.abs().max().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--variants", default="cuBLAS,half", help=f"of {list(VARIANTS)}")
    args = parser.parse_args(argv)
    chains = args.variants.split(",")
    if any(c not in VARIANTS for c in chains):
        parser.error(f"--variants: choose from {list(VARIANTS)}")
    torch.set_default_device("cuda")
    torch.manual_seed(0)
    symmetric.AUTO_MIN_SIDE = 0
    rows = []
    for count, s, l in SHAPES:
        for case, G in sample_matrices(count, s, l).items():
            ref = reference(G)
            row: dict = {"shape": (count, s, l), "input": case}
            for chain in chains:
                symmetric.COMMUTING_AUTO_MIN_SIDE, gram.R_UPDATE = VARIANTS[chain]
                X = G.float()
                row[f"{chain} rel. error"], row[f"{chain} sv error"] = errors(
                    msign(X, form="gram"), ref
                )
                if case == "gaussian":
                    row[f"{chain} us"] = in_graph_ms(lambda X=X: msign(X, form="gram"), args.reps)
                    row[f"{chain} us"] *= 1e3
            rows.append(row)
            cells = "  ".join(
                f"{c}: rel {row[f'{c} rel. error']:.2e} sv {row[f'{c} sv error']:.2e}"
                + (f" {row[f'{c} us']:6.1f} us" if f"{c} us" in row else "")
                for c in chains
            )
            print(f"{str((count, s, l)):16s} {case:15s} {cells}", flush=True)
    tag = "" if chains == ["cuBLAS", "half"] else f"-{variant_tag(chains)}"
    write_result(f"gram_accuracy{tag}", {"rows": rows}, args.out)


if __name__ == "__main__":
    main()
