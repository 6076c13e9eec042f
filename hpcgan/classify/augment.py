"""Image transforms of the classifier: resize, the study's classical augmentation, normalisation.

Inputs are single images (1, R, R) in [0, 1] (``ShardDataset(value_range="unit")``).

Training with ``aug`` classic (or classic+gan), in this order:

1. resize to (S, S), S = image_size (bilinear, antialiased);
2. :func:`classic_augmentation`: the study's Keras ``ImageDataGenerator`` settings
   with torchvision transforms v2 — rotation uniform in +-ROTATION_DEG degrees,
   shifts uniform in +-WIDTH_SHIFT * S and +-HEIGHT_SHIFT * S pixels, x-shear
   uniform in +-SHEAR degrees (Keras gives shear in degrees), zoom factor uniform
   in [1 - ZOOM, 1 + ZOOM] (one factor for both axes: torchvision's ``scale``; Keras
   draws one per axis), no horizontal flip, then brightness x ~ U(BRIGHTNESS)
   multiplied into every pixel (clipped to [0, 1]). Pixels moved in from outside
   are filled with 0 (black, the X-ray background);
3. normalisation ``(x - GREY_MEAN) / GREY_STD``.

Evaluation (and aug none/gan): steps 1 and 3 only.

GREY_MEAN and GREY_STD are the means over the three channels of ImageNet's
per-channel mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225): with the
first convolution's RGB weights summed (:mod:`hpcgan.classify.models`), a grey
image normalised this way reaches the network as the same grey image
normalised per channel would, to within a few percent.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

ROTATION_DEG = 5.0
WIDTH_SHIFT = 0.05
HEIGHT_SHIFT = 0.05
SHEAR = 0.05
ZOOM = 0.1
BRIGHTNESS = (0.6, 1.4)
HORIZONTAL_FLIP = False
FILL = 0.0

GREY_MEAN = (0.485 + 0.456 + 0.406) / 3
GREY_STD = (0.229 + 0.224 + 0.225) / 3


def classic_augmentation() -> v2.Compose:
    """The study's classical augmentation (module docstring, step 2) on a (1, S, S) tensor in [0, 1]."""
    steps: list = [
        v2.RandomAffine(degrees=ROTATION_DEG, translate=(WIDTH_SHIFT, HEIGHT_SHIFT), scale=(1 - ZOOM, 1 + ZOOM),
                        shear=(-SHEAR, SHEAR), interpolation=v2.InterpolationMode.BILINEAR, fill=FILL),
        v2.ColorJitter(brightness=BRIGHTNESS),
    ]
    if HORIZONTAL_FLIP:  # pragma: no cover - the study did not flip (hearts are on the left)
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


def build_transform(image_size: int, classic: bool) -> v2.Compose:
    """Resize to image_size, the classical augmentation when ``classic``, grey ImageNet normalisation."""
    steps: list = [v2.Resize((image_size, image_size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)]
    if classic:
        steps.append(classic_augmentation())
    steps.append(v2.Normalize(mean=[GREY_MEAN], std=[GREY_STD]))
    return v2.Compose(steps)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of the normalisation: back to [0, 1] grey values."""
    return x * GREY_STD + GREY_MEAN
