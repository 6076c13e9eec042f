"""Convolutions of the half-precision blocks on CPUs without native bfloat16.

Mixed precision on a CPU computes the highest-resolution blocks in bfloat16
(:func:`hpcgan.gan.layers.half_dtype`). oneDNN runs bfloat16 convolutions natively
only where the CPU has AVX-512 (with or without AVX512-BF16) or AMX. On an AVX2-only
CPU (AMD Zen 1-3, as on many EuroHPC CPU partitions, or older Xeons) it takes a
generic path that measured 20-50x slower than float32 on 2 Zen 1 cores (a
[16, 128, 32, 32] 3x3 conv2d: 0.13 s in float32, 7.0 s in bfloat16, forward).

So on such CPUs :func:`conv2d` and :func:`conv_transpose2d` widen bfloat16 inputs to
float32, convolve, and round the output once to bfloat16. That is the arithmetic of a
native bfloat16 convolution (bfloat16 operands, float32 accumulation, one rounding of
the result); only the summation order differs. Activations between layers stay
bfloat16, and autograd rounds the input gradients to bfloat16 the same way, so
gradients of every order go through the same path. Everything else (float32, float16,
CUDA, CPUs with native bfloat16) calls torch's convolution unchanged.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = ["cpu_has_native_bfloat16", "widens_for", "widens", "conv2d", "conv_transpose2d"]


@functools.cache
def cpu_has_native_bfloat16() -> bool:
    """Whether oneDNN has a native bfloat16 convolution on this CPU (AVX-512 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the query: assume the slow path
        return False


def widens_for(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether a convolution of ``dtype`` on ``device`` computes in float32: bfloat16 on a CPU without native
    bfloat16."""
    return torch.device(device).type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bfloat16()


def widens(x: torch.Tensor) -> bool:
    """Whether :func:`conv2d` computes ``x`` in float32 (:func:`widens_for` of x's device and dtype)."""
    return widens_for(x.device, x.dtype)


def _convolve(fn, x: torch.Tensor, weight: torch.Tensor, widen: bool | None, **kw) -> torch.Tensor:
    """``fn(x, weight, **kw)`` in x's dtype, in float32 rounded once when ``widen`` (None: :func:`widens`)."""
    if widens(x) if widen is None else widen:
        return fn(x.float(), weight.float(), **kw).to(x.dtype)
    return fn(x, weight, **kw)


def conv2d(x: torch.Tensor, weight: torch.Tensor, stride=1, padding=0, groups: int = 1,
           widen: bool | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, stride=, padding=, groups=)`` in x's dtype.

    Args:
        x: [N, Cin, H, W].
        weight: [Cout, Cin / groups, kh, kw], of x's dtype.
        widen: compute in float32 and round once to x's dtype; None (default) decides by :func:`widens`.

    Returns:
        [N, Cout, H', W'] of x's dtype.
    """
    return _convolve(F.conv2d, x, weight, widen, stride=stride, padding=padding, groups=groups)


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, stride=1, groups: int = 1,
                     widen: bool | None = None) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight, stride=, groups=)`` in x's dtype (see :func:`conv2d`).

    Args:
        x: [N, Cin, H, W].
        weight: [Cin, Cout / groups, kh, kw], of x's dtype.

    Returns:
        [N, Cout, (H - 1) * stride + kh, (W - 1) * stride + kw] of x's dtype.
    """
    return _convolve(F.conv_transpose2d, x, weight, widen, stride=stride, groups=groups)
