"""StyleGAN2's modulated convolution, with the epilogue fused.

For sample n, output channel o and input channel i::

    w'[n, o, i] = weight[o, i] * styles[n, i]                       (modulation)
    w''[n, o, i] = w'[n, o, i] / sqrt(sum_{i, ky, kx} w'[n, o, i]^2 + eps)   (demodulation)
    y[n] = act(conv(resample(x[n]), w''[n]) + noise[n] + bias) * gain, clamped

The native path never builds the per-sample weights. It scales the activations
instead (modulation, one pass that also lays them out channels_last for
oneDNN), runs one ordinary convolution for the whole batch (oneDNN/cuDNN
GEMMs), and applies demodulation, noise, bias, activation, gain and clamp in one
fused epilogue pass. The demodulation coefficients come from a small GEMM,
``rsqrt(styles^2 @ sum_k(weight^2)^T + eps)``. In the backward pass the same
pieces run fused unless a graph of the gradient is being built (path-length
regularisation differentiates through the generator twice): then the backward
is built from differentiable pieces (bias_act_grad, aten ops), so any second
derivative is exact.

Shapes:
    x:       [N, Cin, H, W]
    weight:  [Cout, Cin, kh, kw]
    styles:  [N, Cin]
    noise:   [N or 1, 1, Hout, Wout] (already scaled by its strength) or None
    bias:    [Cout] or None
    returns  [N, Cout, Hout, Wout], Hout = H*up + 2*pad_y - kh + 1 (then // down)

Up-sampling (up > 1), as in StyleGAN2: a transposed convolution with stride
``up`` (weight flipped, so that away from the borders it equals zero insertion
followed by the convolution), then the FIR ``resample_filter`` with gain up^2,
cropped to ``Hout = H*up + 2*pad_y - kh + 1``. Down-sampling (down > 1): the
convolution, then ``downsample2d`` with the filter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hpcgan.ops import _native, conv
from hpcgan.ops._args import int_pair
from hpcgan.ops.bias_act import bias_act_ref, resolve_act, sum_fp32
from hpcgan.ops.upfirdn2d import downsample2d, setup_filter, upfirdn2d

DEMOD_EPS = 1e-8
CHANNELS_LAST_MIN_PIXELS = 32 * 32


def _validate(x, weight, styles, noise, up, down, padding, resample_filter, bias):
    for name, t in (("x", x), ("weight", weight), ("styles", styles)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be floating point, got dtype {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"{name} must be on the device of x ({x.device}), got {t.device}")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D [N, Cin, H, W], got shape {tuple(x.shape)}")
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D [Cout, Cin, kh, kw], got shape {tuple(weight.shape)}")
    N, Cin = x.shape[:2]
    if weight.shape[1] != Cin:
        raise ValueError(f"weight has {weight.shape[1]} input channels but x has {Cin} (weight.shape[1] must equal x.shape[1])")
    if styles.shape != (N, Cin):
        raise ValueError(f"styles must have shape [N, Cin] = [{N}, {Cin}], got {tuple(styles.shape)}")
    upx, upy = int_pair(up, "up")
    downx, downy = int_pair(down, "down")
    if upx != upy or downx != downy:
        raise ValueError(f"up and down must be the same in x and y, got up={up}, down={down}")
    if upx < 1:
        raise ValueError(f"up must be >= 1, got {up}")
    if downx < 1:
        raise ValueError(f"down must be >= 1, got {down}")
    if upx > 1 and downx > 1:
        raise ValueError("up and down cannot both be > 1 in one modulated convolution")
    px, py = int_pair(padding, "padding")
    if resample_filter is not None and (not isinstance(resample_filter, torch.Tensor) or resample_filter.ndim not in (1, 2)):
        raise ValueError("resample_filter must be None or a 1-D or 2-D tensor (see setup_filter)")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape [Cout] = [{weight.shape[0]}], got {getattr(bias, 'shape', bias)}")
    return upx, downx, px, py


def _out_size(x, weight, up, down, px, py):
    H, W = x.shape[2], x.shape[3]
    kh, kw = weight.shape[2], weight.shape[3]
    ho, wo = H * up + 2 * py - kh + 1, W * up + 2 * px - kw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"padding {px, py} is too small for kernel {kh}x{kw} on a {H}x{W} input (empty output)")
    if down > 1:
        ho, wo = ho // down, wo // down
    return ho, wo


def _check_noise(noise, x, N, ho, wo):
    if noise is None:
        return
    if not isinstance(noise, torch.Tensor) or noise.ndim != 4 or noise.shape[1] != 1 or noise.shape[0] not in (1, N) or tuple(noise.shape[2:]) != (ho, wo):
        raise ValueError(f"noise must have shape [{N} or 1, 1, {ho}, {wo}], got {getattr(noise, 'shape', noise)}")
    if noise.device != x.device:
        raise ValueError(f"noise must be on the device of x ({x.device}), got {noise.device}")


def modulated_conv2d(
    x,
    weight,
    styles,
    noise=None,
    up=1,
    down=1,
    padding=0,
    resample_filter=None,
    demodulate=True,
    bias=None,
    act="linear",
    alpha=None,
    gain=None,
    clamp=None,
    impl="auto",
):
    """Modulated (and demodulated) convolution with a fused noise/bias/activation epilogue.

    Args:
        x: ``[N, Cin, H, W]`` activations.
        weight: ``[Cout, Cin, kh, kw]`` convolution weight.
        styles: ``[N, Cin]`` per-sample scales of the input channels.
        noise: ``[N or 1, 1, Hout, Wout]`` added after demodulation, or None.
        up: up-sampling factor (1 or more), applied before the convolution.
        down: down-sampling factor (1 or more), applied after the convolution.
        padding: convolution padding, int or [x, y].
        resample_filter: FIR filter for up/down (default ``setup_filter([1, 3, 3, 1])``).
        demodulate: normalise each output channel's modulated weight to unit norm.
        bias, act, alpha, gain, clamp: the epilogue, as in :func:`hpcgan.ops.bias_act`.
        impl: "auto", "native" or "ref".

    Returns:
        ``[N, Cout, Hout, Wout]`` in x's dtype.

    Precision (NVlabs' semantics): the convolution runs in x's dtype. ``weight``
    and ``styles`` may have another dtype (float32 parameters with float16 or
    bfloat16 activations): the demodulation coefficients are computed from
    them in float32 (float64 if either is float64), then weight, styles,
    coefficients, noise and bias are cast to x's dtype. For float16 ``x`` with
    ``demodulate``, weight and styles are first scaled by their max-abs values
    (per output channel and per sample) so that ``x * styles`` cannot overflow;
    demodulation cancels the scaling (up to its eps). Gradients reach each
    input in its own dtype; half-precision data accumulate in float32.
    """
    up, down, px, py = _validate(x, weight, styles, noise, up, down, padding, resample_filter, bias)
    p = resolve_act(act, alpha, gain, clamp)
    ho, wo = _out_size(x, weight, up, down, px, py)
    _check_noise(noise, x, x.shape[0], ho, wo)
    if resample_filter is None and (up > 1 or down > 1):
        resample_filter = setup_filter([1, 3, 3, 1], device=x.device)
    native = _native.use_native(impl, x)
    if not native:
        return modulated_conv2d_ref(x, weight, styles, noise, up, down, (px, py), resample_filter, demodulate, bias, act, p.alpha, p.gain, None if p.clamp < 0 else p.clamp)
    weight, styles, d = _modulation_inputs(x, weight, styles, demodulate)
    noise = None if noise is None else noise.to(x.dtype)
    bias = None if bias is None else bias.to(x.dtype)
    return _native_forward(x, weight, styles, d, noise, bias, up, down, px, py, resample_filter, p)


def _modulation_inputs(x, weight, styles, demodulate):
    """(weight, styles, d) in x's dtype; d ``[N, Cout]`` (None without demodulation)
    is computed in float32 or better from the weight and styles as given."""
    acc = torch.promote_types(torch.promote_types(weight.dtype, styles.dtype), torch.float32)
    w, s = weight.to(acc), styles.to(acc)
    d = None
    if demodulate:
        if x.dtype == torch.float16:  # keep x * styles finite in float16 (NVlabs' pre-normalisation)
            tiny = torch.finfo(acc).tiny
            fan_in = w.shape[1] * w.shape[2] * w.shape[3]
            w = w / (w.abs().amax(dim=[1, 2, 3], keepdim=True).clamp_min(tiny) * math.sqrt(fan_in))  # [Cout, Cin, kh, kw]
            s = s / s.abs().amax(dim=1, keepdim=True).clamp_min(tiny)  # [N, Cin]
        d = (s.square() @ w.square().sum(dim=[2, 3]).t() + DEMOD_EPS).rsqrt()  # [N, Cout]
        d = d.to(x.dtype)
    return w.to(x.dtype), s.to(x.dtype), d


def _up_pads(x, weight, f, up, px, py):
    """upfirdn2d padding after the stride-`up` transposed convolution (see module doc)."""
    H, W = x.shape[2], x.shape[3]
    kh, kw = weight.shape[2], weight.shape[3]
    fh, fw = (f.shape[0], f.shape[0]) if f.ndim == 1 else (f.shape[0], f.shape[1])
    pad0x = px + (fw + up - 1) // 2 - (kw - 1)
    pad0y = py + (fh + up - 1) // 2 - (kh - 1)
    wout, hout = W * up + 2 * px - kw + 1, H * up + 2 * py - kh + 1
    pad1x = wout - (up * (W - 1) + kw) - pad0x + fw - 1
    pad1y = hout - (up * (H - 1) + kh) - pad0y + fh - 1
    return [pad0x, pad1x, pad0y, pad1y]


def _native_forward(x, weight, styles, d, noise, bias, up, down, px, py, f, p):
    """The native path: modulate the activations, one batched convolution, the fused epilogue."""
    # 1. modulation: xs = x * styles. channels_last makes oneDNN's convolution faster from
    # 32x32 on; below that the weights outweigh the activations and layout conversions
    # of the weight cost more.
    cl = x.shape[2] * x.shape[3] >= CHANNELS_LAST_MIN_PIXELS
    xs = torch.ops.hpcgan.modulate(x, styles, cl)  # [N, Cin, H, W]
    # 2. one ordinary convolution for the whole batch, with its resampling (bfloat16 on a CPU without
    # native bfloat16 convolves in float32: hpcgan.ops.conv)
    if up == 1:
        z = conv.conv2d(xs, weight, padding=(py, px))  # [N, Cout, H + 2*py - kh + 1, W + 2*px - kw + 1]
        if down > 1:
            z = downsample2d(z, f, down=down, impl="native")  # [N, Cout, Hout, Wout]
    else:
        pads = _up_pads(x, weight, f, up, px, py)
        wt = weight.flip([2, 3]).transpose(0, 1)  # [Cin, Cout, kh, kw]
        z = conv.conv_transpose2d(xs, wt, stride=up)  # [N, Cout, (H - 1) * up + kh, (W - 1) * up + kw]
        z = upfirdn2d(z, f, padding=pads, gain=up * up, impl="native")  # [N, Cout, Hout, Wout]
    # 3. demodulation, noise, bias, activation, gain and clamp in one pass
    return torch.ops.hpcgan.modconv_epilogue(z, d, noise, bias, p.code, p.alpha, p.gain, p.clamp)  # [N, Cout, Hout, Wout]


def modulated_conv2d_ref(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None, demodulate=True, bias=None, act="linear", alpha=None, gain=None, clamp=None):
    """Plain-PyTorch reference (the test oracle): per-sample weights and a grouped convolution."""
    N, Cin, H, W = x.shape
    Cout, _, kh, kw = weight.shape
    px, py = int_pair(padding, "padding")
    if resample_filter is None and (up > 1 or down > 1):
        resample_filter = setup_filter([1, 3, 3, 1], device=x.device)
    # 1. per-sample weights in float32 or better, then in x's dtype (the precision rules of modulated_conv2d)
    acc = torch.promote_types(torch.promote_types(weight.dtype, styles.dtype), torch.float32)
    w = weight.to(acc)[None] * styles.to(acc)[:, None, :, None, None]  # [N, Cout, Cin, kh, kw]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + DEMOD_EPS).rsqrt()[:, :, None, None, None]  # [N, Cout, Cin, kh, kw]
    w = w.to(x.dtype)
    # 2. the batch as the groups of one grouped convolution, with its resampling
    xg = x.reshape(1, N * Cin, H, W)  # [1, N * Cin, H, W]
    if up > 1:
        wt = w.flip([3, 4]).transpose(1, 2).reshape(N * Cin, Cout, kh, kw)  # [N * Cin, Cout, kh, kw]
        y = F.conv_transpose2d(xg, wt, stride=up, groups=N).reshape(N, Cout, -1, (W - 1) * up + kw)  # [N, Cout, H', W']
        pads = _up_pads(x, weight, resample_filter, up, px, py)
        y = upfirdn2d(y, resample_filter, padding=pads, gain=up * up, impl="ref")  # [N, Cout, Hout, Wout]
    else:
        y = F.conv2d(xg, w.reshape(N * Cout, Cin, kh, kw), padding=(py, px), groups=N)  # [1, N * Cout, H', W']
        y = y.reshape(N, Cout, *y.shape[2:])  # [N, Cout, H', W']
    if down > 1:
        y = downsample2d(y, resample_filter, down=down, impl="ref")  # [N, Cout, Hout, Wout]
    # 3. the epilogue: noise, then bias, activation, gain and clamp
    if noise is not None:
        y = y + noise.to(y.dtype)  # [N, Cout, Hout, Wout] + [N or 1, 1, Hout, Wout]
    return bias_act_ref(y, None if bias is None else bias.to(y.dtype), 1, act, alpha, gain, clamp)


# ---------------------------------------------------------------------------
# Registration: fake kernels and autograd of the fused pieces.
#
# Four native ops (csrc/ops.cpp) make the native path:
#   modulate                   xs = x * s[:, :, None, None]
#   modulate_backward          (gx, gs) of modulate, one pass
#   modconv_epilogue           y = clamp(act(z * d[:, :, None, None] + noise + b) * gain)
#   modconv_epilogue_backward  (gz, gd, gnoise, gb) of the epilogue, one pass
# Each gets a fake kernel (torch.compile, opcheck) and autograd. A backward
# uses the fused native kernel, unless a graph of the gradient is being built
# (torch.is_grad_enabled() inside backward: create_graph=True, as path-length
# regularisation does); then it is built from differentiable pieces, so any
# second derivative is exact.
# ---------------------------------------------------------------------------


def _like_act4(t):
    """An empty tensor shaped like ``t`` in the layout the native kernels give it.

    The native kernels keep NCHW-contiguous and channels_last tensors as they
    are and lay anything else out channels_last.
    """
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return torch.empty_like(t)
    return torch.empty(t.shape, dtype=t.dtype, device=t.device, memory_format=torch.channels_last)


def _modulate_fake(x, s, channels_last):
    """Fake ``modulate``: ``[N, C, H, W]`` like x, channels_last when asked for."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=fmt)


def _modulate_backward_fake(gxs, x, s):
    """Fake ``modulate_backward``: gx like x, gs ``[N, C]``."""
    return _like_act4(x), s.new_empty(s.shape)


def _epilogue_fake(z, d, noise, b, act, alpha, gain, clamp):
    """Fake ``modconv_epilogue``: y like z."""
    return _like_act4(z)


def _epilogue_backward_fake(dy, z, d, noise, b, act, alpha, gain, clamp):
    """Fake ``modconv_epilogue_backward``: gz like z; gd ``[N, C]``, gnoise ``[N, 1, H, W]``, gb ``[C]``,
    each ``[0]`` when its operand is absent."""
    N, C, H, W = z.shape
    gd = z.new_empty((N, C) if d is not None else (0,))
    gn = z.new_empty((N, 1, H, W) if noise is not None else (0,))
    gb = z.new_empty((C,) if b is not None else (0,))
    return _like_act4(z), gd, gn, gb


def _modulate_setup(ctx, inputs, output):
    """Save x and s for :func:`_modulate_backward`."""
    x, s, _ = inputs
    ctx.save_for_backward(x, s)


def _modulate_backward(ctx, gxs):
    """Gradient of ``modulate``: ``gx = gxs * s``, ``gs = sum_hw gxs * x``."""
    x, s = ctx.saved_tensors
    if torch.is_grad_enabled():  # building a graph of the gradient: differentiable pieces
        gx = gxs * s[:, :, None, None]  # [N, C, H, W]
        gs = sum_fp32(gxs * x, [2, 3])  # [N, C]
    else:
        gx, gs = torch.ops.hpcgan.modulate_backward(gxs, x, s)
    return (gx if ctx.needs_input_grad[0] else None), (gs if ctx.needs_input_grad[1] else None), None


def _modulate_backward_setup(ctx, inputs, output):
    """Save gxs, x and s for :func:`_modulate_double_backward`."""
    gxs, x, s = inputs
    ctx.save_for_backward(gxs, x, s)


def _modulate_double_backward(ctx, ggx, ggs):
    """Gradient of ``modulate_backward`` (bilinear in gxs and (x, s)), from aten ops."""
    gxs, x, s = ctx.saved_tensors
    g_gxs = g_x = g_s = None
    if ctx.needs_input_grad[0]:
        g_gxs = 0
        if ggx is not None:
            g_gxs = ggx * s[:, :, None, None]  # [N, C, H, W]
        if ggs is not None:
            g_gxs = g_gxs + ggs[:, :, None, None] * x  # [N, C, H, W]
    if ctx.needs_input_grad[1] and ggs is not None:
        g_x = ggs[:, :, None, None] * gxs  # [N, C, H, W]
    if ctx.needs_input_grad[2] and ggx is not None:
        g_s = sum_fp32(ggx * gxs, [2, 3])  # [N, C]
    return g_gxs, g_x, g_s


def _epilogue_setup(ctx, inputs, output):
    """Save z and the optional operands, and the activation parameters, for :func:`_epilogue_backward`."""
    z, d, noise, b, act, alpha, gain, clamp = inputs
    ctx.save_for_backward(z, d, noise, b)
    ctx.params = (act, alpha, gain, clamp)


def _epilogue_grads_differentiable(dy, z, d, noise, b, params):
    """(gz, gd, gnoise, gb) of the epilogue from differentiable pieces (bias_act_grad, aten ops)."""
    pre = z if d is None else z * d[:, :, None, None]  # [N, C, H, W], before noise, bias, act
    if noise is not None:
        pre = pre + noise
    g_pre = torch.ops.hpcgan.bias_act_grad(dy, pre, b, 1, *params, 1)  # [N, C, H, W]
    gz = g_pre if d is None else g_pre * d[:, :, None, None]  # [N, C, H, W]
    gd = sum_fp32(g_pre * z, [2, 3]) if d is not None else None  # [N, C]
    gn = sum_fp32(g_pre, [1], keepdim=True) if noise is not None else None  # [N, 1, H, W]
    gb = sum_fp32(g_pre, [0, 2, 3]) if b is not None else None  # [C]
    return gz, gd, gn, gb


def _epilogue_backward(ctx, dy):
    """Gradient of ``modconv_epilogue`` for z, d, noise and b (the act parameters get None)."""
    z, d, noise, b = ctx.saved_tensors
    if torch.is_grad_enabled():  # building a graph of the gradient: differentiable pieces
        gz, gd, gn, gb = _epilogue_grads_differentiable(dy, z, d, noise, b, ctx.params)
    else:
        gz, gd, gn, gb = torch.ops.hpcgan.modconv_epilogue_backward(dy, z, d, noise, b, *ctx.params)
    if noise is not None and noise.shape[0] == 1 and gn.shape[0] != 1:  # noise broadcast over the batch
        gn = sum_fp32(gn, [0], keepdim=True)  # [1, 1, H, W]
    need = ctx.needs_input_grad
    return (
        gz if need[0] else None,
        gd if d is not None and need[1] else None,
        gn if noise is not None and need[2] else None,
        gb if b is not None and need[3] else None,
        None, None, None, None,
    )


def _register():
    """Register the fake kernels and the autograd of the four fused ops with torch.library."""
    lib = "hpcgan::"
    torch.library.register_fake(lib + "modulate", _modulate_fake)
    torch.library.register_fake(lib + "modulate_backward", _modulate_backward_fake)
    torch.library.register_fake(lib + "modconv_epilogue", _epilogue_fake)
    torch.library.register_fake(lib + "modconv_epilogue_backward", _epilogue_backward_fake)
    torch.library.register_autograd(lib + "modulate", _modulate_backward, setup_context=_modulate_setup)
    torch.library.register_autograd(lib + "modulate_backward", _modulate_double_backward,
                                    setup_context=_modulate_backward_setup)
    torch.library.register_autograd(lib + "modconv_epilogue", _epilogue_backward, setup_context=_epilogue_setup)


if _native.available():
    _register()
