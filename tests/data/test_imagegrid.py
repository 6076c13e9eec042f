"""hpcgan.data.imagegrid: tiled, nearest-neighbour upscaled grids; one block of rows per class."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hpcgan.data.imagegrid import class_rows, image_grid, png_bytes, upscale_factor, write_png


def test_upscale_factor_reaches_96_px():
    assert [upscale_factor(r) for r in (32, 48, 64, 96, 256)] == [3, 2, 2, 1, 1]
    assert all(r * upscale_factor(r) >= 96 for r in range(1, 200))


def test_class_rows_split_evenly():
    assert class_rows(2, 8) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert class_rows(4, 8) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert class_rows(3, 2) == [0, 1, 2]  # more classes than rows: still one row each


def test_grid_places_each_image_upscaled_nearest(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(1, 256, size=(5, 1, 8, 8), dtype=np.uint8)
    g = image_grid(imgs, 2, 3, scale=4, pad=2)
    assert g.shape == (2 * 32 + 2, 3 * 32 + 2 * 2) and g.dtype == np.uint8
    for i in range(5):
        r, c = divmod(i, 3)
        cell = g[r * 34: r * 34 + 32, c * 34: c * 34 + 32]
        assert (cell == np.kron(imgs[i, 0], np.ones((4, 4), np.uint8))).all(), i
    assert (g[34:, 68:] == 0).all()  # the sixth cell is empty
    assert (g[32:34] == 0).all()  # the border between rows
    path = write_png(tmp_path / "g.png", g)
    assert (np.asarray(Image.open(path)) == g).all() and png_bytes(g)[:4] == b"\x89PNG"


def test_grid_rejects_what_does_not_fit():
    with pytest.raises(ValueError, match="do not fit"):
        image_grid(np.zeros((7, 4, 4), np.uint8), 2, 3)
    with pytest.raises(ValueError, match="uint8"):
        image_grid(np.zeros((1, 4, 4), np.float32), 1, 1)
