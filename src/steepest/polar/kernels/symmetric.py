"""symmetric_product (alpha X X^T + beta C) for batched operands, through torch or a Triton
kernel that computes half the tiles (steepest.kernels.syrk)."""

from __future__ import annotations

from typing import Final

import torch

from steepest.kernels import triton_available

__all__ = [
    "AUTO_MIN_SIDE",
    "KERNELS",
    "TRITON_DTYPES",
    "resolve_kernel",
    "symmetric_product",
    "triton_available",
]

#: The kernel choices accepted per call: "auto" picks "triton" where it is available and measured
#: faster (see resolve_kernel), else "torch".
KERNELS = ("auto", "torch", "triton")

#: Operand dtypes the Triton kernel takes (fp32 accumulation inside).
TRITON_DTYPES = (torch.bfloat16, torch.float16)

#: "auto" uses the Triton kernel from this short side s on, where it measured faster than
#: cuBLAS on an H100 (bench/kernels.py).
AUTO_MIN_SIDE: Final = 768


def _triton_unsupported(X: torch.Tensor) -> str | None:
    """Why the Triton kernel cannot take X, or None when it can."""
    if not triton_available():
        return "the triton package is not installed"
    if X.device.type != "cuda":
        return f"X is on {X.device}, the Triton kernel needs a CUDA tensor"
    if X.dtype not in TRITON_DTYPES:
        return f"X has dtype {X.dtype}, the Triton kernel takes {[str(d) for d in TRITON_DTYPES]}"
    return None


def resolve_kernel(kernel: str, X: torch.Tensor) -> str:
    """Turn a per-call `kernel` choice into "torch" or "triton" for the (..., s, l) operand X.

    "auto" gives "triton" when the kernel can run (CUDA, bfloat16/float16, triton installed) and
    the short side s is at least AUTO_MIN_SIDE, where it measured faster than cuBLAS; "torch"
    otherwise. "triton" raises ValueError when the kernel cannot run.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r} is unknown; use one of {list(KERNELS)}")
    if kernel == "torch":
        return "torch"
    reason = _triton_unsupported(X)
    if kernel == "triton":
        if reason is not None:
            raise ValueError(f"kernel='triton' cannot run: {reason}; use kernel='auto' or 'torch'")
        return "triton"
    if reason is None and min(X.shape[-2], X.shape[-1]) >= AUTO_MIN_SIDE:
        return "triton"
    return "torch"


def _validate(
    X: torch.Tensor,
    alpha: float,
    C: torch.Tensor | None,
    beta: float,
    out: torch.Tensor | None,
    shift: float = 0.0,
) -> None:
    if not isinstance(X, torch.Tensor) or not X.is_floating_point() or X.ndim < 2:
        got: object = tuple(X.shape) if isinstance(X, torch.Tensor) else type(X).__name__
        raise ValueError(f"symmetric_product: X={got}; need a floating (..., s, l) tensor")
    s = X.shape[-2]
    square = (*X.shape[:-1], s)
    for name, value in (("alpha", alpha), ("beta", beta), ("shift", shift)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"symmetric_product: {name}={value!r}; need a Python float")
    if C is not None and (not isinstance(C, torch.Tensor) or tuple(C.shape) != square):
        got = tuple(C.shape) if isinstance(C, torch.Tensor) else type(C).__name__
        raise ValueError(f"symmetric_product: C has shape {got}; need {square} (X's Gram shape)")
    if C is not None and (C.dtype != X.dtype or C.device != X.device):
        raise ValueError(
            f"symmetric_product: C is {C.dtype} on {C.device}; need X's {X.dtype} on {X.device}"
        )
    if out is not None and (
        not isinstance(out, torch.Tensor)
        or tuple(out.shape) != square
        or out.dtype != X.dtype
        or out.device != X.device
        or not out.is_contiguous()
    ):
        got = (tuple(out.shape), out.dtype) if isinstance(out, torch.Tensor) else type(out)
        raise ValueError(
            f"symmetric_product: out is {got}; need a contiguous {square} tensor in X's dtype "
            f"on X's device"
        )


def symmetric_product(
    X: torch.Tensor,
    alpha: float = 1.0,
    C: torch.Tensor | None = None,
    beta: float = 0.0,
    *,
    kernel: str = "auto",
    out: torch.Tensor | None = None,
    shift: float = 0.0,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """out = scale (alpha X X^T + beta C + shift I) for every (..., s, l) matrix X, C symmetric.

    Math: X X^T is symmetric, so the Triton kernel computes only the tiles (i, j) with i <= j of
    the s x s result (about half of the 2 s^2 l flops) and writes each tile and its transpose from
    one fp32 accumulator; the epilogue adds beta * C[i, j] (and shift on the diagonal tiles'
    diagonal) before the mirror, which is right because C is symmetric. With X = A symmetric
    the same call gives the whole quintic polynomial a I + b A + c A^2 =
    symmetric_product(A, c, A, b, shift=a). The torch path is one bmm or baddbmm (and a
    diagonal add).

    Args:
        X: floating tensor (..., s, l); s <= l is where the saving is largest.
        alpha: scale of X X^T.
        C: optional symmetric tensor (..., s, s) in X's dtype; only its upper tiles are read by
            the Triton kernel.
        beta: scale of C (ignored when C is None).
        kernel: "auto" (default), "torch" or "triton" (see resolve_kernel).
        out: optional (..., s, s) tensor in X's dtype to write into (must not alias X or C).
        shift: added to every diagonal entry (default 0).
        scale: optional factor per matrix, a real tensor of X's leading shape (...,), applied
            to the whole result in float32 (msign folds its normalization into the first
            products this way instead of scaling X).

    Returns:
        The (..., s, s) result in X's dtype (out when given). The Triton path accumulates in fp32
        and rounds once. The torch path rounds float32/float64 results as cuBLAS does; for
        bfloat16/float16 operands it rounds the result once after a float32 epilogue (the
        whole computation in float32 when C is given; see _torch_product).

    References:
        Cesista, "Muon and a Selective Survey on Steepest Descent in Riemannian and Non-Riemannian
        Manifolds" (2025), Alg. 2 (A = X X^T, B = b A + c A^2); arXiv 2505.16932, §4.5.
    """
    _validate(X, alpha, C, beta, out, shift)
    *lead, s, l = X.shape
    scale1 = _batch_scale(scale, X)
    # 3-D operands as they are: under torch.compile a reshape of a column-major view (a tall
    # matrix's transpose, as msign passes it) made Inductor copy it to row-major first
    X3 = X if X.ndim == 3 else X.reshape(-1, s, l)
    C3 = C if C is None or C.ndim == 3 else C.reshape(-1, s, s)
    if resolve_kernel(kernel, X) == "triton" and X3.numel() > 0:
        from steepest.kernels.syrk import syrk_triton

        X3 = _kernel_layout(X3)
        out3 = out.view(-1, s, s) if out is not None else X.new_empty(X3.shape[0], s, s)
        if beta == 0.0:
            C3 = None  # as in torch.baddbmm, beta = 0 ignores C (also its NaNs)
        syrk_triton(X3, float(alpha), C3, float(beta), out3, shift=float(shift), scale=scale1)
        return out3.view(*lead, s, s) if out is None else out
    result = _torch_product(X3, alpha, C3, beta, shift, scale1).view(*lead, s, s)
    if out is None:
        return result
    return out.copy_(result)


#: Dtypes whose torch-path epilogue runs in float32 and is rounded once (as in the Triton kernel).
_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _torch_product(
    X3: torch.Tensor,
    alpha: float,
    C3: torch.Tensor | None,
    beta: float,
    shift: float,
    scale: torch.Tensor | None,
) -> torch.Tensor:
    """symmetric_product's torch path on (batch, s, l) operands.

    float32 and float64 operands: one bmm or baddbmm in their dtype, then the diagonal shift and
    the scale. bfloat16 and float16 operands: the result is rounded to X's dtype once, as the
    Triton epilogue does: with C (the quintic polynomial of a square Gram matrix) the product
    and the epilogue run in float32; without C, X X^T is one bmm in X's dtype (accumulated in
    float32 and rounded once by the backend) and alpha, shift and scale are applied in float32.
    Rounding b A + c A^2 and then the shift separately doubled the bfloat16 error of the
    Newton-Schulz and Polar Express iterations against the float64 iteration.
    """
    if X3.dtype not in _LOW_PRECISION:
        if C3 is None:
            result = torch.bmm(X3, X3.mT)
            if alpha != 1.0:
                result = result * alpha
        else:
            result = torch.baddbmm(C3, X3, X3.mT, beta=beta, alpha=alpha)
        if shift != 0.0:
            result.diagonal(dim1=-2, dim2=-1).add_(shift)
        if scale is not None:
            result = (result * scale.to(result.dtype)[:, None, None]).to(X3.dtype)
        return result
    if C3 is None:
        result = torch.bmm(X3, X3.mT)
        if alpha == 1.0 and shift == 0.0 and scale is None:
            return result
        result = result.float() * alpha
    else:
        wide = X3.float()
        result = torch.baddbmm(C3.float(), wide, wide.mT, beta=beta, alpha=alpha)
    if shift != 0.0:
        result.diagonal(dim1=-2, dim2=-1).add_(shift)
    if scale is not None:
        result = result * scale[:, None, None]
    return result.to(X3.dtype)


def _batch_scale(scale: torch.Tensor | None, X: torch.Tensor) -> torch.Tensor | None:
    """symmetric_product's per-matrix ``scale`` as a contiguous float32 vector (float64 for a
    float64 X), one entry per matrix of X; ValueError for another shape or device."""
    if scale is None:
        return None
    if (
        not isinstance(scale, torch.Tensor)
        or not scale.is_floating_point()
        or tuple(scale.shape) != tuple(X.shape[:-2])
        or scale.device != X.device
    ):
        got = (tuple(scale.shape), scale.dtype) if isinstance(scale, torch.Tensor) else scale
        raise ValueError(
            f"symmetric_product: scale is {got}; need a real tensor of X's leading shape "
            f"{tuple(X.shape[:-2])} on {X.device}"
        )
    wide = torch.float64 if X.dtype == torch.float64 else torch.float32
    return scale.reshape(-1).to(wide).contiguous()


def _kernel_layout(M: torch.Tensor) -> torch.Tensor:
    """M as the Triton kernel reads it: row- or column-major matrices in place (its loads
    follow the strides), any other layout copied to row-major."""
    return M if M.stride(-1) == 1 or M.stride(-2) == 1 else M.contiguous()
