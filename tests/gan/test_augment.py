"""ADA: the augmentation pipe (identity at p=0, differentiable, per-image probability) and the p controller."""

from __future__ import annotations

import io

import pytest
import torch

from hpcgan.gan import AdaController, AugmentPipe


def _images(n=8, size=16, dtype=torch.float32, seed=0):
    """Smooth structured images in [-1, 1] (a blob and a gradient), different per image."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size, dtype=dtype), torch.linspace(-1, 1, size, dtype=dtype), indexing="ij")
    cx = torch.rand(n, 1, 1, generator=g, dtype=dtype) - 0.5
    img = torch.exp(-((xx - cx) ** 2 + yy ** 2) * 4) * 1.6 - 0.8 + 0.2 * xx
    return img.clamp(-1, 1)[:, None]


def test_p0_is_identity():
    x = _images().requires_grad_(True)
    pipe = AugmentPipe(p=0.0)
    y = pipe(x)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_p1_changes_images_and_keeps_shape_and_range():
    torch.manual_seed(0)
    x = _images(16)
    y = AugmentPipe(p=1.0)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    changed = (y - x).abs().flatten(1).amax(dim=1) > 1e-4
    assert changed.float().mean() > 0.8  # with p=1 almost every image gets some transform
    # The 1x bilinear path interpolates between pixels: the range cannot grow.
    yg = AugmentPipe.from_groups("bg", p=1.0, antialias=False)(x)
    assert yg.min() >= x.min() - 1e-5 and yg.max() <= x.max() + 1e-5
    assert not torch.allclose(yg, x)
    # The anti-aliased path's sym6 filter has negative taps: it may ring, but only a little.
    torch.manual_seed(0)
    ya = AugmentPipe.from_groups("bg", p=1.0)(x)
    span = float(x.max() - x.min())
    assert ya.min() >= x.min() - 0.05 * span and ya.max() <= x.max() + 0.05 * span
    assert not torch.allclose(ya, x)


def test_blitting_permutes_pixels():
    torch.manual_seed(1)
    x = _images(12)
    pipe = AugmentPipe.from_groups("", xflip=1, rotate90=1, p=1.0)
    y = pipe(x)
    # x-flips and 90-degree rotations move pixels without interpolation: same values, new places.
    assert torch.allclose(y.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values, atol=1e-5)
    assert not torch.allclose(y, x)
    # Integer translation (with reflection padding) lands on pixel centres too: no new values.
    t = AugmentPipe.from_groups("", xint=1, p=1.0)(x)
    moved = (t - x).abs().flatten(1).amax(dim=1) > 1e-4
    assert moved.any()
    for i in range(x.shape[0]):
        dist = (t[i].flatten()[:, None] - x[i].flatten()[None, :]).abs().amin(dim=1)
        assert dist.max() < 1e-4


def test_colour_transforms_grayscale():
    torch.manual_seed(2)
    x = _images(32)
    y = AugmentPipe.from_groups("", lumaflip=1, p=1.0)(x)
    flipped = torch.isclose(y, -x).flatten(1).all(dim=1)
    kept = torch.stack([torch.tensor(torch.equal(y[i], x[i])) for i in range(32)])
    assert (flipped | kept).all() and flipped.any() and kept.any()
    # brightness + contrast is a per-image affine map of the intensities.
    z = AugmentPipe.from_groups("", brightness=1, contrast=1, p=1.0)(x)
    for i in range(32):
        a = torch.stack([x[i].flatten(), torch.ones(x[i].numel())], dim=1)
        sol = torch.linalg.lstsq(a, z[i].flatten()[:, None]).solution
        assert torch.allclose(a @ sol, z[i].flatten()[:, None], atol=1e-4)


def test_probability_per_image():
    torch.manual_seed(3)
    n = 4000
    x = torch.randn(n, 1, 4, 4).clamp(-1, 1)
    pipe = AugmentPipe.from_groups("", brightness=1, p=0.3)
    y = pipe(x)
    frac = ((y - x).abs().flatten(1).amax(dim=1) > 0).float().mean().item()
    sigma = (0.3 * 0.7 / n) ** 0.5
    assert abs(frac - 0.3) < 5 * sigma
    # The multiplier scales the probability.
    pipe_half = AugmentPipe.from_groups("", brightness=0.5, p=0.3)
    frac = ((pipe_half(x) - x).abs().flatten(1).amax(dim=1) > 0).float().mean().item()
    assert abs(frac - 0.15) < 5 * (0.15 * 0.85 / n) ** 0.5


def test_differentiable_gradcheck():
    x = _images(2, size=6, dtype=torch.float64).requires_grad_(True)
    pipe = AugmentPipe(p=1.0)

    def f(inp):
        torch.manual_seed(7)  # the same random transforms in every evaluation
        return pipe(inp)

    assert not torch.allclose(f(x), x)
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(f, (x,), eps=1e-6, atol=1e-5)


def test_p_buffer_in_state_dict():
    pipe = AugmentPipe(p=0.25)
    sd = pipe.state_dict()
    assert "p" in sd and float(sd["p"]) == 0.25
    other = AugmentPipe()
    other.load_state_dict(sd)
    assert float(other.p) == 0.25
    with pytest.raises(ValueError):
        AugmentPipe(p=1.5)
    with pytest.raises(ValueError, match="groups"):
        AugmentPipe.from_groups("bx")


def test_ada_raises_p_when_d_overconfident():
    pipe = AugmentPipe()
    ada = AdaController(pipe, mode="ada", target=0.6, interval=4, ada_kimg=1, batch_size=10)
    assert ada.p == 0
    step = 10 * 4 / 1000
    for i in range(4):
        ada.accumulate(torch.full((10, 1), 3.0))  # D says "real" with confidence on every real
        adjusted = ada.step()
        assert adjusted == (i == 3)
    assert ada.p == pytest.approx(step)
    for _ in range(4):
        ada.accumulate(torch.ones(10, 1))
        ada.step()
    assert ada.p == pytest.approx(2 * step)


def test_ada_lowers_p_when_d_unsure_and_clamps():
    pipe = AugmentPipe()
    ada = AdaController(pipe, mode="ada", p=0.05, target=0.6, interval=2, ada_kimg=1, batch_size=10)
    for _ in range(2):
        ada.accumulate(0.2, count=10)  # mean sign below the target
        ada.step()
    assert ada.p == pytest.approx(0.05 - 10 * 2 / 1000)
    for _ in range(20):
        ada.accumulate(-1.0, count=10)
        ada.step()
    assert ada.p == 0.0  # clamped
    ada2 = AdaController(AugmentPipe(), p=0.99, interval=1, ada_kimg=1, batch_size=100)
    ada2.accumulate(torch.ones(8))
    ada2.step()
    assert ada2.p == 1.0


def test_ada_modes_and_checkpoint():
    fixed = AdaController(AugmentPipe(), mode="fixed", p=0.3, interval=1, batch_size=4)
    for _ in range(3):
        fixed.accumulate(torch.ones(4))
        assert not fixed.step()
    assert fixed.p == pytest.approx(0.3)
    noaug = AdaController(AugmentPipe(p=0.7), mode="noaug", interval=1, batch_size=4)
    noaug.accumulate(torch.ones(4))
    noaug.step()
    assert noaug.p == 0
    with pytest.raises(ValueError, match="fixed"):
        AdaController(AugmentPipe(), mode="fixed")
    with pytest.raises(ValueError, match="mode"):
        AdaController(AugmentPipe(), mode="auto")

    ada = AdaController(AugmentPipe(), mode="ada", interval=3, ada_kimg=1, batch_size=8)
    for _ in range(4):
        ada.accumulate(torch.ones(8))
        ada.step()
    buf = io.BytesIO()
    torch.save(ada.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = AdaController(AugmentPipe(), mode="ada", interval=3, ada_kimg=1, batch_size=8)
    resumed.load_state_dict(state)
    assert resumed.p == ada.p > 0 and resumed.steps == ada.steps
    assert resumed.mean_sign == ada.mean_sign == 1.0
    # Both go on identically.
    for c in (ada, resumed):
        for _ in range(2):
            c.accumulate(torch.ones(8))
            c.step()
    assert resumed.p == ada.p


# -- the anti-aliased geometric path (sym6 up 2x, grid_sample, sym6 down 2x) ------------------------------------------


def test_sym6_taps_are_the_orthonormal_symlet():
    """The 12 taps written in augment.py are Daubechies' symlet 6: orthonormal, 6 vanishing moments."""
    from hpcgan.gan.augment import SYM6

    f = torch.tensor(SYM6, dtype=torch.float64)
    k = torch.arange(12, dtype=torch.float64)
    assert len(SYM6) == 12
    assert float(f.sum()) == pytest.approx(2 ** 0.5, abs=1e-12)
    assert float((f * f).sum()) == pytest.approx(1.0, abs=1e-11)
    for m in range(1, 6):  # orthogonal to its even shifts
        assert abs(float((f[:-2 * m] * f[2 * m:]).sum())) < 1e-11
    hi = (-1) ** k * f.flip(0)  # the quadrature-mirror high-pass
    for p in range(6):  # its moments 0..5 vanish (relative to the size of k**p)
        assert abs(float((k ** p * hi).sum())) < 1e-9 * 11 ** p


def _gauss_blob(size: int, cx: float, cy: float, sigma: float = 2.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64) - c, torch.arange(size, dtype=torch.float64) - c,
                            indexing="ij")
    return torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))[None, None], xx, yy


def test_antialiased_warp_is_exact_on_the_pixel_grid_and_rotates_about_the_centre(data_cxr_root):
    """sym6 is orthonormal, so the 2x round trip is exact where sampling lands on pixels; rotations keep the geometry."""
    import math

    from hpcgan.gan.augment import _eye, _rotate, _translate, affine_warp

    x = _xray(data_cxr_root / "kaggle224" / "COVID" / "COVID-1.png")
    assert torch.allclose(affine_warp(x, _eye(3, 1, x)), x, atol=1e-4)
    shift = _translate(torch.tensor([3.0]), torch.tensor([-2.0]))
    # (the border differs: F.pad's reflection repeats no pixel, grid_sample's repeats the edge one)
    torch.testing.assert_close(affine_warp(x, shift)[..., 4:-4, 4:-4], affine_warp(x, shift, antialias=False)[..., 4:-4, 4:-4],
                               atol=1e-4, rtol=0)
    # A blob rotated about the image centre lands where the rotation puts it (the filter's
    # delay is compensated: ignoring it moves the blob by 0.2-0.6 px).
    blob, xx, yy = _gauss_blob(32, 5.3, -3.1)
    for deg in (37, 90, 180):
        th = math.radians(deg)
        out = affine_warp(blob, _rotate(torch.tensor([-th], dtype=torch.float64)))[0, 0]  # G_inv = R(-th)
        got = (float((out * xx).sum() / out.sum()), float((out * yy).sum() / out.sum()))
        want = (math.cos(th) * 5.3 + math.sin(th) * 3.1, math.sin(th) * 5.3 - math.cos(th) * 3.1)
        assert math.dist(got, want) < 0.03, (deg, got, want)
    # The native upfirdn2d and its reference agree inside the warp.
    G = _rotate(torch.tensor([0.3, -1.0], dtype=torch.float64))
    z = torch.randn(2, 1, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(affine_warp(z, G, impl="native"), affine_warp(z, G, impl="ref"))
    with pytest.raises(ValueError, match="G_inv"):
        affine_warp(z, G[:1])


def _xray(path, crop: int | None = None) -> torch.Tensor:
    """A real X-ray as [1, 1, H, W] float in [-1, 1] (optionally its centre crop)."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 127.5 - 1
    if crop:
        h, w = img.shape
        img = img[(h - crop) // 2:(h - crop) // 2 + crop, (w - crop) // 2:(w - crop) // 2 + crop]
    return torch.from_numpy(np.ascontiguousarray(img))[None, None]


def _high_band(x: torch.Tensor, z: torch.Tensor) -> tuple[float, float]:
    """(energy kept, error energy) of ``z`` relative to ``x`` above half Nyquist (|f| > 0.25 cycles/px),
    both as fractions of ``x``'s energy there; Hann-windowed so the image border adds nothing."""
    H, W = x.shape[-2:]
    win = torch.hann_window(H, periodic=False, dtype=torch.float64)[:, None] * \
        torch.hann_window(W, periodic=False, dtype=torch.float64)[None, :]
    mean = x.double().mean()
    X = torch.fft.fft2((x[0, 0].double() - mean) * win)
    Z = torch.fft.fft2((z[0, 0].double() - mean) * win)
    f = torch.sqrt(torch.fft.fftfreq(H, dtype=torch.float64)[:, None] ** 2 +
                   torch.fft.fftfreq(W, dtype=torch.float64)[None, :] ** 2)
    high = f > 0.25
    e = float((X.abs() ** 2)[high].sum())
    return float((Z.abs() ** 2)[high].sum()) / e, float(((Z - X).abs() ** 2)[high].sum()) / e


def test_rotate_and_back_keeps_high_frequencies_better_than_bilinear(data_cxr_root):
    """Real X-rays rotated by 30 degrees and back: the sym6 path keeps far more detail above half Nyquist."""
    import math

    from hpcgan.gan.augment import _rotate, affine_warp

    hannover = sorted((data_cxr_root / "hannover" / "png").glob("*.png"))[0]
    images = {"kaggle224 COVID-1": _xray(data_cxr_root / "kaggle224" / "COVID" / "COVID-1.png"),
              f"hannover {hannover.stem} (224 px centre)": _xray(hannover, crop=224)}
    th = torch.tensor([math.radians(30)])
    for name, x in images.items():
        res = {}
        for aa in (False, True):
            z = affine_warp(affine_warp(x, _rotate(th), antialias=aa), _rotate(-th), antialias=aa)
            res[aa] = _high_band(x, z)
        print(f"{name}: energy above half Nyquist kept {res[False][0]:.3f} (bilinear 1x) -> {res[True][0]:.3f} "
              f"(sym6 2x); error there {res[False][1]:.3f} -> {res[True][1]:.3f}")
        assert res[True][0] > 1.5 * res[False][0]
        assert res[True][1] < 0.8 * res[False][1]
        assert res[True][0] < 1.0  # no invented detail
