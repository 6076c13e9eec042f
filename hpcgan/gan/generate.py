"""Synthetic X-rays from a snapshot, written as shards like ``hpcgan preprocess`` (``hpcgan generate``).

``generate(GenerateConfig(network=..., out=..., n=...))`` loads a snapshot
(:mod:`hpcgan.gan.snapshot`), draws for every requested class one image per
seed (latent ``z = RandomState(seed).randn(z_dim)``, as StyleGAN2-ADA; noise
inputs constant) from G_ema, and writes ``OUT/train/shard-NNNNN.h5`` with the
data module's writer (:func:`hpcgan.data.shards.write_shard`): uint8 images
``(N, 1, R, R)``, labels in the training data's label order, ``source``
``synthetic-<class>-seed<seed>``, the full image as ``mask_bbox`` and
``FLAG_SYNTHETIC`` in ``flags``. ``OUT/manifest.json`` has the format of a
preprocessing output (``hpcgan data info|verify`` and ``ShardDataset`` read it)
plus a ``generator`` entry: snapshot path and sha256, architecture, kimg,
seeds, classes and truncation. ``--png`` also writes ``OUT/png/<class>/seedNNNNNN.png``
and ``OUT/grid.png``. The resolved settings go to ``OUT/config.yaml``.

Classes: a conditional network makes every class it was trained on (default) or
those named; an unconditional network trained on one class makes that class;
an unconditional network trained on several classes has no label to give and is
refused (train it with ``--cond`` or on a single class).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hpcgan.config import load as load_config
from hpcgan.config import csv_list, progress_setting, setting
from hpcgan.data.shards import COMPRESSIONS
from hpcgan.dist import DEVICES, select_device
from hpcgan.data.imagegrid import class_rows, image_grid, write_png
from hpcgan.config import write_resolved
from hpcgan.errors import HpcganError
from hpcgan.gan.snapshot import GENERATORS
from hpcgan.ops._native import IMPLS

__all__ = ["GenerateConfig", "generate", "generate_main", "parse_seeds"]


@dataclass
class GenerateConfig:
    """Settings of ``hpcgan generate`` (each field is a CLI flag of the same name; classes is ``--class``)."""

    network: str = setting("", required=True, help="snapshot file (snapshot-*.pt) or a run directory (newest)")
    out: str = setting("", required=True, help="output folder (manifest.json, train/shard-*.h5, png/)")
    n: int | None = setting(None, type=int, help="images per class (seeds 0..N-1 unless --seeds)")
    classes: list | None = setting(None, flag="--class", type=csv_list, default_text="every class the network makes",
                                   help="comma-separated class names or labels to generate")
    trunc: float = setting(1.0, default_text="1 = none", help="truncation psi (StyleGAN2)")
    seeds: str | list | None = setting(None, help="seeds, e.g. 0-99 or 1,5,9 (one image per seed and class)")
    png: bool = setting(False, const=True, help="also write OUT/png/<class>/seedNNNNNN.png and OUT/grid.png")
    batch: int = setting(32, help="images per forward pass")
    which: str = setting("G_ema", choices=GENERATORS, help="generator of the snapshot")
    impl: str = setting("auto", choices=IMPLS, help="op implementation")
    device: str = setting("auto", choices=DEVICES, help="auto = CUDA if present")
    shard_size: int = setting(1024, help="images per shard")
    compression: str = setting("lzf", choices=COMPRESSIONS, help="HDF5 compression")
    progress: str | bool = progress_setting()  # true/false (older configs) = auto/off


def parse_seeds(seeds) -> list[int]:
    """``"A-B"`` (inclusive), ``"1,5,7-9"`` or a list of ints -> a list of ints."""
    if isinstance(seeds, (list, tuple)):
        return [int(s) for s in seeds]
    out: list[int] = []
    for part in str(seeds).split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        try:
            if m:
                a, b = int(m.group(1)), int(m.group(2))
                if b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise HpcganError(f"--seeds: cannot read {part!r}; use A-B, a comma list, or both (0-9,20)") from None
    if not out:
        raise HpcganError(f"--seeds {seeds!r} names no seed")
    return out


def _resolve_classes(snap: dict, wanted) -> list[tuple[str, int, int | None]]:
    """[(class name, label in the data's order, index of the one-hot c or None)]."""
    names = snap["data"]["class_names"]
    trained = snap["data"]["train_classes"]
    c_dim = snap["G_kwargs"].get("c_dim", 0)
    if wanted is None:
        wanted = trained if c_dim else None
    if c_dim == 0:
        if len(trained) != 1:
            raise HpcganError(f"this generator is unconditional and was trained on the classes {trained} together: its "
                              "images have no class. Train with --cond, or on one class (--classes NAME)")
        if wanted is not None and [_name(w, names) for w in wanted] != trained:
            raise HpcganError(f"this unconditional generator makes class {trained[0]} only; asked for {wanted}")
        return [(trained[0], names.index(trained[0]), None)]
    out = []
    for w in wanted:
        name = _name(w, names)
        if name not in trained:
            raise HpcganError(f"class {name!r} was not trained; this generator makes {trained}")
        out.append((name, names.index(name), trained.index(name)))
    return out


def _name(w, names: list[str]) -> str:
    if isinstance(w, int) or (isinstance(w, str) and w.isdigit()):
        i = int(w)
        if not 0 <= i < len(names):
            raise HpcganError(f"class label {i} is outside 0..{len(names) - 1} ({names})")
        return names[i]
    if w not in names:
        raise HpcganError(f"unknown class {w!r}; the training data has {names}")
    return w


def generate(cfg: GenerateConfig) -> dict:
    """Write the synthetic shards (and PNGs); returns the manifest."""
    from hpcgan.data.shards import MANIFEST, atomic_write_text
    from hpcgan.gan.snapshot import build_generator, load_snapshot, resolve_resume

    t0 = time.perf_counter()
    # -- settings, the snapshot, seeds and classes (every check before anything is written)
    _check_settings(cfg)
    path = resolve_resume(cfg.network, None)
    snap = load_snapshot(path)
    seeds = _plan_seeds(cfg)
    if cfg.trunc != 1 and snap["arch"] != "stylegan2":
        raise HpcganError(f"--trunc needs a StyleGAN2 network; this one is {snap['arch']}")
    classes = _resolve_classes(snap, cfg.classes)
    # -- the network, and its images: for every class one per seed
    dev = select_device(cfg.device)
    G = build_generator(snap, which=cfg.which, impl=cfg.impl, device=dev)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    images, labels, sources = _generate_images(G, classes, seeds, cfg, dev)
    # -- shards, PNGs and grid, manifest
    shards = _write_shards(out, images, labels, sources, snap["data"]["resolution"], path, cfg)
    if cfg.png:
        _write_pngs(out, images, labels, sources, snap["data"]["class_names"], classes, len(seeds))
    manifest = _manifest(cfg, path, snap, classes, seeds, labels, shards, t0)
    write_resolved(cfg, out)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def _check_settings(cfg: GenerateConfig) -> None:
    if not cfg.network or not cfg.out:
        raise HpcganError("--network and --out are required")
    if cfg.which not in GENERATORS:
        raise HpcganError(f"--which must be G or G_ema, got {cfg.which!r}")
    if cfg.batch < 1 or cfg.shard_size < 1:
        raise HpcganError("--batch and --shard-size must be >= 1")


def _plan_seeds(cfg: GenerateConfig) -> list[int]:
    """``--seeds`` (agreeing with ``--n`` when both are given), else seeds ``0 .. n-1``."""
    if cfg.seeds is not None:
        seeds = parse_seeds(cfg.seeds)
        if cfg.n is not None and cfg.n != len(seeds):
            raise HpcganError(f"--n {cfg.n} but --seeds names {len(seeds)} seeds; give one of them (or agreeing ones)")
        return seeds
    if cfg.n is None or cfg.n < 1:
        raise HpcganError("give --n N (images per class, seeds 0..N-1) or --seeds")
    return list(range(cfg.n))


def _generate_images(G: torch.nn.Module, classes: list[tuple[str, int, int | None]], seeds: list[int],
                     cfg: GenerateConfig, dev: torch.device) -> tuple[np.ndarray, list[int], list[str]]:
    """uint8 images ``[len(classes) * len(seeds), 1, R, R]`` (class by class, seeds in order), their labels
    and source names, made in batches of ``cfg.batch``."""
    from hpcgan.gan.train import to_uint8
    from hpcgan.progress import Progress

    images, labels, sources = [], [], []
    bar = Progress(total=len(classes) * len(seeds), desc="generate", unit="img", mode=cfg.progress)
    for name, label, ci in classes:
        for i in range(0, len(seeds), cfg.batch):
            part = seeds[i:i + cfg.batch]
            z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in part])).float().to(dev)  # [n, z_dim]
            c = None
            if ci is not None:
                c = torch.nn.functional.one_hot(torch.full((len(part),), ci), G.c_dim).float().to(dev)  # [n, c_dim]
            with torch.no_grad():
                kw = {"truncation_psi": cfg.trunc} if cfg.trunc != 1 else {}
                img = G(z, c, noise_mode="const", **kw)  # [n, 1, R, R] in [-1, 1]
            images.append(to_uint8(img))
            labels += [label] * len(part)
            sources += [f"synthetic-{name}-seed{s:06d}" for s in part]
            bar.update(len(part))
    bar.close()
    return np.concatenate(images), labels, sources  # [N, 1, R, R] uint8


def _write_shards(out: Path, images: np.ndarray, labels: list[int], sources: list[str], R: int, snapshot: Path,
                  cfg: GenerateConfig) -> list[dict]:
    """``OUT/train/shard-NNNNN.h5`` of ``cfg.shard_size`` images each (older shards removed); their manifest entries."""
    from hpcgan.data.shards import write_shard
    from hpcgan.data.sources import FLAG_SYNTHETIC

    n = len(images)
    for old in (out / "train").glob("shard-*.h5") if (out / "train").is_dir() else []:
        old.unlink()
    shards = []
    for k, lo in enumerate(range(0, n, cfg.shard_size)):
        hi = min(n, lo + cfg.shard_size)
        rel = f"train/shard-{k:05d}.h5"
        digest = write_shard(out / rel, images[lo:hi], np.asarray(labels[lo:hi]), sources[lo:hi],
                             np.tile(np.array([0, 0, R, R], np.int32), (hi - lo, 1)),  # [n, 4] mask_bbox: the full image
                             np.full(hi - lo, FLAG_SYNTHETIC, np.uint32), compression=cfg.compression,
                             attrs={"synthetic": True, "snapshot": str(snapshot.resolve())})
        shards.append({"path": rel, "split": "train", "n": hi - lo, "sha256": digest})
    return shards


def _write_pngs(out: Path, images: np.ndarray, labels: list[int], sources: list[str], names: list[str],
                classes: list[tuple[str, int, int | None]], per_class: int) -> None:
    """``OUT/png/<class>/seedNNNNNN.png`` per image and ``OUT/grid.png``."""
    for name, _, _ in classes:
        (out / "png" / name).mkdir(parents=True, exist_ok=True)
    for img, src, lab in zip(images, sources, labels):
        write_png(out / "png" / names[lab] / f"{src.rsplit('-', 1)[1]}.png", img[0])  # [R, R]
    write_png(out / "grid.png", _class_grid(images, len(classes), per_class))


def _manifest(cfg: GenerateConfig, path: Path, snap: dict, classes: list[tuple[str, int, int | None]], seeds: list[int],
              labels: list[int], shards: list[dict], t0: float) -> dict:
    """A preprocessing output's manifest (``hpcgan data info|verify`` and ``ShardDataset`` read it), plus the
    ``generator`` entry: snapshot path and sha256, architecture, kimg, seeds, classes, truncation.
    ``t0``: the run's start (``time.perf_counter()``) for the summary's seconds."""
    from hpcgan.data.shards import FORMAT_VERSION, sha256_file
    from hpcgan.data.sources import FLAG_NAMES

    try:
        from hpcgan import __version__ as version
    except ImportError:  # pragma: no cover
        version = "unknown"
    names = snap["data"]["class_names"]
    n = len(labels)
    counts = {"train": {name: 0 for name in names}, "val": {name: 0 for name in names},
              "test": {name: 0 for name in names}}
    for lab in labels:
        counts["train"][names[lab]] += 1
    settings = asdict(cfg)
    settings.update(resolution=snap["data"]["resolution"], compression=cfg.compression, shard_size=cfg.shard_size)
    return {
        "format_version": FORMAT_VERSION,
        "hpcgan_version": version,
        "kind": "synthetic",
        "source_root": str(path.resolve()),
        "layout": "synthetic",
        "settings": settings,
        "class_names": names,
        "labels": {nm: i for i, nm in enumerate(names)},
        "counts": counts,
        "shards": shards,
        "excluded": [],
        "failed": [],
        "flag_bits": {str(k): v for k, v in FLAG_NAMES.items()},
        "generator": {
            "snapshot": str(path.resolve()),
            "snapshot_sha256": sha256_file(path),
            "arch": snap["arch"],
            "which": cfg.which,
            "kimg": snap["counters"]["cur_nimg"] / 1000,
            "training_data": snap["data"].get("path"),
            "classes": [name for name, _, _ in classes],
            "seeds": seeds,
            "trunc": cfg.trunc,
            "noise_mode": "const",
            "latent": "numpy RandomState(seed).randn(z_dim)",
        },
        "summary": {"inputs": n, "written": n, "excluded": 0, "failed": 0, "shards_written": len(shards),
                    "shards_resumed": 0, "ranks": 1, "seconds": round(time.perf_counter() - t0, 3)},
    }


def _class_grid(images: np.ndarray, n_classes: int, per_class: int, side: int = 8) -> np.ndarray:
    """grid.png: up to 8 x 8 cells, one class per row (a block of rows per class), first seeds first."""
    cols = min(per_class, side)
    per_row = class_rows(n_classes, side)
    rows_per_class = per_row.count(0)
    cells = []
    for j in range(n_classes):  # the images of class j are images[j * per_class: (j + 1) * per_class]
        block = images[j * per_class: (j + 1) * per_class][: rows_per_class * cols]  # [<= rows_per_class * cols, 1, R, R]
        pad = np.zeros((rows_per_class * cols - len(block), *images.shape[1:]), np.uint8)
        cells.append(np.concatenate([block, pad]))
    return image_grid(np.concatenate(cells), rows_per_class * n_classes, cols)


def generate_and_summarise(cfg: GenerateConfig) -> dict:
    """``generate(cfg)``, a line saying what was written; returns {"out", "written", "classes", "snapshot", "kimg"}."""
    m = generate(cfg)
    g = m["generator"]
    print(f"{cfg.out}: {m['summary']['written']} images of {', '.join(g['classes'])} "
          f"({len(g['seeds'])} seeds each, trunc {g['trunc']}) from {g['snapshot']} at kimg {g['kimg']:.3f}")
    return {"out": cfg.out, "written": m["summary"]["written"], "classes": list(g["classes"]),
            "snapshot": g["snapshot"], "kimg": g["kimg"]}


def generate_main(overrides: dict, config_file: str | None = None) -> int:
    """CLI entry of ``hpcgan generate``: config from flags, generate, say what was written."""
    generate_and_summarise(load_config(GenerateConfig, config_file, overrides))
    return 0
