"""Image grids: many small grey images tiled into one PNG that a person can read.

Used for the training sample grids (``reals.png``, ``fakes-*.png``), the
generator's ``grid.png`` and the report's real-vs-generated pictures. Small
images are upscaled with nearest-neighbour (no blur: a 32 px image shows its
real pixels) so that every cell is at least :data:`MIN_CELL_PX` pixels wide;
cells are separated by a thin border.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from hpcgan.atomic import atomic_path

__all__ = ["MIN_CELL_PX", "upscale_factor", "class_rows", "image_grid", "png_bytes", "write_png"]

MIN_CELL_PX = 96  # smallest side of one cell on screen
PAD_PX = 2


def upscale_factor(resolution: int, min_px: int = MIN_CELL_PX) -> int:
    """The integer factor that makes a ``resolution`` px image at least ``min_px`` wide (1 if it already is)."""
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    return max(1, math.ceil(min_px / resolution))


def class_rows(n_classes: int, rows: int) -> list[int]:
    """Class index of each row of a conditional grid: ``rows`` split evenly into one block per class.

    Every class gets ``max(1, rows // n_classes)`` rows, so 2 classes in 8 rows give 4 rows each.
    """
    if n_classes < 1:
        raise ValueError(f"need at least one class, got {n_classes}")
    per = max(1, rows // n_classes)
    return [c for c in range(n_classes) for _ in range(per)]


def _as_cells(images: np.ndarray) -> np.ndarray:
    a = np.asarray(images)
    if a.ndim == 4:  # [N, 1, R, R] -> [N, R, R]
        if a.shape[1] != 1:
            raise ValueError(f"image_grid takes grey images [N, 1, H, W], got {a.shape}")
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"image_grid takes [N, H, W] or [N, 1, H, W] images, got {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"image_grid takes uint8 images, got {a.dtype}")
    return a


def image_grid(images: np.ndarray, rows: int, cols: int, scale: int | None = None, pad: int = PAD_PX,
               background: int = 0) -> np.ndarray:
    """uint8 images ``[N, H, W]`` (or ``[N, 1, H, W]``, N <= rows*cols) tiled row by row into one uint8 image.

    ``scale`` (default :func:`upscale_factor` of H) enlarges each image with nearest-neighbour;
    ``pad`` pixels of ``background`` separate the cells. Empty cells stay ``background``.
    """
    from PIL import Image

    cells = _as_cells(images)
    n, h, w = cells.shape
    if rows < 1 or cols < 1 or n > rows * cols:
        raise ValueError(f"{n} images do not fit a {rows} x {cols} grid")
    s = upscale_factor(h) if scale is None else int(scale)
    ch, cw = h * s, w * s
    canvas = Image.new("L", (cols * cw + (cols - 1) * pad, rows * ch + (rows - 1) * pad), background)
    for i in range(n):
        r, c = divmod(i, cols)
        cell = Image.fromarray(cells[i]).resize((cw, ch), Image.NEAREST)
        canvas.paste(cell, (c * (cw + pad), r * (ch + pad)))
    return np.asarray(canvas)


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 grey image ``[H, W]`` as PNG file bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 image as PNG atomically (temporary name, then rename); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(png_bytes(image))
    return path
