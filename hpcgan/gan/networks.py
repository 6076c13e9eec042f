"""StyleGAN2 networks (Karras et al. 2020) on the hpcgan ops.

- :class:`MappingNetwork`: z (and an optional class label c) to intermediate
  latents ``ws [N, num_ws, w_dim]``, with w averaging and truncation.
- :class:`SynthesisNetwork`: ws to images, "skip" architecture: a learned 4x4
  constant, one block per resolution of two modulated 3x3 convolutions (the
  first up-samples by 2 from 8x8 on), per-layer noise, and a ToRGB per block
  whose images are up-sampled and summed.
- :class:`Generator`: mapping + synthesis.
- :class:`Discriminator`: "resnet" architecture with minibatch standard
  deviation and, when ``c_dim > 0``, a projection onto a mapping of the label.

Channel counts are ``min(channel_base // res, channel_max)`` at each resolution,
so a tiny CPU network (32 px, ``channel_base=1024, channel_max=32``) and the
paper's 256 px network (``channel_base=16384, channel_max=512``) are the same
code. Every module takes ``impl`` ("auto", "native", "ref") and passes it to
every op; :func:`hpcgan.gan.layers.set_impl` switches a built network.

The synthesis layers call :func:`hpcgan.ops.modulated_conv2d.modulated_conv2d`
with noise, bias, activation, gain and clamp, so its fused epilogue is used.

Mixed precision (StyleGAN2-ADA's ``num_fp16_res``): with ``num_fp16_res = k > 0`` the
blocks of G and D at the k highest resolutions (never below 8x8, see
:func:`hpcgan.gan.layers.fp16_resolution`) compute in half precision: float16 on
CUDA, bfloat16 on CPUs (:func:`hpcgan.gan.layers.half_dtype`). Parameters stay
float32 and are cast per call; the mapping network, G's image sum (the skip
connections of ToRGB), D's 4x4 epilogue and every output stay float32. Use it with
``conv_clamp`` (256 in StyleGAN2-ADA) so that float16 activations cannot overflow.

Conventions: images are ``[N, img_channels, R, R]`` in about [-1, 1]; labels
``c`` are ``[N, c_dim]`` (one-hot for classes; ``c_dim=0`` means unconditional
and ``c`` may be None or an ``[N, 0]`` tensor).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hpcgan.gan.layers import (Conv2d, FullyConnected, MinibatchStd, check_impl, fp16_resolution, half_dtype,
                               normalize_2nd_moment)
from hpcgan.ops.modulated_conv2d import modulated_conv2d
from hpcgan.ops.upfirdn2d import setup_filter, upsample2d

__all__ = [
    "NOISE_MODES",
    "MappingNetwork",
    "SynthesisLayer",
    "ToRGBLayer",
    "SynthesisBlock",
    "SynthesisNetwork",
    "Generator",
    "DiscriminatorBlock",
    "DiscriminatorEpilogue",
    "Discriminator",
    "channels_at",
]

NOISE_MODES = ("random", "const", "none")


def _check_resolution(img_resolution: int) -> int:
    if not isinstance(img_resolution, int) or img_resolution < 32 or img_resolution > 1024 or img_resolution & (img_resolution - 1):
        raise ValueError(f"img_resolution must be a power of two from 32 to 1024, got {img_resolution!r}")
    return img_resolution


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at resolution ``res``: ``min(channel_base // res, channel_max)`` (at least 1)."""
    return max(1, min(channel_base // res, channel_max))


def _check_c(c: torch.Tensor | None, c_dim: int, n: int, device, dtype) -> torch.Tensor | None:
    if c_dim == 0:
        if c is not None and c.numel() != 0:
            raise ValueError(f"the network is unconditional (c_dim=0) but got labels of shape {tuple(c.shape)}")
        return None
    if c is None:
        raise ValueError(f"the network is conditional (c_dim={c_dim}); pass labels c of shape [N, {c_dim}]")
    if c.ndim != 2 or c.shape[1] != c_dim or c.shape[0] != n:
        raise ValueError(f"c must have shape [{n}, {c_dim}], got {tuple(c.shape)}")
    return c.to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------
# Mapping network
# ---------------------------------------------------------------------------


class MappingNetwork(nn.Module):
    """z (+ class label) -> ws.

    ``z`` is normalised to unit second moment; when ``c_dim > 0`` the label goes
    through a linear embedding, is normalised the same way and concatenated to
    it. Then ``num_layers`` fully connected lrelu layers with learning-rate
    multiplier ``lr_multiplier`` give ``w``, broadcast to ``num_ws`` copies.

    Args:
        z_dim: latent size (0 allowed when ``c_dim > 0``: the discriminator's label mapping).
        c_dim: label size (0: unconditional).
        w_dim: output size.
        num_ws: copies of w in the output; None returns ``[N, w_dim]``.
        num_layers: fully connected layers (>= 1; StyleGAN2 uses 8, the discriminator's label mapping too).
        embed_features: label embedding size (default ``w_dim``).
        layer_features: hidden size (default ``w_dim``).
        lr_multiplier: learning-rate multiplier of the layers (0.01).
        w_avg_beta: decay of the running average of w (None: no tracking).
        impl: op implementation.

    ``forward(z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=False)``:
    with ``update_emas=True`` (training, on the main generator pass) the buffer
    ``w_avg`` moves toward the batch mean of w: ``w_avg = lerp(mean(w), w_avg, beta)``.
    Truncation replaces ``w`` by ``w_avg + psi * (w - w_avg)`` in the first
    ``truncation_cutoff`` ws (all when None); ``psi=0`` gives ``w_avg``.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None,
                 lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995, impl: str = "auto"):
        super().__init__()
        if z_dim < 0 or c_dim < 0 or z_dim + c_dim == 0:
            raise ValueError(f"need z_dim >= 0, c_dim >= 0 and z_dim + c_dim > 0, got z_dim={z_dim}, c_dim={c_dim}")
        if w_dim <= 0:
            raise ValueError(f"w_dim must be > 0, got {w_dim}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if num_ws is not None and num_ws < 1:
            raise ValueError(f"num_ws must be None or >= 1, got {num_ws}")
        if w_avg_beta is not None and not 0 <= w_avg_beta < 1:
            raise ValueError(f"w_avg_beta must be None or in [0, 1), got {w_avg_beta}")
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        self.impl = check_impl(impl)
        embed_features = w_dim if embed_features is None else embed_features
        layer_features = w_dim if layer_features is None else layer_features
        if c_dim == 0:
            embed_features = 0
        self.embed = FullyConnected(c_dim, embed_features, impl=impl) if c_dim > 0 else None
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        self.layers = nn.ModuleList(
            FullyConnected(features[i], features[i + 1], activation="lrelu", lr_multiplier=lr_multiplier, impl=impl)
            for i in range(num_layers)
        )
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))
        else:
            self.w_avg = None

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, update_emas: bool = False) -> torch.Tensor:
        # 1. the normalised inputs: z and the embedded label
        parts = []
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"z must have shape [N, {self.z_dim}], got {None if z is None else tuple(z.shape)}")
            parts.append(normalize_2nd_moment(z))
            n, device, dtype = z.shape[0], z.device, z.dtype
        else:
            if c is None:
                raise ValueError("this mapping network has z_dim=0 and needs labels c")
            n, device = c.shape[0], c.device
            dtype = c.dtype if c.is_floating_point() else torch.float32
        if self.c_dim > 0:
            c = _check_c(c, self.c_dim, n, device, dtype)
            parts.append(normalize_2nd_moment(self.embed(c)))
        elif c is not None and c.numel() != 0:
            raise ValueError(f"this mapping network is unconditional (c_dim=0) but got labels of shape {tuple(c.shape)}")
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # [N, z_dim + embed_features]
        # 2. the fully connected layers
        for layer in self.layers:
            x = layer(x)  # [N, layer_features]; [N, w_dim] after the last
        # 3. the running average of w (training), broadcast to num_ws, truncation
        if update_emas and self.w_avg is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            if self.w_avg is None:
                raise ValueError("truncation needs w averaging (w_avg_beta is None)")
            if self.num_ws is None or truncation_cutoff is None or truncation_cutoff >= self.num_ws:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                if truncation_cutoff < 0:
                    raise ValueError(f"truncation_cutoff must be None or >= 0, got {truncation_cutoff}")
                head = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)  # [N, cutoff, w_dim]
                x = torch.cat([head, x[:, truncation_cutoff:]], dim=1)  # [N, num_ws, w_dim]
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, num_layers={self.num_layers}"


# ---------------------------------------------------------------------------
# Synthesis network
# ---------------------------------------------------------------------------


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution + noise + bias + lrelu (one fused op call).

    Args:
        in_channels, out_channels, w_dim: sizes.
        resolution: output resolution (the size of the const noise buffer).
        kernel_size: convolution kernel (3).
        up: 1, or 2 to up-sample (transposed conv + FIR filter inside the op).
        use_noise: add per-pixel noise scaled by the learned ``noise_strength`` (init 0).
        conv_clamp: clamp the output (None: off).
        resample_filter: FIR taps for up-sampling.
        impl: op implementation.

    ``forward(x, w, noise_mode="random", gain=1.0)``; ``w`` is ``[N, w_dim]``.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, conv_clamp: float | None = None,
                 resample_filter=(1, 3, 3, 1), impl: str = "auto"):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.impl = check_impl(impl)
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0, impl=impl)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", gain: float = 1.0) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        styles = self.affine(w)  # [N, in_channels]
        # noise, already scaled by its strength
        noise = None
        if self.use_noise and noise_mode == "random":
            # drawn in float32 so that a half block sees the noise of the float32 network
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device,
                                dtype=torch.promote_types(x.dtype, torch.float32))  # [N, 1, R, R]
            noise = (noise * self.noise_strength).to(x.dtype)
        elif self.use_noise and noise_mode == "const":
            noise = (self.noise_const * self.noise_strength).to(x.dtype)[None, None]  # [1, 1, R, R]
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        weight = self.weight
        if x.dtype in (torch.float16, torch.bfloat16):
            # Demodulation divides out any per-channel scale of weight and styles: bring both
            # to at most 1 in float32 first, so the half products cannot overflow (as NVlabs).
            # Not a duplicate of modulated_conv2d's own float16 prescaling: the op scales only
            # float16 x (this also covers bfloat16, CPU mixed precision), and here the scaling
            # happens in float32 before the cast to x's dtype, so the op sees other roundings.
            # Without it the outputs differ (float16 by up to 6e-3, bfloat16 by up to 3e-2 at
            # unit scale, most elements in their last bits).
            weight = weight * (weight.abs().amax(dim=[1, 2, 3], keepdim=True) * math.sqrt(weight[0].numel())).reciprocal()
            styles = styles * styles.abs().amax(dim=1, keepdim=True).reciprocal()
        return modulated_conv2d(
            x, weight.to(x.dtype), styles.to(x.dtype), noise=noise, up=self.up, padding=self.padding,
            resample_filter=self.resample_filter, demodulate=True, bias=self.bias.to(x.dtype), act="lrelu",
            gain=math.sqrt(2) * gain, clamp=clamp, impl=self.impl,
        )

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, resolution={self.resolution}, up={self.up}, impl={self.impl}"


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution without demodulation, + bias (linear), to ``img_channels``.

    ``forward(x, w)``; the styles are scaled by ``1/sqrt(in_channels)`` (equalised lr).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None,
                 impl: str = "auto"):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv_clamp = conv_clamp
        self.impl = check_impl(impl)
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0, impl=impl)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain  # [N, in_channels]
        return modulated_conv2d(x, self.weight.to(x.dtype), styles.to(x.dtype), demodulate=False,
                                bias=self.bias.to(x.dtype), act="linear", clamp=self.conv_clamp, impl=self.impl)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, impl={self.impl}"


class SynthesisBlock(nn.Module):
    """One resolution of the skip synthesis network.

    ``in_channels == 0`` makes the 4x4 block: a learned constant and one
    SynthesisLayer. Otherwise two SynthesisLayers, the first up-sampling by 2.
    Each block adds its ToRGB output to the up-sampled image of the previous
    block. Uses ``num_conv + num_torgb`` consecutive ws; the ToRGB shares its w
    with the next block's first convolution.

    ``forward(x, img, ws, noise_mode="random") -> (x, img)``; ``ws`` is
    ``[N, num_conv + num_torgb, w_dim]``. With ``use_fp16`` the block's features ``x``
    are half (:func:`~hpcgan.gan.layers.half_dtype` of the device); ``img`` stays float32.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: float | None = None, use_noise: bool = True, resample_filter=(1, 3, 3, 1),
                 use_fp16: bool = False, impl: str = "auto"):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution = resolution
        self.use_fp16 = bool(use_fp16)
        self.impl = check_impl(impl)
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, use_noise=use_noise,
                                        conv_clamp=conv_clamp, resample_filter=resample_filter, impl=impl)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, use_noise=use_noise,
                                    conv_clamp=conv_clamp, resample_filter=resample_filter, impl=impl)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp, impl=impl)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
        w_iter = iter(ws.unbind(dim=1))  # num_conv + num_torgb of [N, w_dim]
        dtype = half_dtype(ws.device) if self.use_fp16 else ws.dtype
        if self.conv0 is None:
            x = self.const.to(dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)  # [N, C, 4, 4]
        else:
            x = self.conv0(x.to(dtype), next(w_iter), noise_mode=noise_mode)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode)
        y = self.torgb(x, next(w_iter)).to(ws.dtype)
        if img is not None:
            img = upsample2d(img, self.resample_filter, up=2, impl=self.impl)
            y = img + y
        return x, y


class SynthesisNetwork(nn.Module):
    """ws ``[N, num_ws, w_dim]`` -> images ``[N, img_channels, R, R]`` (skip architecture).

    Args:
        w_dim: latent size.
        img_resolution: power of two from 32 to 1024.
        img_channels: output channels (1 for X-rays).
        channel_base, channel_max: ``channels(res) = min(channel_base // res, channel_max)``.
        conv_clamp: clamp convolution outputs (StyleGAN2-ADA uses 256 with mixed precision; None: off).
        use_noise: per-layer noise inputs.
        num_fp16_res: the blocks of this many highest resolutions compute in half precision (0: none).
        impl: op implementation.

    ``num_ws = 2 * log2(img_resolution) - 2``.
    ``forward(ws, noise_mode="random")``: noise "random" (fresh), "const" (the
    fixed buffers, deterministic output) or "none".
    """

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int = 1, channel_base: int = 16384,
                 channel_max: int = 512, conv_clamp: float | None = None, use_noise: bool = True,
                 num_fp16_res: int = 0, impl: str = "auto"):
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = _check_resolution(img_resolution)
        self.img_channels = img_channels
        self.impl = check_impl(impl)
        self.num_fp16_res = num_fp16_res
        half_from = fp16_resolution(img_resolution, num_fp16_res)
        log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        self.channels = {res: channels_at(res, channel_base, channel_max) for res in self.block_resolutions}
        self.num_ws = 0
        self.blocks = nn.ModuleList()
        for res in self.block_resolutions:
            in_ch = self.channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_ch, self.channels[res], w_dim, res, img_channels, conv_clamp=conv_clamp,
                                   use_noise=use_noise, use_fp16=res >= half_from, impl=impl)
            self.blocks.append(block)
            self.num_ws += block.num_conv
        self.num_ws += self.blocks[-1].num_torgb

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        x = img = None
        w_idx = 0
        for block in self.blocks:
            n = block.num_conv + block.num_torgb
            x, img = block(x, img, ws.narrow(1, w_idx, n), noise_mode=noise_mode)  # ws [N, n, w_dim]
            w_idx += block.num_conv
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: :class:`MappingNetwork` + :class:`SynthesisNetwork`.

    Args:
        z_dim: latent size (512 in the paper).
        c_dim: number of label features (classes, one-hot); 0 for unconditional.
        w_dim: intermediate latent size (512).
        img_resolution: power of two from 32 to 1024.
        img_channels: 1 for X-rays.
        channel_base, channel_max: channel counts (see :class:`SynthesisNetwork`).
        mapping_layers: depth of the mapping network (8; tiny CPU configs use 2).
        mapping_lr_multiplier: learning-rate multiplier of the mapping network (0.01).
        w_avg_beta: decay of the running average of w used for truncation (0.995).
        conv_clamp: clamp convolution outputs (None: off; 256 in StyleGAN2-ADA's mixed precision setup).
        use_noise: per-layer noise inputs.
        num_fp16_res: synthesis blocks of this many highest resolutions in half precision (0: none).
        impl: op implementation.

    ``forward(z, c=None, truncation_psi=1, truncation_cutoff=None, noise_mode="random",
    update_emas=False) -> img [N, img_channels, R, R]``.
    """

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, img_resolution: int = 256,
                 img_channels: int = 1, channel_base: int = 16384, channel_max: int = 512, mapping_layers: int = 8,
                 mapping_lr_multiplier: float = 0.01, w_avg_beta: float = 0.995, conv_clamp: float | None = None,
                 use_noise: bool = True, num_fp16_res: int = 0, impl: str = "auto"):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.impl = check_impl(impl)
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, channel_base=channel_base,
                                          channel_max=channel_max, conv_clamp=conv_clamp, use_noise=use_noise,
                                          num_fp16_res=num_fp16_res, impl=impl)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, num_ws=self.num_ws, num_layers=mapping_layers,
                                      lr_multiplier=mapping_lr_multiplier, w_avg_beta=w_avg_beta, impl=impl)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "random",
                update_emas: bool = False) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode)


# ---------------------------------------------------------------------------
# Discriminator
# ---------------------------------------------------------------------------


class DiscriminatorBlock(nn.Module):
    """One resolution of the resnet discriminator: R -> R/2.

    ``in_channels == 0`` makes the first block, which starts with FromRGB (1x1
    conv + lrelu from ``img_channels``). Then conv 3x3, conv 3x3 with down=2,
    plus a 1x1 down=2 skip without bias; both paths are scaled by sqrt(0.5).

    ``forward(x, img) -> x``: the first block reads ``img``, the others ``x``. With
    ``use_fp16`` the block computes (and returns ``x``) in half precision.
    """

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 conv_clamp: float | None = None, resample_filter=(1, 3, 3, 1), use_fp16: bool = False,
                 impl: str = "auto"):
        super().__init__()
        self.in_channels = in_channels
        self.use_fp16 = bool(use_fp16)
        self.resolution = resolution
        self.img_channels = img_channels
        self.impl = check_impl(impl)
        kw = dict(conv_clamp=conv_clamp, resample_filter=resample_filter, impl=impl)
        self.fromrgb = Conv2d(img_channels, tmp_channels, 1, activation="lrelu", **kw) if in_channels == 0 else None
        self.conv0 = Conv2d(tmp_channels, tmp_channels, 3, activation="lrelu", **kw)
        self.conv1 = Conv2d(tmp_channels, out_channels, 3, activation="lrelu", down=2, **kw)
        self.skip = Conv2d(tmp_channels, out_channels, 1, bias=False, down=2, resample_filter=resample_filter, impl=impl)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None) -> torch.Tensor:
        dtype = half_dtype(img.device) if self.use_fp16 else img.dtype
        if self.fromrgb is not None:
            x = self.fromrgb(img.to(dtype))
        x = x.to(dtype)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 head: minibatch stddev, 3x3 conv, fc, output fc, label projection.

    ``forward(x, cmap=None) -> [N, 1]`` logits. With ``cmap_dim > 0`` the output
    fc has ``cmap_dim`` features and the logit is ``(x * cmap).sum(1) / sqrt(cmap_dim)``.
    """

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int = 4, mbstd_group_size: int | None = 4,
                 mbstd_num_channels: int = 1, conv_clamp: float | None = None, impl: str = "auto"):
        super().__init__()
        self.in_channels, self.cmap_dim, self.resolution = in_channels, cmap_dim, resolution
        self.impl = check_impl(impl)
        self.mbstd = MinibatchStd(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        extra = mbstd_num_channels if self.mbstd is not None else 0
        self.conv = Conv2d(in_channels + extra, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp, impl=impl)
        self.fc = FullyConnected(in_channels * resolution * resolution, in_channels, activation="lrelu", impl=impl)
        self.out = FullyConnected(in_channels, 1 if cmap_dim == 0 else cmap_dim, impl=impl)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None = None) -> torch.Tensor:
        x = x.to(torch.promote_types(x.dtype, torch.float32))  # the head is never half
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))  # [N, C, 4, 4] -> [N, C * 16] -> [N, C]
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))  # [N, cmap_dim] -> [N, 1]
        return x


class Discriminator(nn.Module):
    """StyleGAN2 discriminator, resnet architecture, optional label projection.

    Args:
        c_dim: label features (0: unconditional).
        img_resolution: power of two from 32 to 1024.
        img_channels: 1 for X-rays.
        channel_base, channel_max: ``channels(res) = min(channel_base // res, channel_max)``.
        conv_clamp: clamp convolution outputs (None: off).
        cmap_dim: size of the label projection (default: channels at 4x4).
        mbstd_group_size, mbstd_num_channels: minibatch standard deviation (4, 1).
        mapping_layers: depth of the label mapping network (StyleGAN2-ADA: 8).
        num_fp16_res: blocks of this many highest resolutions in half precision (0: none).
        impl: op implementation.

    ``forward(img, c=None) -> logits [N, 1]`` (real: high), float32.
    """

    def __init__(self, c_dim: int = 0, img_resolution: int = 256, img_channels: int = 1, channel_base: int = 16384,
                 channel_max: int = 512, conv_clamp: float | None = None, cmap_dim: int | None = None,
                 mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1, mapping_layers: int = 8,
                 num_fp16_res: int = 0, impl: str = "auto"):
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = _check_resolution(img_resolution)
        self.num_fp16_res = num_fp16_res
        half_from = fp16_resolution(img_resolution, num_fp16_res)
        self.img_channels = img_channels
        self.impl = check_impl(impl)
        log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        self.channels = {res: channels_at(res, channel_base, channel_max) for res in self.block_resolutions + [4]}
        self.cmap_dim = 0 if c_dim == 0 else (self.channels[4] if cmap_dim is None else cmap_dim)
        self.blocks = nn.ModuleList()
        for res in self.block_resolutions:
            in_ch = self.channels[res] if res < img_resolution else 0
            self.blocks.append(DiscriminatorBlock(in_ch, self.channels[res], self.channels[res // 2], res,
                                                  img_channels, conv_clamp=conv_clamp, use_fp16=res >= half_from,
                                                  impl=impl))
        self.mapping = None
        if c_dim > 0:
            self.mapping = MappingNetwork(0, c_dim, self.cmap_dim, num_ws=None, num_layers=mapping_layers,
                                          w_avg_beta=None, impl=impl)
        self.b4 = DiscriminatorEpilogue(self.channels[4], self.cmap_dim, mbstd_group_size=mbstd_group_size,
                                        mbstd_num_channels=mbstd_num_channels, conv_clamp=conv_clamp, impl=impl)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        R = self.img_resolution
        if img.ndim != 4 or img.shape[1] != self.img_channels or img.shape[2] != R or img.shape[3] != R:
            raise ValueError(f"img must have shape [N, {self.img_channels}, {R}, {R}], got {tuple(img.shape)}")
        c = _check_c(c, self.c_dim, img.shape[0], img.device, img.dtype)
        x = None
        for block in self.blocks:
            x = block(x, img)
        cmap = self.mapping(None, c) if self.mapping is not None else None
        return self.b4(x, cmap)
