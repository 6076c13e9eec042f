"""Adaptive discriminator augmentation (ADA, Karras et al. 2020) for grayscale images.

:class:`AugmentPipe` applies, independently to every image of a batch and each
with probability ``p`` (times the transform's multiplier), the standard ADA
groups, restricted to what makes sense for one channel:

- pixel blitting: x-flip, rotation by a multiple of 90 degrees, integer translation;
- geometric: isotropic scaling, arbitrary rotation (before and after the
  anisotropic scaling, each with probability ``1 - sqrt(1 - p)``), anisotropic
  scaling, fractional translation;
- colour (grayscale): brightness (offset), contrast (scale), luma flip (``-x``).

Blitting and geometric transforms are composed into one inverse affine matrix
per image and applied by :func:`affine_warp`. Images with a geometric transform
are resampled anti-aliased, as in the ADA paper: reflect-padded as far as the
transform reaches, upsampled 2x with the symlet-6 wavelet filter (:data:`SYM6`),
sampled bilinearly at 2x, low-pass filtered with the same filter and decimated
2x (hpcgan.ops.upfirdn2d). Images with blitting transforms only land on pixel
centres: one bilinear ``F.grid_sample`` at 1x moves them exactly. Images whose
matrix is the identity are passed through untouched. ``antialias=False`` keeps
the older single 1x bilinear ``grid_sample`` for every image (for comparison).
The colour transforms are a per-image ``x * scale + offset``. Everything is
differentiable with respect to the input images (twice: R1 differentiates
through it), so it can sit in front of the discriminator for both real and
generated images. With ``p == 0`` the input is returned unchanged.

:class:`AdaController` tunes ``p``: it accumulates the sign of the
discriminator's raw outputs on real images and, every ``interval`` training
steps, moves ``p`` by ``sign(mean_sign - target) * batch * interval / (ada_kimg * 1000)``,
clamped to [0, 1].

Images are ``[N, C, H, W]`` in about [-1, 1] (C is normally 1; the colour
transforms act on every channel alike).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hpcgan.ops.upfirdn2d import setup_filter, upfirdn2d, upsample2d

__all__ = ["AugmentPipe", "AdaController", "ADA_MODES", "GROUPS", "SYM6", "affine_warp"]

ADA_MODES = ("ada", "fixed", "noaug")

# Transform multipliers enabled by each group letter (ADA's names).
GROUPS = {
    "b": ("xflip", "rotate90", "xint"),
    "g": ("scale", "rotate", "aniso", "xfrac"),
    "c": ("brightness", "contrast", "lumaflip"),
}
_ALL = tuple(name for g in GROUPS.values() for name in g)

# Daubechies' least-asymmetric wavelet of order 6 (symlet 6): its 12 low-pass
# decomposition taps. Orthonormal: they sum to sqrt(2), their squares sum to 1,
# they are orthogonal to their own even shifts, and the matching high-pass filter
# has 6 vanishing moments (tests/gan/test_augment.py checks all four).
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)


def _eye(n: int, batch: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(n, dtype=like.dtype, device=like.device).expand(batch, n, n).clone()


def _translate(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = _eye(3, tx.shape[0], tx)
    m[:, 0, 2] = tx
    m[:, 1, 2] = ty
    return m


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = _eye(3, sx.shape[0], sx)
    m[:, 0, 0] = sx
    m[:, 1, 1] = sy
    return m


def _rotate(theta: torch.Tensor) -> torch.Tensor:
    m = _eye(3, theta.shape[0], theta)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0] = c
    m[:, 0, 1] = -s
    m[:, 1, 0] = s
    m[:, 1, 1] = c
    return m


def _affine2d(sx, sy, tx, ty, like: torch.Tensor) -> torch.Tensor:
    """One ``[3, 3]`` matrix ``diag(sx, sy, 1)`` followed by a translation by ``(tx, ty)``."""
    return torch.tensor([[sx, 0.0, tx], [0.0, sy, ty], [0.0, 0.0, 1.0]], dtype=like.dtype, device=like.device)


def _check_warp_args(images: torch.Tensor, G_inv: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a floating-point [N, C, H, W] tensor, got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    if not isinstance(G_inv, torch.Tensor) or tuple(G_inv.shape) != (images.shape[0], 3, 3):
        raise ValueError(f"G_inv must be [N, 3, 3] with N = {images.shape[0]}, got "
                         f"{getattr(G_inv, 'shape', type(G_inv).__name__)}")


def affine_warp(images: torch.Tensor, G_inv: torch.Tensor, antialias: bool = True, impl: str = "auto") -> torch.Tensor:
    """Resample every image at ``G_inv[i]`` applied to its output pixel positions.

    ``images`` ``[N, C, H, W]``; ``G_inv`` ``[N, 3, 3]``, the inverse transform
    (output pixel -> input pixel) in pixel units from the image centre. Returns
    ``[N, C, H, W]``, differentiable (twice) with respect to ``images``.

    ``antialias=True``: reflect-pad, upsample 2x with :data:`SYM6`, bilinear
    ``grid_sample`` at 2x, sym6 low-pass and decimate 2x (``impl`` picks the
    upfirdn2d implementation). The identity and integer translations come back
    exactly (sym6 is orthonormal: down(up(x)) == x). ``antialias=False``: one
    bilinear ``grid_sample`` at 1x with reflection padding.
    """
    _check_warp_args(images, G_inv)
    G_inv = G_inv.to(images.dtype)
    if images.shape[0] == 0:
        return images
    return _warp_antialiased(images, G_inv, impl) if antialias else _warp_1x(images, G_inv)


def _warp_1x(x: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    N, C, H, W = x.shape
    # Pixel units -> grid_sample's normalised units (align_corners=False): x_n = x_pix / (W / 2).
    theta = (_affine2d(2 / W, 2 / H, 0, 0, x) @ G @ _affine2d(W / 2, H / 2, 0, 0, x))[:, :2, :]  # [N, 2, 3]
    grid = F.affine_grid(theta, [N, C, H, W], align_corners=False)  # [N, H, W, 2]
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _sym6(like: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The separable sym6 filter (unit DC gain) on ``like``'s device, and its delay.

    The delay is how far the taps' centroid lies from the middle tap position,
    in upsampled pixels: after upsample2d a pixel at ``u`` (pixels from the
    centre) sits at ``2u + delay``; the decimation (a correlation) takes it back.
    """
    f = setup_filter(list(SYM6), device=like.device)  # [12]
    taps = torch.tensor(SYM6, dtype=torch.float64)
    delay = float((taps * torch.arange(len(SYM6))).sum() / taps.sum()) - (len(SYM6) - 1) / 2
    return f, delay


def _reflect_margins(G: torch.Tensor, reach_x: float, reach_y: float, W: int, H: int, extra: float):
    """Reflect padding ``[x0, x1, y0, y1]`` (ints, at most size - 1) so that every
    output position (up to ``reach`` pixels from the centre), mapped by ``G``,
    lies at least ``extra`` pixels inside the padded image."""
    corners = torch.tensor([[-reach_x, -reach_y, 1.0], [reach_x, -reach_y, 1.0], [reach_x, reach_y, 1.0],
                            [-reach_x, reach_y, 1.0]], dtype=torch.float64)  # [4, 3]
    src = (G.detach().double().cpu() @ corners.t())[:, :2, :]  # [N, xy, 4]
    lo, hi = src.amin(dim=(0, 2)), src.amax(dim=(0, 2))  # [xy]
    half = torch.tensor([(W - 1) / 2, (H - 1) / 2], dtype=torch.float64)
    need0 = (-lo - half + extra).clamp(min=0).ceil()
    need1 = (hi - half + extra).clamp(min=0).ceil()
    x0, y0 = (min(int(v), s - 1) for v, s in zip(need0.tolist(), (W, H)))
    x1, y1 = (min(int(v), s - 1) for v, s in zip(need1.tolist(), (W, H)))
    return x0, x1, y0, y1


def _warp_antialiased(x: torch.Tensor, G: torch.Tensor, impl: str) -> torch.Tensor:
    N, C, H, W = x.shape
    f, d = _sym6(x)
    taps = f.shape[0]
    ext = taps // 2 - 1  # the decimation filter's reach beyond the 2x output grid, per side
    Wo, Ho = 2 * W + 2 * ext, 2 * H + 2 * ext  # the 2x sample grid, before decimation
    # Pad by reflection as far as the sample grid reaches (plus the upsampling filter's
    # support and one bilinear neighbour), the same padding for the whole batch.
    x0, x1, y0, y1 = _reflect_margins(G, (Wo / 2 - d) / 2, (Ho / 2 - d) / 2, W, H, extra=taps / 4 + 1)
    xp = F.pad(x, [x0, x1, y0, y1], mode="reflect") if x0 or x1 or y0 or y1 else x  # [N, C, Hp, Wp]
    Hp, Wp = xp.shape[2], xp.shape[3]
    # Upsample 2x: a pixel at u (from the padded centre) now sits at 2u + d.
    xu = upsample2d(xp, f, up=2, impl=impl)  # [N, C, 2Hp, 2Wp]
    # Sample-grid position v -> output position (v - d) / 2 -> G -> padded input -> 2x input position,
    # then to grid_sample's normalised units on both ends (align_corners=False).
    M = (_affine2d(1 / Wp, 1 / Hp, 0, 0, x) @ _affine2d(2, 2, d, d, x)
         @ _affine2d(1, 1, (x0 - x1) / 2, (y0 - y1) / 2, x) @ G
         @ _affine2d(0.5, 0.5, -d / 2, -d / 2, x) @ _affine2d(Wo / 2, Ho / 2, 0, 0, x))  # [N, 3, 3]
    grid = F.affine_grid(M[:, :2, :], [N, C, Ho, Wo], align_corners=False)  # [N, Ho, Wo, 2]
    xs = F.grid_sample(xu, grid, mode="bilinear", padding_mode="reflection", align_corners=False)  # [N, C, Ho, Wo]
    # Low-pass and decimate 2x; the correlation (flip_filter) undoes the upsampling's delay.
    return upfirdn2d(xs, f, down=2, flip_filter=True, impl=impl)  # [N, C, H, W]


class AugmentPipe(nn.Module):
    """Differentiable grayscale ADA augmentation.

    Args:
        p: initial augmentation probability (the buffer ``p``, a float tensor).
        xflip, rotate90, xint: multipliers of the pixel-blitting transforms' probability.
        xint_max: largest integer translation, as a fraction of the image size.
        scale, rotate, aniso, xfrac: multipliers of the geometric transforms' probability.
        scale_std: std of log2 of the isotropic scale.
        rotate_max: largest arbitrary rotation, as a fraction of pi.
        aniso_std: std of log2 of the anisotropic scale.
        xfrac_std: std of the fractional translation, as a fraction of the image size.
        brightness, contrast, lumaflip: multipliers of the colour transforms' probability.
        brightness_std: std of the brightness offset.
        contrast_std: std of log2 of the contrast scale.
        antialias: resample geometric transforms anti-aliased (the default, as
            ADA does; see :func:`affine_warp`); False: one bilinear
            ``grid_sample`` at 1x for every moved image (the older, cheaper path).
        impl: upfirdn2d implementation of the anti-aliased path ("auto",
            "native", "ref"; ``hpcgan.gan.set_impl`` switches it).

    A multiplier of 0 disables a transform. :meth:`from_groups` builds a pipe
    from ADA's group letters ("bgc" = all, the default; "bg"; "b"; ...).

    ``forward(images) -> images`` (same shape and dtype). Randomness comes from
    torch's global generator of the images' device.
    """

    def __init__(self, p: float = 0.0, xflip: float = 1, rotate90: float = 1, xint: float = 1,
                 xint_max: float = 0.125, scale: float = 1, rotate: float = 1, aniso: float = 1, xfrac: float = 1,
                 scale_std: float = 0.2, rotate_max: float = 1.0, aniso_std: float = 0.2, xfrac_std: float = 0.125,
                 brightness: float = 1, contrast: float = 1, lumaflip: float = 1, brightness_std: float = 0.2,
                 contrast_std: float = 0.5, antialias: bool = True, impl: str = "auto"):
        super().__init__()
        from hpcgan.ops._native import IMPLS

        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.antialias = bool(antialias)
        self.impl = impl
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        mults = dict(xflip=xflip, rotate90=rotate90, xint=xint, scale=scale, rotate=rotate, aniso=aniso,
                     xfrac=xfrac, brightness=brightness, contrast=contrast, lumaflip=lumaflip)
        for name, v in mults.items():
            if not v >= 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
            setattr(self, name, float(v))
        for name, v in dict(xint_max=xint_max, scale_std=scale_std, rotate_max=rotate_max, aniso_std=aniso_std,
                            xfrac_std=xfrac_std, brightness_std=brightness_std, contrast_std=contrast_std).items():
            if not v >= 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
            setattr(self, name, float(v))
        self.register_buffer("p", torch.tensor(float(p)))

    @classmethod
    def from_groups(cls, groups: str = "bgc", **kwargs) -> AugmentPipe:
        """A pipe with the transforms of the named groups ("b", "g", "c") enabled."""
        bad = set(groups) - set(GROUPS)
        if bad:
            raise ValueError(f"unknown augmentation groups {sorted(bad)}; use letters of {''.join(GROUPS)}")
        enabled = {name for g in groups for name in GROUPS[g]}
        mults = {name: (1.0 if name in enabled else 0.0) for name in _ALL}
        mults.update(kwargs)
        return cls(**mults)

    def set_p(self, p: float) -> None:
        """Set the augmentation probability (clamped to [0, 1])."""
        self.p.fill_(min(max(float(p), 0.0), 1.0))

    def _chance(self, mult: float, n: int, like: torch.Tensor, prob=None) -> torch.Tensor:
        prob = self.p * mult if prob is None else prob
        return torch.rand(n, device=like.device) < prob

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        if float(self.p) == 0:
            return images
        # The random draws run in this order (blitting, geometric, colour): it fixes the result for a seed.
        G_blit = self._blit_matrix(images)  # [N, 3, 3]
        G_geom = self._geom_matrix(images)  # [N, 3, 3]
        x = self._warp(images, G_blit, G_geom)  # [N, C, H, W]
        return self._recolour(x, images)  # [N, C, H, W]

    def _draws(self, like: torch.Tensor):
        """``rand(*shape)``, ``randn(*shape)`` and per-image zeros and ones ``[N]`` on ``like``'s device and dtype."""
        dev, dt = like.device, like.dtype

        def rand(*shape):
            return torch.rand(*shape, device=dev, dtype=dt)

        def randn(*shape):
            return torch.randn(*shape, device=dev, dtype=dt)

        N = like.shape[0]
        return rand, randn, torch.zeros(N, device=dev, dtype=dt), torch.ones(N, device=dev, dtype=dt)

    def _blit_matrix(self, images: torch.Tensor) -> torch.Tensor:
        """Pixel blitting (x-flip, rotation by k * 90 degrees, integer translation) as one inverse transform
        ``[N, 3, 3]`` (output pixel -> input pixel, in pixels from the image centre)."""
        N, _, H, W = images.shape
        rand, _, zeros, ones = self._draws(images)
        G = _eye(3, N, zeros)  # [N, 3, 3]
        if self.xflip > 0:
            i = torch.floor(rand(N) * 2)  # [N]
            i = torch.where(self._chance(self.xflip, N, images), i, zeros)
            G = G @ _scale(1 - 2 * i, ones)
        if self.rotate90 > 0:
            i = torch.floor(rand(N) * 4)  # [N]
            i = torch.where(self._chance(self.rotate90, N, images), i, zeros)
            G = G @ _rotate(-(math.pi / 2) * i)
        if self.xint > 0:
            t = (rand(N, 2) * 2 - 1) * self.xint_max  # [N, xy]
            t = torch.where(self._chance(self.xint, N, images)[:, None], t, torch.zeros_like(t))
            G = G @ _translate(-torch.round(t[:, 0] * W), -torch.round(t[:, 1] * H))
        return G

    def _geom_matrix(self, images: torch.Tensor) -> torch.Tensor:
        """The geometric transforms (isotropic scaling, rotation, anisotropic scaling, rotation, fractional
        translation) as one inverse transform ``[N, 3, 3]``, applied after the blitting."""
        N, _, H, W = images.shape
        rand, randn, zeros, ones = self._draws(images)
        G = _eye(3, N, zeros)  # [N, 3, 3]
        if self.scale > 0:
            s = torch.exp2(randn(N) * self.scale_std)  # [N]
            s = torch.where(self._chance(self.scale, N, images), s, ones)
            G = G @ _scale(1 / s, 1 / s)
        p_rot = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(0, 1))  # each of the two rotations
        if self.rotate > 0:
            theta = (rand(N) * 2 - 1) * math.pi * self.rotate_max  # [N]
            theta = torch.where(self._chance(self.rotate, N, images, p_rot), theta, zeros)
            G = G @ _rotate(theta)
        if self.aniso > 0:
            s = torch.exp2(randn(N) * self.aniso_std)  # [N]
            s = torch.where(self._chance(self.aniso, N, images), s, ones)
            G = G @ _scale(1 / s, s)
        if self.rotate > 0:
            theta = (rand(N) * 2 - 1) * math.pi * self.rotate_max  # [N]
            theta = torch.where(self._chance(self.rotate, N, images, p_rot), theta, zeros)
            G = G @ _rotate(theta)
        if self.xfrac > 0:
            t = randn(N, 2) * self.xfrac_std  # [N, xy]
            t = torch.where(self._chance(self.xfrac, N, images)[:, None], t, torch.zeros_like(t))
            G = G @ _translate(-t[:, 0] * W, -t[:, 1] * H)
        return G

    def _recolour(self, x: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Colour: ``x' = flip * contrast * (x + brightness)``, as ADA's colour matrix on the luma axis; images
        drawn with no colour transform are returned untouched."""
        N = x.shape[0]
        rand, randn, zeros, ones = self._draws(images)
        scale = ones  # [N]
        offset = zeros  # [N]
        if self.brightness > 0:
            b = randn(N) * self.brightness_std
            b = torch.where(self._chance(self.brightness, N, images), b, zeros)
            offset = offset + b
        if self.contrast > 0:
            c = torch.exp2(randn(N) * self.contrast_std)
            c = torch.where(self._chance(self.contrast, N, images), c, ones)
            scale, offset = scale * c, offset * c
        if self.lumaflip > 0:
            i = torch.floor(rand(N) * 2)
            i = torch.where(self._chance(self.lumaflip, N, images), i, zeros)
            scale, offset = scale * (1 - 2 * i), offset * (1 - 2 * i)
        recolour = (scale != 1) | (offset != 0)  # [N]
        if bool(recolour.any()):
            y = x * scale[:, None, None, None] + offset[:, None, None, None]  # [N, C, H, W]
            x = torch.where(recolour[:, None, None, None], y, x)
        return x

    def _warp(self, x: torch.Tensor, G_blit: torch.Tensor, G_geom: torch.Tensor) -> torch.Tensor:
        """Apply ``G_blit @ G_geom`` to the images it moves (exact comparison: untouched images keep
        an exact identity); anti-aliased where a geometric transform is drawn."""
        eye3 = torch.eye(3, device=x.device, dtype=x.dtype)
        blit = (G_blit != eye3).flatten(1).any(dim=1)  # [N]: moved by blitting
        geom = (G_geom != eye3).flatten(1).any(dim=1)  # [N]: moved by a geometric transform
        G = G_blit @ G_geom
        parts = ((blit & ~geom, False), (geom, True)) if self.antialias else ((blit | geom, False),)
        for chosen, aa in parts:
            if bool(chosen.any()):
                idx = torch.nonzero(chosen).flatten()  # [M]: the chosen images
                x = x.index_copy(0, idx, affine_warp(x.index_select(0, idx), G[idx], antialias=aa, impl=self.impl))
        return x

    def extra_repr(self) -> str:
        on = [n for n in _ALL if getattr(self, n) > 0]
        return f"p={float(self.p):.4f}, transforms={on}, antialias={self.antialias}"


class AdaController:
    """Tunes ``augment_pipe.p`` from the discriminator's outputs on real images.

    Args:
        augment_pipe: the :class:`AugmentPipe` whose ``p`` is tuned (or set).
        mode: "ada" (tune p, starting from ``p`` or 0), "fixed" (p stays at the
            given ``p``) or "noaug" (p = 0; the training loop may skip the pipe).
        p: initial / fixed probability.
        target: target mean of sign(D(real)) (0.6).
        interval: training steps between adjustments (4).
        ada_kimg: thousands of images for p to go from 0 to 1 (500).
        batch_size: global batch size (images per training step), used in the
            adjustment; :meth:`step` may override it.
        reduce_fn: optional callable applied to the accumulator tensor
            ``[sign_sum, count]`` before each adjustment; in multi-process
            training pass an all-reduce (sum) so all ranks agree on p.

    Use: after each D phase that evaluates reals, ``accumulate(real_logits)``
    (or ``accumulate(mean_sign, count)`` with the loss's ``Dreal_sign`` stat);
    once per training step ``step()``. ``state_dict()`` / ``load_state_dict()``
    checkpoint p and the accumulators; with several ranks ``global_state_dict()``
    sums the accumulators over ranks first.
    """

    def __init__(self, augment_pipe: AugmentPipe, mode: str = "ada", p: float | None = None, target: float = 0.6,
                 interval: int = 4, ada_kimg: float = 500, batch_size: int | None = None,
                 reduce_fn: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if mode not in ADA_MODES:
            raise ValueError(f"augmentation mode must be one of {ADA_MODES}, got {mode!r}")
        if mode == "fixed" and p is None:
            raise ValueError("augmentation mode 'fixed' needs a probability p in [0, 1]")
        if p is not None and not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if not -1 <= target <= 1:
            raise ValueError(f"target must be in [-1, 1], got {target}")
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        if not ada_kimg > 0:
            raise ValueError(f"ada_kimg must be > 0, got {ada_kimg}")
        self.augment_pipe = augment_pipe
        self.mode = mode
        self.target = float(target)
        self.interval = int(interval)
        self.ada_kimg = float(ada_kimg)
        self.batch_size = batch_size
        self.reduce_fn = reduce_fn
        self.steps = 0
        self._acc = torch.zeros(2, dtype=torch.float64)  # [sign_sum, count]
        self.augment_pipe.set_p(0.0 if mode == "noaug" else (p or 0.0))

    @property
    def p(self) -> float:
        """The current augmentation probability."""
        return float(self.augment_pipe.p)

    @property
    def mean_sign(self) -> float | None:
        """Mean sign of D(real) accumulated since the last adjustment (None when empty)."""
        return None if self._acc[1] == 0 else float(self._acc[0] / self._acc[1])

    def accumulate(self, signs, count: int | None = None) -> None:
        """Add observations of D on reals.

        ``signs``: a tensor of raw logits (or signs) of any shape, each element
        one observation; or a number (or 0-d tensor) that is a mean sign over
        ``count`` samples (default 1).
        """
        if isinstance(signs, torch.Tensor) and signs.numel() != 1 and count is None:
            s = signs.detach().sign()
            self._acc += torch.stack([s.sum().double().cpu(), torch.tensor(float(s.numel()), dtype=torch.float64)])
            return
        v = float(signs)
        n = 1 if count is None else int(count)
        if not math.isfinite(v):
            return  # a non-finite loss is reported by the loss, not here
        self._acc += torch.tensor([v * n, float(n)], dtype=torch.float64)

    def step(self, batch_size: int | None = None) -> bool:
        """Count one training step; every ``interval`` steps adjust p. Returns True when p was adjusted."""
        self.steps += 1
        if self.mode != "ada" or self.steps % self.interval != 0:
            return False
        acc = self._acc.clone()
        if self.reduce_fn is not None:
            acc = self.reduce_fn(acc)
        self._acc.zero_()
        if float(acc[1]) == 0:
            return False
        batch = self.batch_size if batch_size is None else batch_size
        if batch is None:
            raise ValueError("AdaController needs the batch size (constructor batch_size or step(batch_size))")
        mean = float(acc[0] / acc[1])
        delta = math.copysign(1.0, mean - self.target) if mean != self.target else 0.0
        adjust = delta * (batch * self.interval) / (self.ada_kimg * 1000)
        self.augment_pipe.set_p(self.p + adjust)
        return True

    def state_dict(self) -> dict:
        """p, the step counter and this process's accumulators (tensors and plain numbers: loads with
        weights_only=True). With several ranks, checkpoint :meth:`global_state_dict` instead."""
        return {"mode": self.mode, "p": self.augment_pipe.p.detach().clone().cpu(), "steps": self.steps,
                "acc": self._acc.clone()}

    def global_state_dict(self) -> dict:
        """:meth:`state_dict` with the accumulators summed over ranks by ``reduce_fn``.

        A collective: every rank calls it. The partial sums since the last adjustment
        are then all in the checkpoint, whatever the number of ranks; load it with
        ``load_state_dict(state, holder=rank == 0)``.
        """
        state = self.state_dict()
        if self.reduce_fn is not None:
            state["acc"] = self.reduce_fn(self._acc.clone()).to(torch.float64).cpu()
        return state

    def load_state_dict(self, state: dict, holder: bool = True) -> None:
        """Restore p (in mode "ada"; "fixed" and "noaug" keep their configured p) and the counters.

        ``holder``: whether this process takes over the accumulators. With several
        ranks exactly one (rank 0) holds a :meth:`global_state_dict`'s sums and the
        others start from zero, so the next all-reduce counts each observation once.
        """
        if self.mode == "ada":
            self.augment_pipe.set_p(float(state["p"]))
        self.steps = int(state["steps"])
        acc = torch.as_tensor(state["acc"], dtype=torch.float64).clone()
        self._acc = acc if holder else torch.zeros_like(acc)
