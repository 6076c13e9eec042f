"""Helpers of the classifier tests: shard folders written with the data stage's own writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hpcgan.atomic import atomic_write_text
from hpcgan.data.shards import FORMAT_VERSION, MANIFEST, write_shard
from hpcgan.data.sources import FLAG_SYNTHETIC

from data.helpers import link_subset  # noqa: F401  (re-exported for the classify tests)
from gan.helpers import cli as _cli


def write_shard_folder(out, class_names: list[str], splits: dict, synthetic: bool = False) -> Path:
    """A shard folder in the preprocess format: ``splits`` maps split -> (images (N, 1, R, R) uint8, labels (N,))."""
    out = Path(out)
    shards, counts, res = [], {}, None
    for split in ("train", "val", "test"):
        counts[split] = {c: 0 for c in class_names}
        if split not in splits:
            continue
        images, labels = splits[split]
        res = images.shape[-1]
        n = len(labels)
        rel = f"{split}/shard-00000.h5"
        digest = write_shard(out / rel, images, np.asarray(labels), [f"{split}-{i}" for i in range(n)],
                             np.tile(np.array([0, 0, res, res], np.int32), (n, 1)),
                             np.full(n, FLAG_SYNTHETIC if synthetic else 0, np.uint32), compression="none")
        shards.append({"path": rel, "split": split, "n": n, "sha256": digest})
        for lab in labels:
            counts[split][class_names[int(lab)]] += 1
    manifest = {"format_version": FORMAT_VERSION, "kind": "synthetic" if synthetic else "test", "source_root": "",
                "layout": "test", "settings": {"resolution": res, "compression": "none"},
                "class_names": list(class_names), "labels": {c: i for i, c in enumerate(class_names)},
                "counts": counts, "shards": shards, "excluded": [], "failed": [],
                "summary": {"inputs": 0, "written": sum(s["n"] for s in shards), "excluded": 0, "failed": 0}}
    atomic_write_text(out / MANIFEST, json.dumps(manifest))
    return out


def blob_images(labels, res: int, seed: int) -> np.ndarray:
    """(N, 1, res, res) uint8 noise images whose brightness pattern depends on the label (learnable classes)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    yy, xx = np.mgrid[0:res, 0:res] / res
    out = np.empty((len(labels), 1, res, res), np.uint8)
    for i, lab in enumerate(labels):
        cy, cx = [(0.3, 0.3), (0.3, 0.7), (0.7, 0.3), (0.7, 0.7)][int(lab) % 4]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        img = 60 + 150 * blob + rng.normal(0, 20, (res, res))
        out[i, 0] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def blob_folder(out, class_names: list[str], per_class: dict[str, int], res: int = 32, seed: int = 0,
                synthetic: bool = False) -> Path:
    """A shard folder of :func:`blob_images` with ``per_class[split]`` images of every class in each split."""
    splits = {}
    for k, (split, n) in enumerate(per_class.items()):
        labels = np.repeat(np.arange(len(class_names)), n)
        splits[split] = (blob_images(labels, res, seed * 10 + k), labels)
    return write_shard_folder(out, class_names, splits, synthetic=synthetic)


def tiny_config(data, outdir, **kw):
    from hpcgan.classify.config import ClassifyConfig

    base = dict(data=str(data), outdir=str(outdir), model="small_cnn", epochs=2, batch=8, image_size=32,
                progress=False, seed=3)
    base.update(kw)
    return ClassifyConfig(**base)


def strip_volatile(metrics: dict) -> dict:
    """test_metrics without fields that name where it ran (none today; kept for clarity)."""
    return {k: v for k, v in metrics.items() if k not in ("pretrained_weights",)}


def cli(*args, timeout: float = 300, **kwargs):
    """``tests/gan/helpers.py::cli`` (``python -m hpcgan.cli ARGS``, optionally under mpirun) with a 300 s default."""
    return _cli(*args, timeout=timeout, **kwargs)
