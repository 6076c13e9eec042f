"""Upsample, FIR filter, downsample (StyleGAN2's ``upfirdn2d``) and its helpers.

For each plane of ``x`` the op

1. upsamples by inserting ``up - 1`` zeros after every pixel
   (``[H, W] -> [H * upy, W * upx]``),
2. pads by ``padding`` (negative values crop),
3. convolves with the filter ``f`` (true convolution; with ``flip_filter=True``
   correlation),
4. keeps every ``down``-th pixel, starting with the first,
5. multiplies by ``gain``.

Shapes: ``x`` ``[N, C, H, W]`` (contiguous or channels_last); ``f`` ``[fh, fw]``,
``[fw]`` (separable: the 2-D filter is ``outer(f, f)``) or None (no filtering);
the output is ``[N, C, outH, outW]`` with
``outW = (W * upx + padx0 + padx1 - fw) // downx + 1`` (same for ``outH``), in
the memory format of ``x``.

The native kernel (``torch.ops.hpcgan.upfirdn2d``, CPU and CUDA) computes only
the kept pixels from the taps that hit real input pixels. Because the op is
linear in ``x``, its gradient is another upfirdn2d (up and down swapped, the
filter flipped, the padding adjusted), registered as a call to the op itself,
so gradients of every order are native. No gradient flows to ``f``.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from hpcgan.ops import _native
from hpcgan.ops._args import int_pair, is_int

__all__ = ["upfirdn2d", "upfirdn2d_ref", "setup_filter", "filter2d", "upsample2d", "downsample2d"]


# ---------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------


def _parse_scaling(v, name: str) -> tuple[int, int]:
    """``up``/``down``: an int or ``[x, y]``, each >= 1."""
    vx, vy = int_pair(v, name)
    if vx < 1 or vy < 1:
        raise ValueError(f"{name} must be >= 1, got {v!r}")
    return vx, vy


def _parse_padding(padding) -> tuple[int, int, int, int]:
    """``padding``: an int, ``[x, y]`` or ``[x0, x1, y0, y1]`` (negative crops)."""
    if is_int(padding):
        p = int(padding)
        return p, p, p, p
    if isinstance(padding, (list, tuple)) and all(is_int(e) for e in padding):
        if len(padding) == 2:
            px, py = int(padding[0]), int(padding[1])
            return px, px, py, py
        if len(padding) == 4:
            return tuple(int(e) for e in padding)  # type: ignore[return-value]
    raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1] of ints, got {padding!r}")


def _filter_size(f) -> tuple[int, int]:
    """(fw, fh) of a filter as :func:`upfirdn2d` takes it (None is 1x1)."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor):
        raise ValueError(f"f must be None or a torch.Tensor, got {type(f).__name__}")
    if f.ndim not in (1, 2):
        raise ValueError(f"f must be a 1-D (separable) or 2-D filter, got shape {tuple(f.shape)}")
    return f.shape[-1], f.shape[0]


def _check_gain(gain) -> float:
    if isinstance(gain, bool) or not isinstance(gain, numbers.Real) or not math.isfinite(float(gain)):
        raise ValueError(f"gain must be a finite number, got {gain!r}")
    return float(gain)


def _check_x(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"x must be a 4-D tensor [N, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")


def _check_f(f, x: torch.Tensor) -> torch.Tensor:
    """The filter as a tensor on x's device (None becomes [[1]])."""
    if f is None:
        return torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if not isinstance(f, torch.Tensor):
        raise ValueError(f"f must be None or a torch.Tensor, got {type(f).__name__}")
    if f.ndim not in (1, 2):
        raise ValueError(f"f must be a 1-D (separable) or 2-D filter, got shape {tuple(f.shape)}")
    if f.numel() == 0:
        raise ValueError(f"f must not be empty, got shape {tuple(f.shape)}")
    if not f.is_floating_point():
        raise ValueError(f"f must be a floating-point tensor, got dtype {f.dtype}")
    if f.device != x.device:
        raise ValueError(f"f must be on the device of x ({x.device}), got {f.device}")
    # Checked on the host only: for a CUDA filter the check would synchronise the
    # device on every call (setup_filter checks the filters it makes).
    if f.device.type == "cpu" and not bool(torch.isfinite(f).all()):
        raise ValueError(f"f must be finite, got {f.tolist()}")
    return f


def _prepare(x, f, up, down, padding, gain):
    """Validate everything; return (f, upx, upy, downx, downy, pads, gain)."""
    _check_x(x)
    f = _check_f(f, x)
    upx, upy = _parse_scaling(up, "up")
    downx, downy = _parse_scaling(down, "down")
    pads = _parse_padding(padding)
    gain = _check_gain(gain)
    px0, px1, py0, py1 = pads
    fw, fh = f.shape[-1], f.shape[0]
    H, W = x.shape[2], x.shape[3]
    pw, ph = W * upx + px0 + px1, H * upy + py0 + py1
    if pw < fw or ph < fh:
        raise ValueError(
            f"f of size {fh}x{fw} is larger than the upsampled and padded input ({ph}x{pw} from "
            f"x {H}x{W}, up={up!r}, padding={padding!r}): the output would be empty; "
            "increase padding or use a smaller filter"
        )
    return f, upx, upy, downx, downy, pads, gain


def _output_size(H, W, fh, fw, upx, upy, downx, downy, px0, px1, py0, py1) -> tuple[int, int]:
    return (H * upy + py0 + py1 - fh) // downy + 1, (W * upx + px0 + px1 - fw) // downx + 1


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl="auto"):
    """Upsample, pad, FIR-filter and downsample a batch of images.

    Args:
        x: ``[N, C, H, W]`` floating-point tensor (any memory format).
        f: ``[fh, fw]`` filter, ``[fw]`` separable filter (2-D filter
            ``outer(f, f)``), or None for no filtering (``[[1]]``).
        up: upsampling factor, int or ``[x, y]``, >= 1.
        down: downsampling factor, int or ``[x, y]``, >= 1.
        padding: int, ``[x, y]`` or ``[x0, x1, y0, y1]``, applied after
            upsampling; negative values crop.
        flip_filter: False: convolution (the filter is flipped), True: correlation.
        gain: the output is multiplied by this.
        impl: "auto", "native" or "ref" (see hpcgan.ops._native).

    Returns:
        ``[N, C, outH, outW]`` tensor of x's dtype and memory format, with
        ``outW = (W * upx + padx0 + padx1 - fw) // downx + 1`` (same for H).
        The filter may have any floating dtype. float64 ``x`` is computed in
        float64 throughout (filter and gain included); float32, float16 and
        bfloat16 ``x`` in float32 on both devices, rounded once to x's dtype.
    """
    f, upx, upy, downx, downy, pads, gain = _prepare(x, f, up, down, padding, gain)
    if not _native.use_native(impl, x, f):
        return _ref(x, f, upx, upy, downx, downy, pads, bool(flip_filter), gain)
    if f.ndim == 1:  # separable: the 2-D filter is the outer product (exact in float64)
        f = torch.outer(f.double(), f.double())  # [fw] -> [fw, fw]
    return torch.ops.hpcgan.upfirdn2d(x, f, upx, upy, downx, downy, *pads, bool(flip_filter), gain)


def upfirdn2d_ref(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Plain-PyTorch reference of :func:`upfirdn2d` (the test oracle).

    Zero insertion by reshape + pad, padding/cropping with ``F.pad``, a depthwise
    ``F.conv2d`` (two 1-D passes for a separable filter) whose stride does the
    downsampling. Same arguments and result as :func:`upfirdn2d`.
    """
    f, upx, upy, downx, downy, pads, gain = _prepare(x, f, up, down, padding, gain)
    return _ref(x, f, upx, upy, downx, downy, pads, bool(flip_filter), gain)


def _ref(x, f, upx, upy, downx, downy, pads, flip_filter, gain):
    if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        return _ref(x.float(), f, upx, upy, downx, downy, pads, flip_filter, gain).to(x.dtype)
    N, C, H, W = x.shape
    px0, px1, py0, py1 = pads
    if upx > 1 or upy > 1:  # 1. zero insertion
        x = x.reshape(N, C, H, 1, W, 1)  # [N, C, H, 1, W, 1]
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])  # [N, C, H, upy, W, upx]
        x = x.reshape(N, C, H * upy, W * upx)  # [N, C, H * upy, W * upx]
    x = F.pad(x, [px0, px1, py0, py1])  # 2. padding; negative values crop. [N, C, ph, pw]
    # 3. FIR filter, 4. downsampling (the convolution's stride), 5. gain (in the weights)
    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))  # conv2d correlates: flip for a true convolution
    if f.ndim == 2:
        w = (f * gain)[None, None].expand(C, 1, -1, -1)  # [C, 1, fh, fw], depthwise
        return F.conv2d(x, w, stride=(downy, downx), groups=C)  # [N, C, outH, outW]
    # separable: horizontal pass (with the gain), then vertical pass
    wx = (f * gain)[None, None, None, :].expand(C, 1, 1, -1)  # [C, 1, 1, fw]
    wy = f[None, None, :, None].expand(C, 1, -1, 1)  # [C, 1, fw, 1]
    x = F.conv2d(x, wx, stride=(1, downx), groups=C)  # [N, C, ph, outW]
    return F.conv2d(x, wy, stride=(downy, 1), groups=C)  # [N, C, outH, outW]


def setup_filter(f, normalize=True, flip_filter=False, gain=1, separable=None, device=torch.device("cpu"), dtype=None):
    """Make a filter tensor for :func:`upfirdn2d` from a list, array or tensor.

    Args:
        f: None (``[1]``), a number, a 1-D sequence/tensor of taps, or a 2-D
            ``[fh, fw]`` sequence/tensor.
        normalize: divide by the sum of the taps, so the filter has unit DC gain.
        flip_filter: return the filter flipped.
        gain: the overall (2-D) gain: a 2-D filter is multiplied by ``gain``, a
            1-D one (applied along both axes) by ``sqrt(gain)``.
        separable: keep a 1-D filter 1-D (True) or make it the 2-D outer product
            (False); None: separable when 1-D with at least 8 taps.
        device: where to put the result.
        dtype: float32 or float64; None: float64 when ``f`` is a float64
            tensor, else float32. Normalisation and gain are computed in
            float64 and rounded once to ``dtype``.

    Returns:
        tensor ``[fw]`` (separable) or ``[fh, fw]`` of ``dtype``.
    """
    if dtype is None:
        dtype = torch.float64 if isinstance(f, torch.Tensor) and f.dtype == torch.float64 else torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float64)
    if f.ndim == 0:
        f = f[None]  # [1]
    if f.ndim not in (1, 2):
        raise ValueError(f"f must be 1-D or 2-D, got shape {tuple(f.shape)}")
    if f.numel() == 0:
        raise ValueError("f must not be empty")
    if not bool(torch.isfinite(f).all()):
        raise ValueError(f"f must be finite, got {f.tolist()}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)  # [fw] -> [fw, fw]
    if normalize:
        s = float(f.sum())
        if s == 0 or not math.isfinite(s):
            raise ValueError(f"f must have a finite, non-zero sum to be normalized, got {s}")
        f = f / s
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    gain = _check_gain(gain)
    if f.ndim == 2:
        f = f * gain
    elif gain < 0:
        raise ValueError(f"gain must be >= 0 for a separable (1-D) filter, got {gain}")
    else:
        f = f * math.sqrt(gain)
    return f.to(device=device, dtype=dtype)


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl="auto"):
    """Filter each plane with ``f``, padded so the output is as large as ``x``
    (plus ``padding``).

    ``x`` ``[N, C, H, W]`` -> ``[N, C, H + padx0 + padx1, W + ...]``.
    """
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl="auto"):
    """Upsample by ``up`` with the interpolation filter ``f``.

    The gain is scaled by ``upx * upy`` so the image keeps its brightness; the
    padding is chosen so ``[N, C, H, W]`` -> ``[N, C, H * upy, W * upx]`` (plus
    ``padding``).
    """
    upx, upy = _parse_scaling(up, "up")
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [
        px0 + (fw + upx - 1) // 2,
        px1 + (fw - upx) // 2,
        py0 + (fh + upy - 1) // 2,
        py1 + (fh - upy) // 2,
    ]
    gain = _check_gain(gain) * upx * upy
    return upfirdn2d(x, f, up=(upx, upy), padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl="auto"):
    """Downsample by ``down`` after low-pass filtering with ``f``.

    The padding is chosen so ``[N, C, H, W]`` -> ``[N, C, H // downy, W // downx]``
    (for H, W divisible by down, without extra ``padding``).
    """
    downx, downy = _parse_scaling(down, "down")
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [
        px0 + (fw - downx + 1) // 2,
        px1 + (fw - downx) // 2,
        py0 + (fh - downy + 1) // 2,
        py1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=(downx, downy), padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


# ---------------------------------------------------------------------------
# Registration: fake kernel (for torch.compile and opcheck) and autograd.
# ---------------------------------------------------------------------------


def _channels_last(x: torch.Tensor) -> bool:
    """The layout the native kernels use (c10's suggest_memory_format)."""
    from torch._prims_common import suggest_memory_format

    return suggest_memory_format(x) == torch.channels_last


def _upfirdn2d_fake(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain):
    """Fake ``upfirdn2d``: ``[N, C, outH, outW]`` in the layout the native kernel gives (x's)."""
    torch._check(x.dim() == 4, lambda: f"upfirdn2d: x must have 4 dimensions, got {x.dim()}")
    torch._check(f.dim() == 2, lambda: f"upfirdn2d: f must have 2 dimensions, got {f.dim()}")
    torch._check(upx >= 1 and upy >= 1 and downx >= 1 and downy >= 1, lambda: "upfirdn2d: up/down must be >= 1")
    N, C, H, W = x.shape
    outH, outW = _output_size(H, W, f.shape[0], f.shape[1], upx, upy, downx, downy, padx0, padx1, pady0, pady1)
    torch._check(outH > 0 and outW > 0, lambda: "upfirdn2d: the filter is larger than the padded input")
    fmt = torch.channels_last if _channels_last(x) else torch.contiguous_format
    return x.new_empty([N, C, outH, outW]).contiguous(memory_format=fmt)


def _grad_padding(in_hw, out_hw, fh, fw, upx, upy, downx, downy, padx0, pady0):
    """Padding ``(gpx0, gpx1, gpy0, gpy1)`` of the upfirdn2d that is the gradient of one
    (up and down swapped, the filter flipped): it maps ``out_hw`` back onto ``in_hw``."""
    H, W = in_hw
    outH, outW = out_hw
    gpx0 = fw - padx0 - 1
    gpx1 = W * upx - outW * downx + padx0 - upx + 1
    gpy0 = fh - pady0 - 1
    gpy1 = H * upy - outH * downy + pady0 - upy + 1
    return gpx0, gpx1, gpy0, gpy1


def _setup(ctx, inputs, output):
    """Save the filter, the scalar arguments and the input and output sizes for :func:`_backward`."""
    x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain = inputs
    ctx.save_for_backward(f)
    ctx.params = (upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain)
    ctx.in_hw = (x.shape[2], x.shape[3])
    ctx.out_hw = (output.shape[2], output.shape[3])


def _backward(ctx, dy):
    """Gradient for x: upfirdn2d of dy (linear op), itself registered, so every order is native."""
    (f,) = ctx.saved_tensors
    upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain = ctx.params
    fh, fw = f.shape
    gpx0, gpx1, gpy0, gpy1 = _grad_padding(ctx.in_hw, ctx.out_hw, fh, fw, upx, upy, downx, downy, padx0, pady0)
    dx = None
    if ctx.needs_input_grad[0]:
        dx = torch.ops.hpcgan.upfirdn2d(dy, f, downx, downy, upx, upy, gpx0, gpx1, gpy0, gpy1, not flip, gain)
    return dx, None, None, None, None, None, None, None, None, None, None, None


def _register():
    """Register the fake kernel and the autograd of upfirdn2d with torch.library."""
    name = "hpcgan::upfirdn2d"
    torch.library.register_fake(name, _upfirdn2d_fake)
    torch.library.register_autograd(name, _backward, setup_context=_setup)


if _native.available():
    _register()
