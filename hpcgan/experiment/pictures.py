"""The report's pictures: real and generated images per class, and the memorisation check's closest pairs.

Images come from the shards themselves (the real training split of the experiment's
``data``, the ``gan_data`` folders), tiled with :mod:`hpcgan.data.imagegrid`
(nearest-neighbour upscaled to at least 96 px per image) and returned as PNG bytes
for report.html to embed.
"""

from __future__ import annotations

import numpy as np

from hpcgan.data.imagegrid import image_grid, png_bytes, upscale_factor

__all__ = ["class_grids", "closest_pairs", "GRID_SIDE"]

GRID_SIDE = 8  # 8 x 8 images per grid


def _class_images(folder: str, split: str | None, name: str, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` uint8 images ``[k, R, R]`` of class ``name`` in ``folder`` (one split, or every split)."""
    from hpcgan.data.dataset import ShardDataset
    from hpcgan.data.shards import read_manifest

    splits = [split] if split else [s for s, per in read_manifest(folder)["counts"].items() if per.get(name)]
    out = []
    for s in splits:
        ds = ShardDataset(folder, s, raw=True)
        if name not in ds.class_names:
            continue
        idx = np.flatnonzero(np.asarray(ds.labels) == ds.class_names.index(name))
        if len(idx) > n:  # a seeded pick, in file order
            idx = np.sort(np.random.default_rng(seed).choice(idx, n, replace=False))
        out += [ds[int(i)][0].numpy()[0] for i in idx]
        if len(out) >= n:
            break
    return np.stack(out[:n]) if out else np.zeros((0, 1, 1), np.uint8)


def _grid(images: np.ndarray) -> dict | None:
    if not len(images):
        return None
    side = GRID_SIDE if len(images) > GRID_SIDE * (GRID_SIDE - 1) else max(1, min(GRID_SIDE, len(images)))
    rows = -(-len(images) // side)
    scale = upscale_factor(images.shape[-1])
    img = image_grid(images, rows, side, scale=scale)
    return {"png": png_bytes(img), "n": int(len(images)), "rows": rows, "cols": side,
            "resolution": int(images.shape[-1]), "cell_px": int(images.shape[-1] * scale),
            "width": int(img.shape[1]), "height": int(img.shape[0])}


def class_grids(data: str, gan_data: list | None, classes: list[str]) -> list[dict]:
    """Per class: ``{"class", "real": grid, "generated": {folder: grid}}`` (grid: PNG bytes and its sizes).

    ``real``: up to 64 images of the class from ``data``'s train split (a seeded pick);
    ``generated``: the first 64 of each gan_data folder (every split), None when it has none.
    """
    n = GRID_SIDE * GRID_SIDE
    out = []
    for name in classes:
        gen = {g: _grid(_class_images(g, None, name, n)) for g in gan_data or []}
        out.append({"class": name, "real": _grid(_class_images(data, "train", name, n)), "generated": gen})
    return out


def closest_pairs(data: str, g: str, num: int | None = None, k: int = 8, split_train: str = "train") -> dict:
    """The ``k`` generated images of ``g`` closest (RMSE) to a real training image of their class, each with it.

    As the memorisation check of ``compare_shards``: each generated image of class c
    against the whole training split of c (never capped); ``num`` caps the generated
    images per class (None: all). Returns ``{"pairs": [{"png", "distance", "class",
    "generated", "train"}], "n_generated", "n_train", "median_distance"}``; each pair's
    PNG is the generated image (left) beside its nearest training image (right).
    """
    from hpcgan.data.shards import read_manifest
    from hpcgan.metrics.compare import load_images
    from hpcgan.metrics.similarity import nearest_distances

    have = {c for per in read_manifest(g)["counts"].values() for c, n in per.items() if n}
    real = read_manifest(data)["counts"].get(split_train, {})
    found, dists, n_fake, n_train = [], [], 0, 0
    for c in [c for c in real if real[c] and c in have]:
        fake = load_images(g, None, None, classes=[c])[0]
        fake = fake[: num] if num else fake
        pool = load_images(data, [split_train], None, classes=[c])[0]
        idx, dist = nearest_distances(fake, pool, "rmse")
        n_fake, n_train = n_fake + len(fake), n_train + len(pool)
        dists.append(dist.numpy())
        found += [(float(dist[i]), c, i, fake[i], int(idx[i]), pool[int(idx[i])]) for i in range(len(fake))]
    found.sort(key=lambda f: f[0])
    pairs = []
    for d, c, i, img, j, nearest in found[:k]:
        cells = np.stack([img.numpy()[0], nearest.numpy()[0]])  # [2, R, R]: generated, nearest real
        pairs.append({"png": png_bytes(image_grid(cells, 1, 2)), "distance": d, "class": c, "generated": int(i),
                      "train": j})
    all_d = np.concatenate(dists) if dists else np.zeros(0)
    return {"pairs": pairs, "n_generated": int(n_fake), "n_train": int(n_train),
            "median_distance": float(np.median(all_d)) if len(all_d) else None}
