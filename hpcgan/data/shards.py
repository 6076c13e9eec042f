"""Sharded HDF5: writer, reader helpers, manifest, verify and info.

``OUT/manifest.json`` lists the settings, classes, counts, every shard (path,
split, image count, sha256) and every excluded or failed input with its reason.
``OUT/<split>/shard-NNNNN.h5`` holds at most ``shard_size`` images:

``images``     (N, 1, R, R) uint8, chunked one image per chunk, compressed (none|lzf|gzip)
``labels``     (N,) int64
``source``     (N,) utf-8 file stem
``mask_bbox``  (N, 4) int32 square crop box (y0, x0, y1, x1) in source pixel coordinates
``flags``      (N,) uint32 bit field (hpcgan.data.sources.FLAG_*)

Files are written under a temporary name and renamed when complete, so a killed
run never leaves a broken shard under a final name.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from hpcgan.atomic import atomic_path, atomic_write_text  # noqa: F401  (atomic_write_text: re-exported)
from hpcgan.errors import HpcganError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
COMPRESSIONS = ("none", "lzf", "gzip")


def sha256_file(path: str | os.PathLike, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def open_h5(path: str | os.PathLike) -> h5py.File:
    """Open a shard read-only with HDF5 file locking off (Lustre/GPFS clusters)."""
    return h5py.File(path, "r", locking=False)


def write_shard(
    path: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    sources: list[str],
    bboxes: np.ndarray,
    flags: np.ndarray,
    compression: str = "lzf",
    attrs: dict | None = None,
) -> str:
    """Write one shard atomically (temporary name, then os.replace); return its sha256."""
    if compression not in COMPRESSIONS:
        raise HpcganError(f"unknown compression {compression!r}; use one of {', '.join(COMPRESSIONS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(sources)
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if images.ndim == 3:
        images = images[:, None]  # [N, H, W] -> [N, 1, H, W]
    if images.shape[0] != n or images.ndim != 4:
        raise ValueError(f"images shape {images.shape} does not match {n} sources")
    res = images.shape[-1]
    kw = {} if compression == "none" else {"compression": compression}
    if compression == "gzip":
        kw["compression_opts"] = 4
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", locking=False, track_order=False) as f:
            f.create_dataset("images", data=images, chunks=(1, 1, res, res) if n else None, **kw)
            f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
            f.create_dataset("source", data=np.array(sources, dtype=object), dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("mask_bbox", data=np.asarray(bboxes, dtype=np.int32).reshape(n, 4))  # [N, 4]
            f.create_dataset("flags", data=np.asarray(flags, dtype=np.uint32))
            f.attrs["format_version"] = FORMAT_VERSION
            for k, v in (attrs or {}).items():
                f.attrs[k] = v if not isinstance(v, (dict, list)) else json.dumps(v)
        digest = sha256_file(tmp)
    return digest


def read_manifest(out: str | os.PathLike) -> dict:
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise HpcganError(
            f"{path} not found: {out} is not a finished preprocessing output "
            "(run `hpcgan preprocess` first, or re-run it to resume)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise HpcganError(f"cannot read {path}: {exc}; re-run `hpcgan preprocess` to rewrite it") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise HpcganError(
            f"{path} has format version {manifest.get('format_version')}, this hpcgan reads {FORMAT_VERSION}; "
            "re-run `hpcgan preprocess`"
        )
    return manifest


def verify(out: str | os.PathLike, checksums: bool = True) -> list[str]:
    """Re-check every shard of a preprocessing output; returns the list of problems (empty when good)."""
    out = Path(out)
    manifest = read_manifest(out)
    res = manifest["settings"]["resolution"]
    problems: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    names = manifest["class_names"]
    # each shard: present, its checksum, its datasets; count its images per class
    for sh in manifest["shards"]:
        p = out / sh["path"]
        if not p.is_file():
            problems.append(f"{sh['path']}: missing")
            continue
        if checksums:
            digest = sha256_file(p)
            if digest != sh["sha256"]:
                problems.append(f"{sh['path']}: sha256 mismatch (manifest {sh['sha256'][:12]}..., file {digest[:12]}...)")
                continue
        try:
            with open_h5(p) as f:
                _check_datasets(f, sh, res, names, counts.setdefault(sh["split"], {}), problems)
        except (OSError, KeyError, ValueError) as exc:
            problems.append(f"{sh['path']}: unreadable HDF5 ({exc})")
    # the images per split and class against the manifest's counts
    if not problems:
        for split, per in manifest["counts"].items():
            for cname, n in per.items():
                got = counts.get(split, {}).get(cname, 0)
                if got != n:
                    problems.append(f"split {split} class {cname}: manifest says {n} images, shards hold {got}")
    return problems


def _check_datasets(f: h5py.File, sh: dict, res: int, names: list[str], counts: dict[str, int],
                    problems: list[str]) -> None:
    """Append to ``problems`` those of shard ``sh``'s open file ``f`` (missing datasets, shapes, dtype, labels);
    count its images per class in ``counts``."""
    n = sh["n"]
    shapes = {
        "images": (n, 1, res, res),
        "labels": (n,),
        "source": (n,),
        "mask_bbox": (n, 4),
        "flags": (n,),
    }
    for k, shape in shapes.items():
        if k not in f:
            problems.append(f"{sh['path']}: dataset {k} missing")
        elif f[k].shape != shape:
            problems.append(f"{sh['path']}: {k} has shape {f[k].shape}, expected {shape}")
    if "images" in f and f["images"].dtype != np.uint8:
        problems.append(f"{sh['path']}: images dtype {f['images'].dtype}, expected uint8")
    if "labels" in f and f["labels"].shape == (n,):
        labs = f["labels"][:]
        if n and (labs.min() < 0 or labs.max() >= len(names)):
            problems.append(f"{sh['path']}: labels outside 0..{len(names) - 1}")
        for lab in labs:
            counts[names[int(lab)]] = counts.get(names[int(lab)], 0) + 1


def info(out: str | os.PathLike) -> str:
    """A readable summary of a preprocessing output: settings, counts per split and class, exclusions."""
    manifest = read_manifest(out)
    s = manifest["settings"]
    names = manifest["class_names"]
    lines = [
        f"{out}: {manifest['summary']['written']} images in {len(manifest['shards'])} shards, "
        f"resolution {s['resolution']}, compression {s['compression']}",
        f"source: {manifest['source_root']} (layout {manifest['layout']})",
        "classes: " + ", ".join(f"{i}={n}" for i, n in enumerate(names)),
        "",
        "| split | " + " | ".join(names) + " | total |",
        "| --- |" + " --- |" * (len(names) + 1),
    ]
    for split in ("train", "val", "test"):
        per = manifest["counts"].get(split, {})
        row = [per.get(n, 0) for n in names]
        lines.append(f"| {split} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    summ = manifest["summary"]
    lines.append("")
    lines.append(
        f"inputs: {summ['inputs']} = written {summ['written']} + excluded {summ['excluded']} + failed {summ['failed']}"
    )
    reasons: dict[str, int] = {}
    for e in manifest["excluded"] + manifest["failed"]:
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
    for r, n in sorted(reasons.items()):
        lines.append(f"  {r}: {n}")
    return "\n".join(lines)


def read_split(out: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """Every image of a split in manifest order: ``images``, ``labels``, ``source``, ``mask_bbox``, ``flags``."""
    out = Path(out)
    manifest = read_manifest(out)
    parts: dict[str, list] = {k: [] for k in ("images", "labels", "source", "mask_bbox", "flags")}
    for sh in manifest["shards"]:
        if sh["split"] != split:
            continue
        with open_h5(out / sh["path"]) as f:
            for k in parts:
                v = f[k][:]
                parts[k].append(v.astype(str) if k == "source" else v)
    res = manifest["settings"]["resolution"]
    empty = {"images": np.zeros((0, 1, res, res), np.uint8), "labels": np.zeros(0, np.int64),
             "source": np.zeros(0, str), "mask_bbox": np.zeros((0, 4), np.int32), "flags": np.zeros(0, np.uint32)}
    return {k: (np.concatenate(v) if v else empty[k]) for k, v in parts.items()}  # images [N, 1, R, R], others [N(, 4)]
