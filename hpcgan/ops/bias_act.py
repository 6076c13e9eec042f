"""Fused bias + activation + gain + clamp (StyleGAN2's ``bias_act``).

    y = clamp(act(x + b) * gain, -clamp, clamp)

``b`` is broadcast along dimension ``dim`` of ``x``. The native kernel does it in
one pass over memory; its first and second derivatives are native kernels too
(R1 regularisation differentiates through the discriminator twice).

Shapes: ``x`` any shape ``[..., C, ...]`` with ``C = x.shape[dim]``; ``b`` ``[C]``;
``y`` like ``x`` (same memory format).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable

import torch
import torch.nn.functional as F

from hpcgan.ops import _native


@dataclass(frozen=True)
class Activation:
    code: int  # index in csrc/activations.h
    default_alpha: float
    default_gain: float
    ref: Callable[[torch.Tensor, float], torch.Tensor]


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(0, 0.0, 1.0, lambda x, a: x),
    "relu": Activation(1, 0.0, math.sqrt(2), lambda x, a: F.relu(x)),
    "lrelu": Activation(2, 0.2, math.sqrt(2), lambda x, a: F.leaky_relu(x, a)),
    "tanh": Activation(3, 0.0, 1.0, lambda x, a: torch.tanh(x)),
    "sigmoid": Activation(4, 0.0, 1.0, lambda x, a: torch.sigmoid(x)),
    "elu": Activation(5, 1.0, 1.0, lambda x, a: F.elu(x, a)),
    "selu": Activation(6, 0.0, 1.0, lambda x, a: F.selu(x)),
    "softplus": Activation(7, 0.0, 1.0, lambda x, a: F.softplus(x)),
    "swish": Activation(8, 0.0, math.sqrt(2), lambda x, a: F.silu(x)),
}


@dataclass(frozen=True)
class ActParams:
    """Validated activation settings, as the native kernels take them."""

    name: str
    code: int
    alpha: float
    gain: float
    clamp: float  # < 0: no clamping


def resolve_act(act: str, alpha=None, gain=None, clamp=None) -> ActParams:
    """Check activation arguments and fill in the defaults."""
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {sorted(ACTIVATIONS)}, got {act!r}")
    spec = ACTIVATIONS[act]
    alpha = spec.default_alpha if alpha is None else float(alpha)
    gain = spec.default_gain if gain is None else float(gain)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    if not math.isfinite(gain):
        raise ValueError(f"gain must be finite, got {gain}")
    if clamp is None:
        clamp_v = -1.0
    else:
        clamp_v = float(clamp)
        if not (clamp_v >= 0 and math.isfinite(clamp_v)):
            raise ValueError(f"clamp must be None or a finite number >= 0, got {clamp}")
    return ActParams(act, spec.code, alpha, gain, clamp_v)


def _check_tensors(x, b, dim: int) -> int:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if not isinstance(dim, int):
        raise ValueError(f"dim must be an int, got {dim!r}")
    if x.ndim == 0:
        if b is not None:
            raise ValueError("x must have at least one dimension when b is given")
        return 0
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim must be in [{-x.ndim}, {x.ndim}) for x of shape {tuple(x.shape)}, got {dim}")
    dim = dim % x.ndim
    if b is None:
        return dim
    if not isinstance(b, torch.Tensor):
        raise ValueError(f"b must be a torch.Tensor or None, got {type(b).__name__}")
    if b.ndim != 1 or b.shape[0] != x.shape[dim]:
        raise ValueError(f"b must have shape [{x.shape[dim]}] (x.shape[dim]), got {tuple(b.shape)}")
    if b.dtype != x.dtype:
        raise ValueError(f"b must have the dtype of x ({x.dtype}), got {b.dtype}")
    if b.device != x.device:
        raise ValueError(f"b must be on the device of x ({x.device}), got {b.device}")
    return dim


def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None, impl="auto"):
    """Add bias ``b`` along ``dim``, apply ``act``, scale by ``gain``, clamp to ±``clamp``.

    Args:
        x: input tensor, any shape, floating point.
        b: optional bias of shape ``[x.shape[dim]]``.
        dim: the dimension of ``x`` that ``b`` runs along.
        act: one of linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish.
        alpha: slope or scale parameter (lrelu: negative slope, default 0.2;
            elu: default 1.0); ignored by the others.
        gain: output scale; default sqrt(2) for relu, lrelu and swish, else 1.
        clamp: clamp the output to [-clamp, clamp]; None disables.
        impl: "auto", "native" or "ref" (see hpcgan.ops._native).

    Returns:
        Tensor shaped like ``x``, of x's dtype. float16 and bfloat16 inputs are
        computed in float32 (both devices) and rounded once at the end;
        ``b`` must have x's dtype.
    """
    dim = _check_tensors(x, b, dim)
    p = resolve_act(act, alpha, gain, clamp)
    if not _native.use_native(impl, x):
        return bias_act_ref(x, b, dim, act, p.alpha, p.gain, None if p.clamp < 0 else p.clamp)
    return torch.ops.hpcgan.bias_act(x, b, dim, p.code, p.alpha, p.gain, p.clamp)


def bias_act_ref(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    """Plain-PyTorch reference of :func:`bias_act` (the test oracle)."""
    p = resolve_act(act, alpha, gain, clamp)
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)  # b [C] as [1, ..., C, ..., 1], C at dim
    x = ACTIVATIONS[act].ref(x, p.alpha)
    if p.gain != 1:
        x = x * p.gain
    if p.clamp >= 0:
        x = x.clamp(-p.clamp, p.clamp)
    return x


# ---------------------------------------------------------------------------
# Registration: fake kernels (for torch.compile and opcheck) and autograd.
# ---------------------------------------------------------------------------


HALF_DTYPES = (torch.float16, torch.bfloat16)


def sum_fp32(t: torch.Tensor, dims, keepdim: bool = False) -> torch.Tensor:
    """``t.sum(dims)``, accumulated in float32 when ``t`` is float16/bfloat16; in t's dtype."""
    if t.dtype in HALF_DTYPES:
        return t.sum(dim=dims, keepdim=keepdim, dtype=torch.float32).to(t.dtype)
    return t.sum(dim=dims, keepdim=keepdim)


def _reduce_except(t: torch.Tensor, dim: int) -> torch.Tensor:
    return sum_fp32(t, [i for i in range(t.ndim) if i != dim])


def _bias_act_fake(x, b, dim, act, alpha, gain, clamp):
    """Fake ``bias_act``: y like x (same memory format)."""
    return torch.empty_like(x)


def _bias_act_grad_fake(dy, x, b, dim, act, alpha, gain, clamp, order):
    """Fake ``bias_act_grad``: like x."""
    return torch.empty_like(x)


def _setup(ctx, inputs, output):
    """Save x and b, and the scalar arguments, for :func:`_backward`."""
    x, b, dim, act, alpha, gain, clamp = inputs
    ctx.save_for_backward(x, b)
    ctx.params = (dim, act, alpha, gain, clamp)


def _backward(ctx, dy):
    """Gradient of ``bias_act``: ``dx = bias_act_grad(dy, x, b, order=1)``, ``db = dx`` summed except along dim."""
    x, b = ctx.saved_tensors
    dim = ctx.params[0]
    dx = torch.ops.hpcgan.bias_act_grad(dy, x, b, *ctx.params, 1)
    db = _reduce_except(dx, dim) if b is not None and ctx.needs_input_grad[1] else None  # [C]
    return dx, db, None, None, None, None, None


def _setup_grad(ctx, inputs, output):
    """Save dy, x and b, the scalar arguments and the order, for :func:`_backward_grad`."""
    dy, x, b, dim, act, alpha, gain, clamp, order = inputs
    ctx.save_for_backward(dy, x, b)
    ctx.params = (dim, act, alpha, gain, clamp)
    ctx.order = order


def _backward_grad(ctx, ddx):
    """Gradient of ``bias_act_grad`` (order 1 only: bias_act has first and second derivatives).

    ``bias_act_grad(dy, x) = dy * f'(x + b)``, so its gradient for dy is
    ``ddx * f'(x + b)`` (order 1) and for x and b ``ddx * dy * f''(x + b)`` (order 2).
    """
    if ctx.order != 1:
        raise RuntimeError("bias_act supports first and second order gradients, not third")
    dy, x, b = ctx.saved_tensors
    dim = ctx.params[0]
    g_dy = torch.ops.hpcgan.bias_act_grad(ddx, x, b, *ctx.params, 1) if ctx.needs_input_grad[0] else None
    g_x = g_b = None
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
        g_x = torch.ops.hpcgan.bias_act_grad(ddx * dy, x, b, *ctx.params, 2)
        if b is not None and ctx.needs_input_grad[2]:
            g_b = _reduce_except(g_x, dim)  # [C]
    return g_dy, g_x, g_b, None, None, None, None, None, None


def _register():
    """Register the fake kernels and the autograd of bias_act and bias_act_grad with torch.library."""
    lib = "hpcgan::"
    torch.library.register_fake(lib + "bias_act", _bias_act_fake)
    torch.library.register_fake(lib + "bias_act_grad", _bias_act_grad_fake)
    torch.library.register_autograd(lib + "bias_act", _backward, setup_context=_setup)
    torch.library.register_autograd(lib + "bias_act_grad", _backward_grad, setup_context=_setup_grad)


if _native.available():
    _register()
