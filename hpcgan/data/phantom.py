"""Procedural chest-X-ray-like phantoms with lung masks, written in the Kaggle layout.

``generate_phantoms(out, n)`` writes ``OUT/<Class>/images/<Class>-<i>.png``
(299x299 8-bit grayscale, like the Kaggle database) and ``OUT/<Class>/masks/<Class>-<i>.png``
(256x256, 0/255, a different size on purpose, as in the database). Classes:

``Clear``    body, mediastinum, spine, ribs and two dark lung fields with fine texture
``Opacity``  the same anatomy with patchy, mostly peripheral and lower-zone opacities

With ``annotation_fraction`` > 0, that fraction of images carries a burnt-in side
marker (a letter on a grey box, drawn with a step edge near the border) — cases for
the annotation detector. Image ``i`` depends only on (seed, class, i).
They are for demos and fast tests; real X-rays stay the judge.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from hpcgan.atomic import atomic_path
from hpcgan.errors import HpcganError

PHANTOM_CLASSES = ("Clear", "Opacity")
_GLYPHS = {  # 5x3 bitmaps of marker letters
    "L": ["100", "100", "100", "100", "111"],
    "R": ["110", "101", "110", "101", "101"],
}


def _lung_masks(size: int, rng) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cy = 0.5 + rng.uniform(-0.03, 0.03)
    sep = 0.2 + rng.uniform(-0.02, 0.02)
    ry, rx = 0.3 + rng.uniform(-0.03, 0.03), 0.14 + rng.uniform(-0.02, 0.02)
    lungs = []
    for side in (-1, 1):
        cx = 0.5 + side * sep
        tilt = side * 0.15
        d = ((yy - cy) / ry) ** 2 + ((xx - cx + tilt * (yy - cy)) / rx) ** 2
        lung = d < 1.0
        lung &= ~((yy > cy + 0.12) & (side * (xx - 0.5) < 0.1))  # heart notch
        lungs.append(lung)
    return lungs[0], lungs[1]


def phantom(i: int, cls: int, seed: int = 0, size: int = 299, annotate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One phantom (uint8 image, bool lung mask), both ``size`` x ``size``."""
    rng = np.random.default_rng([seed, cls, i])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    body = ((xx - 0.5) / 0.46) ** 2 + ((yy - 0.55) / 0.6) ** 2 < 1.0
    img = np.where(body, 0.72, 0.08).astype(np.float32)
    left, right = _lung_masks(size, rng)
    lungs = left | right
    img = np.where(lungs, 0.25, img)
    # ribs: bright curved bands across the lungs
    period = 0.075 + rng.uniform(-0.008, 0.008)
    phase = rng.uniform(0, period)
    ribs = 0.5 + 0.5 * np.cos(2 * np.pi * (yy + 0.25 * (xx - 0.5) ** 2 * 4 - phase) / period)
    img = img + np.where(lungs, 0.16 * ribs**4, 0.05 * ribs**4)
    # spine and mediastinum
    img = img + 0.18 * np.exp(-(((xx - 0.5) / 0.05) ** 2)) * (yy > 0.1)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)).astype(np.float32), 2.0)
    img = img + np.where(lungs, 0.05 * texture, 0.02 * texture)
    if cls == 1:  # patchy peripheral opacities
        for _ in range(int(rng.integers(3, 7))):
            lung = left if rng.random() < 0.5 else right
            ys, xs = np.nonzero(lung)
            k = int(rng.integers(len(ys)))
            y, x = ys[k] / size, xs[k] / size
            x = 0.5 + (x - 0.5) * 1.15  # push towards the periphery
            r = rng.uniform(0.04, 0.09)
            blob = np.exp(-(((yy - y) ** 2 + (xx - x) ** 2) / (2 * r * r)))
            img = img + 0.28 * blob * lungs
    img = ndimage.gaussian_filter(img, 1.0) + rng.normal(0, 0.015, img.shape).astype(np.float32)
    out = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    if annotate:
        _burn_marker(out, rng, lungs)
    return out, lungs


def _burn_marker(img: np.ndarray, rng, lungs: np.ndarray) -> None:
    """Draw a letter marker (grey box, near-white glyph, step edges) beside the lungs."""
    size = img.shape[0]
    cell = max(2, size // 100)
    glyph = _GLYPHS["L" if rng.random() < 0.7 else "R"]
    gh, gw = 5 * cell, 3 * cell
    pad = cell
    ys, xs = np.nonzero(lungs)
    y = int(rng.integers(int(ys.min()), int(ys.max()) - gh - 2 * pad))
    right = rng.random() < 0.5
    x = int(xs.max()) - gw - 2 * pad - cell if right else int(xs.min()) + cell
    img[y : y + gh + 2 * pad, x : x + gw + 2 * pad] = int(rng.integers(60, 110))
    val = int(rng.integers(215, 256))
    for r, row in enumerate(glyph):
        for col, ch in enumerate(row):
            if ch == "1":
                y0, x0 = y + pad + r * cell, x + pad + col * cell
                img[y0 : y0 + cell, x0 : x0 + cell] = val


def generate_phantoms(
    out: str | os.PathLike,
    n: int,
    classes: tuple[str, ...] = PHANTOM_CLASSES,
    seed: int = 0,
    size: int = 299,
    mask_size: int = 256,
    annotation_fraction: float = 0.0,
) -> dict:
    """Write ``n`` phantoms per class in the Kaggle layout; returns {class: count, "annotated": [stems]}."""
    if n < 1:
        raise HpcganError(f"--n must be >= 1, got {n}")
    if not 0.0 <= annotation_fraction <= 1.0:
        raise HpcganError(f"--annotations must be a fraction in [0, 1], got {annotation_fraction}")
    if len(classes) < 2 or len(classes) > 2:
        raise HpcganError(f"phantoms have exactly 2 classes (clear, opacity); got {list(classes)}")
    out = Path(out)
    report: dict = {"annotated": []}
    for c, name in enumerate(classes):
        (out / name / "images").mkdir(parents=True, exist_ok=True)
        (out / name / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            arng = np.random.default_rng([seed, c, i, 7])
            annotate = arng.random() < annotation_fraction
            img, mask = phantom(i, c, seed, size, annotate)
            stem = f"{name}-{i}"
            m = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).resize((mask_size, mask_size), Image.NEAREST)
            _save_atomic(Image.fromarray(img), out / name / "images" / f"{stem}.png")
            _save_atomic(m, out / name / "masks" / f"{stem}.png")
            if annotate:
                report["annotated"].append(stem)
        report[name] = n
    return report


def _save_atomic(im: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        im.save(tmp)


def phantoms_and_summarise(out: str | os.PathLike, n: int, **kwargs) -> dict:
    """``generate_phantoms(out, n, **kwargs)`` and a line saying what was written; returns
    {"out", "n", "annotated" (how many carry a marker)}."""
    report = generate_phantoms(out, n, **kwargs)
    print(f"{out}: {n} phantoms per class in the Kaggle layout, {len(report['annotated'])} with markers")
    return {"out": str(out), "n": n, "annotated": len(report["annotated"])}
