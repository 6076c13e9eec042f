"""Equalised-learning-rate building blocks of StyleGAN2, on the hpcgan ops.

Every layer stores its weight drawn from N(0, 1/lr_multiplier^2) and multiplies it
at run time by ``lr_multiplier / sqrt(fan_in)`` ("equalised learning rate",
Karras et al. 2018): Adam then moves every weight at the same relative speed,
and ``lr_multiplier`` slows a whole layer down (the mapping network uses 0.01).

Every layer takes ``impl`` ("auto", "native" or "ref") and passes it to each op
call (:mod:`hpcgan.ops`), so the same network, with the same weights, can run on
the native kernels or on the pure-PyTorch references. :func:`set_impl` switches a
whole built network.

Public API:

- :class:`FullyConnected` ``(in_features, out_features, bias=True, bias_init=0.0,
  lr_multiplier=1.0, activation="linear", impl="auto")``
- :class:`Conv2d` ``(in_channels, out_channels, kernel_size, bias=True,
  activation="linear", up=1, down=1, resample_filter=(1, 3, 3, 1),
  conv_clamp=None, lr_multiplier=1.0, impl="auto")``
- :class:`MinibatchStd` ``(group_size=4, num_channels=1)``
- :func:`normalize_2nd_moment`, :func:`set_impl`, :data:`IMPLS`
- :func:`half_dtype`, :func:`fp16_resolution`: mixed precision (StyleGAN2-ADA's ``num_fp16_res``)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hpcgan.ops import conv
from hpcgan.ops._native import IMPLS, check_impl
from hpcgan.ops.bias_act import ACTIVATIONS, bias_act
from hpcgan.ops.upfirdn2d import downsample2d, setup_filter, upfirdn2d, upsample2d

__all__ = ["IMPLS", "FullyConnected", "Conv2d", "MinibatchStd", "normalize_2nd_moment", "set_impl", "check_impl",
           "half_dtype", "fp16_resolution"]


def half_dtype(device: torch.device | str) -> torch.dtype:
    """The half type of mixed precision on ``device``: float16 on CUDA, bfloat16 elsewhere.

    CPUs have fast bfloat16 (AVX512-BF16, AMX) but no fast float16; bfloat16 also has
    float32's exponent range, so it cannot overflow where float32 does not.
    """
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


def fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """The lowest block resolution that computes in half precision (StyleGAN2-ADA's rule).

    The ``num_fp16_res`` highest resolutions are half, but never below 8x8: with
    ``log2(img_resolution) = L`` the threshold is ``max(2 ** (L + 1 - num_fp16_res), 8)``;
    ``num_fp16_res = 0`` returns a value above ``img_resolution`` (nothing is half).
    """
    if not isinstance(num_fp16_res, int) or num_fp16_res < 0:
        raise ValueError(f"num_fp16_res must be an integer >= 0, got {num_fp16_res!r}")
    if num_fp16_res == 0:
        return 2 * img_resolution
    log2 = int(math.log2(img_resolution))
    return max(2 ** (log2 + 1 - num_fp16_res), 8)


def set_impl(module: nn.Module, impl: str) -> nn.Module:
    """Switch every hpcgan layer inside ``module`` (itself included) to ``impl``.

    Returns ``module``. Any submodule with an ``impl`` attribute is switched, so a
    Generator or Discriminator built with ``impl="native"`` runs on the reference
    ops after ``set_impl(net, "ref")`` with unchanged weights.
    """
    check_impl(impl)
    for m in module.modules():
        if hasattr(m, "impl"):
            m.impl = impl
    return module


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` so that the mean of its squares along ``dim`` is 1."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _check_act(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return activation


class FullyConnected(nn.Module):
    """Equalised-learning-rate fully connected layer: ``act(x @ (w*g).T + b*lr) * gain``.

    Args:
        in_features, out_features: sizes.
        bias: learn a bias.
        bias_init: initial value of the (effective) bias; the mapping network's
            affine style layers use 1.
        lr_multiplier: learning-rate multiplier of the layer (weights and bias).
        activation: one of :data:`hpcgan.ops.bias_act.ACTIVATIONS`; its default
            gain (sqrt(2) for lrelu) is applied.
        impl: op implementation, "auto", "native" or "ref".

    Input ``[N, in_features]``, output ``[N, out_features]``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_multiplier: float = 1.0, activation: str = "linear", impl: str = "auto"):
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"in_features and out_features must be > 0, got {in_features}, {out_features}")
        if not lr_multiplier > 0:
            raise ValueError(f"lr_multiplier must be > 0, got {lr_multiplier}")
        self.in_features = in_features
        self.out_features = out_features
        self.activation = _check_act(activation)
        self.impl = check_impl(impl)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)) / lr_multiplier) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = None
        if self.bias is not None:
            b = self.bias.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())  # [1, out] + [N, in] @ [in, out] -> [N, out]
        x = x.matmul(w.t())  # [N, in] @ [in, out] -> [N, out]
        return bias_act(x, b, dim=1, act=self.activation, impl=self.impl)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}, impl={self.impl}"


class Conv2d(nn.Module):
    """Equalised-learning-rate 2-D convolution with optional FIR up/down-sampling.

    ``y = clamp(act(conv(resample(x), w * g) + b) * gain_act * gain, ±conv_clamp*gain)``

    Resampling follows StyleGAN2: ``up=2`` up-samples with
    :func:`hpcgan.ops.upfirdn2d.upsample2d` before a stride-1 convolution;
    ``down=2`` low-pass filters with the FIR filter (:func:`upfirdn2d`) and then
    runs a stride-2 convolution (a 1x1 kernel down-samples first with
    :func:`downsample2d`). The output is ``H * up // down`` pixels on a side
    ("same" padding, ``kernel_size // 2``).

    Args:
        in_channels, out_channels, kernel_size: the convolution (odd kernel).
        bias: learn a bias.
        activation: activation applied with :func:`hpcgan.ops.bias_act.bias_act`.
        up, down: resampling factors (1 or 2; not both).
        resample_filter: 1-D FIR taps, prepared with ``setup_filter``.
        conv_clamp: clamp the output to ±conv_clamp (None: no clamping).
        lr_multiplier: learning-rate multiplier.
        impl: op implementation, "auto", "native" or "ref".

    ``forward(x, gain=1.0)``: ``gain`` scales the output (and the clamp).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None,
                 lr_multiplier: float = 1.0, impl: str = "auto"):
        super().__init__()
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(f"in_channels and out_channels must be > 0, got {in_channels}, {out_channels}")
        if kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
        if up not in (1, 2) or down not in (1, 2) or (up > 1 and down > 1):
            raise ValueError(f"up and down must be 1 or 2 and not both 2, got up={up}, down={down}")
        if conv_clamp is not None and not conv_clamp > 0:
            raise ValueError(f"conv_clamp must be None or > 0, got {conv_clamp}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.activation = _check_act(activation)
        self.up = up
        self.down = down
        self.padding = kernel_size // 2
        self.conv_clamp = conv_clamp
        self.impl = check_impl(impl)
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_channels * kernel_size * kernel_size)
        self.bias_gain = lr_multiplier
        self.act_gain = ACTIVATIONS[activation].default_gain

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        f = self.resample_filter
        p = self.padding
        fw = f.shape[-1]
        if self.down > 1:
            if self.kernel_size == 1:
                x = downsample2d(x, f, down=self.down, impl=self.impl)
                x = conv.conv2d(x, w)
            else:
                # FIR low-pass with the padding that makes the stride-2 conv land on H/2.
                p0 = p + (fw - self.down + 1) // 2
                p1 = p + (fw - self.down) // 2
                x = upfirdn2d(x, f, padding=[p0, p1, p0, p1], impl=self.impl)
                x = conv.conv2d(x, w, stride=self.down)
        else:
            if self.up > 1:
                x = upsample2d(x, f, up=self.up, impl=self.impl)
            x = conv.conv2d(x, w, padding=p)
        b = None
        if self.bias is not None:
            b = self.bias.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        act_gain = self.act_gain * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, dim=1, act=self.activation, gain=act_gain, clamp=clamp, impl=self.impl)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, activation={self.activation}, "
                f"up={self.up}, down={self.down}, conv_clamp={self.conv_clamp}, impl={self.impl}")


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018), as in StyleGAN2.

    The batch is split into groups of up to ``group_size`` samples (sample ``i``
    goes to group ``i % M``, ``M = ceil(N / group_size)``, so the groups are
    StyleGAN2's when ``N`` is divisible by ``group_size`` and differ in size by
    at most one otherwise). For each group the standard deviation of every
    feature over the group is averaged over ``C / num_channels`` channels and all
    pixels, giving ``num_channels`` statistics that are appended to every
    sample of the group as constant feature maps.

    ``[N, C, H, W] -> [N, C + num_channels, H, W]``. ``C`` must be divisible by
    ``num_channels``.
    """

    def __init__(self, group_size: int | None = 4, num_channels: int = 1):
        super().__init__()
        if group_size is not None and group_size < 1:
            raise ValueError(f"group_size must be None or >= 1, got {group_size}")
        if num_channels < 1:
            raise ValueError(f"num_channels must be >= 1, got {num_channels}")
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        Fn = self.num_channels
        if C % Fn != 0:
            raise ValueError(f"MinibatchStd: {C} channels are not divisible by num_channels={Fn}")
        G = N if self.group_size is None else min(self.group_size, N)
        M = -(-N // G)  # number of groups
        y = x.reshape(N, Fn, C // Fn, H, W)  # [N, Fn, c, H, W], c = C // Fn
        # 1. per group: the standard deviation of every feature, averaged to Fn numbers
        if N % G == 0:  # StyleGAN2's layout: [G, M, ...]
            y = y.reshape(G, M, Fn, C // Fn, H, W)  # [G, M, Fn, c, H, W]
            y = y - y.mean(dim=0)  # [G, M, Fn, c, H, W]
            y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [M, Fn, c, H, W]
            y = y.mean(dim=[2, 3, 4])  # [M, Fn]
            y = y.repeat(G, 1)  # [N, Fn]: sample i gets group i % M
        else:  # unequal groups: sums over a one-hot group matrix
            gid = torch.arange(N, device=x.device) % M  # [N]
            onehot = F.one_hot(gid, M).to(x.dtype)  # [N, M]
            count = onehot.sum(dim=0)  # [M]
            flat = y.reshape(N, -1)  # [N, Fn*c*H*W]
            mean = (onehot.t() @ flat) / count[:, None]  # [M, Fn*c*H*W]
            dev = flat - mean[gid]  # [N, Fn*c*H*W]
            var = (onehot.t() @ dev.square()) / count[:, None]  # [M, Fn*c*H*W]
            std = (var + 1e-8).sqrt().reshape(M, Fn, -1).mean(dim=2)  # [M, Fn]
            y = std[gid]  # [N, Fn]
        # 2. appended to every sample as Fn constant feature maps
        y = y.reshape(N, Fn, 1, 1).expand(N, Fn, H, W)  # [N, Fn, H, W]
        return torch.cat([x, y], dim=1)  # [N, C + Fn, H, W]

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
