"""The classical augmentation: the study's parameters, as set and as sampled."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from hpcgan.classify import augment


def _steps(t):
    return list(t.transforms)


def test_parameters_are_the_studys():
    assert augment.ROTATION_DEG == 5 and augment.WIDTH_SHIFT == augment.HEIGHT_SHIFT == 0.05
    assert augment.SHEAR == 0.05 and augment.ZOOM == 0.1 and augment.BRIGHTNESS == (0.6, 1.4)
    assert augment.HORIZONTAL_FLIP is False


def test_transform_carries_the_constants():
    affine, jitter = _steps(augment.classic_augmentation())
    assert isinstance(affine, v2.RandomAffine) and isinstance(jitter, v2.ColorJitter)
    assert list(affine.degrees) == [-augment.ROTATION_DEG, augment.ROTATION_DEG]
    assert tuple(affine.translate) == (augment.WIDTH_SHIFT, augment.HEIGHT_SHIFT)
    assert tuple(affine.scale) == (1 - augment.ZOOM, 1 + augment.ZOOM)
    assert list(affine.shear) == [-augment.SHEAR, augment.SHEAR]
    assert tuple(jitter.brightness) == augment.BRIGHTNESS
    assert jitter.contrast is None and jitter.saturation is None and jitter.hue is None
    full = augment.build_transform(40, classic=True)
    assert not any(isinstance(s, (v2.RandomHorizontalFlip, v2.RandomVerticalFlip)) for s in _steps(full))


def test_sampled_parameters_fill_their_ranges():
    torch.manual_seed(0)
    affine, jitter = _steps(augment.classic_augmentation())
    size = 40
    img = torch.zeros(1, size, size)
    ps = [affine.make_params([img]) for _ in range(400)]
    angles = torch.tensor([p["angle"] for p in ps])
    tx = torch.tensor([p["translate"][0] for p in ps], dtype=torch.float32)
    ty = torch.tensor([p["translate"][1] for p in ps], dtype=torch.float32)
    scale = torch.tensor([p["scale"] for p in ps])
    shear = torch.tensor([p["shear"][0] for p in ps])
    assert angles.abs().max() <= augment.ROTATION_DEG and angles.abs().max() > 0.9 * augment.ROTATION_DEG
    assert tx.abs().max() <= round(augment.WIDTH_SHIFT * size) and tx.abs().max() >= 1
    assert ty.abs().max() <= round(augment.HEIGHT_SHIFT * size) and ty.abs().max() >= 1
    assert scale.min() >= 1 - augment.ZOOM and scale.max() <= 1 + augment.ZOOM
    assert scale.max() - scale.min() > 1.6 * augment.ZOOM
    assert shear.abs().max() <= augment.SHEAR and shear.abs().max() > 0.8 * augment.SHEAR
    b = torch.tensor([jitter.make_params([img])["brightness_factor"] for _ in range(400)])
    assert b.min() >= augment.BRIGHTNESS[0] and b.max() <= augment.BRIGHTNESS[1] and b.max() - b.min() > 0.7


def test_brightness_scales_pixels_and_no_flip():
    torch.manual_seed(1)
    jitter = _steps(augment.classic_augmentation())[1]
    img = torch.full((1, 16, 16), 0.5)
    ratios = torch.stack([jitter(img).mean() / 0.5 for _ in range(200)])
    assert ratios.min() >= augment.BRIGHTNESS[0] - 1e-6 and ratios.max() <= augment.BRIGHTNESS[1] + 1e-6
    # an image with all its mass on the left stays mostly on the left after any augmentation
    left = torch.zeros(1, 32, 32)
    left[:, :, :10] = 1.0
    for _ in range(50):
        out = augment.classic_augmentation()(left)
        assert out[:, :, :16].sum() > 3 * out[:, :, 16:].sum()


def test_normalisation_is_grey_imagenet():
    t = augment.build_transform(8, classic=False)
    x = torch.rand(1, 8, 8)
    y = t(x)
    torch.testing.assert_close(y, (x - augment.GREY_MEAN) / augment.GREY_STD)
    torch.testing.assert_close(augment.denormalize(y), x)
    assert abs(augment.GREY_MEAN - 0.449) < 1e-3 and abs(augment.GREY_STD - 0.226) < 1e-3
