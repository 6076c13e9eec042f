"""The classifier's data: real shards per split, plus synthetic shards mixed into training.

:func:`build_datasets` returns the training, validation and test sets as
:class:`Relabelled` views whose labels are positions in ``class_names`` (the
real classes used, in the order of ``cfg.classes`` or of the manifest). Items
are ``(x, y)``: ``x`` (1, S, S) float32 after :func:`hpcgan.classify.augment.build_transform`,
``y`` an int64 label.

Synthetic mix (aug gan / classic+gan): the pool is every training image of the
``gan_data`` folders (``hpcgan generate`` output, any shard folder) whose class is
in ``gan_classes`` (default: every class those folders hold). ``gan_n`` images are
drawn from the pool without replacement with ``numpy.random.default_rng(seed)``;
each keeps its class NAME, mapped to the real label of the same name (a synthetic
class that is not among the real classes is an error). What was used is returned
as ``train_mix``: ``{real: {class: n}, synthetic: {class: n}, gan_data: [folders]}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from hpcgan.classify.augment import build_transform
from hpcgan.classify.config import ClassifyConfig, resolved_image_size
from hpcgan.data.dataset import ShardDataset
from hpcgan.data.shards import read_manifest
from hpcgan.errors import HpcganError


class Relabelled(Dataset):
    """Rows ``indices`` of a ShardDataset, labels mapped through ``label_map`` (old label -> new label).

    ``transform`` is applied to each image here. With ``seeded=True`` (random
    training transforms) image i of epoch e is transformed under
    ``torch.manual_seed(hash(e_seed, salt, i))`` inside a forked RNG, so the
    augmentation an image gets depends on (seed, epoch, image) only: not on the
    DataLoader workers, the batch it lands in or the rank that reads it.
    :meth:`set_epoch` sets ``e_seed`` (call it before iterating; workers copy it).
    """

    def __init__(self, base: ShardDataset, indices, label_map: dict[int, int], transform=None, seeded: bool = False,
                 salt: int = 0):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.label_map = dict(label_map)
        self.labels = torch.as_tensor([label_map[int(base.labels[i])] for i in self.indices], dtype=torch.int64)
        self.transform = transform
        self.seeded = seeded
        self.salt = int(salt)
        self.epoch_seed = 0

    def set_epoch(self, epoch_seed: int) -> None:
        self.epoch_seed = int(epoch_seed)

    def __len__(self) -> int:
        return len(self.indices)

    def _apply(self, x: torch.Tensor, i: int) -> torch.Tensor:
        if self.transform is None:
            return x
        if not self.seeded:
            return self.transform(x)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.epoch_seed * 1_000_003 + self.salt * 7_919_993 + int(i)) % (2**63 - 1))
            return self.transform(x)

    def __getitem__(self, i: int):
        x, _ = self.base[int(self.indices[i])]
        return self._apply(x, i), self.labels[i]

    def __getitems__(self, idx: list[int]):
        items = self.base.__getitems__([int(self.indices[i]) for i in idx])
        return [(self._apply(x, i), self.labels[i]) for (x, _), i in zip(items, idx)]


def set_epoch(dataset: Dataset, epoch_seed: int) -> None:
    """Set the augmentation seed of a :class:`Relabelled` view or of every view in a ConcatDataset."""
    for part in getattr(dataset, "datasets", [dataset]):
        if isinstance(part, Relabelled):
            part.set_epoch(epoch_seed)


def _folder(path: str, setting: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise HpcganError(f"{setting} {path}: no such folder (give an `hpcgan preprocess`/`hpcgan generate` output)")
    return p


def real_class_names(cfg: ClassifyConfig) -> list[str]:
    """The real classes a run uses, in label order; HpcganError for classes not in the manifest."""
    manifest = read_manifest(_folder(cfg.data, "data"))
    names = list(manifest["class_names"])
    if cfg.classes is None:
        if len(names) not in (2, 4):
            raise HpcganError(f"data {cfg.data} has {len(names)} classes {names}; choose 2 or 4 with --classes")
        return names
    unknown = [c for c in cfg.classes if c not in names]
    if unknown:
        raise HpcganError(f"classes {unknown} are not in the manifest of data {cfg.data}; it has {names}")
    return list(cfg.classes)


def _real(cfg: ClassifyConfig, split: str, names: list[str], transform, limit: int | None,
          seeded: bool = False) -> Relabelled:
    ds = ShardDataset(cfg.data, split, classes=names, limit_per_class=limit, value_range="unit")
    label_map = {ds.class_names.index(n): i for i, n in enumerate(names)}
    return Relabelled(ds, np.arange(len(ds)), label_map, transform=transform, seeded=seeded)


def _synthetic(cfg: ClassifyConfig, names: list[str], transform) -> tuple[list[Relabelled], dict[str, int]]:
    pools = []  # (dataset, row indices, label map) per gan_data folder
    available: set[str] = set()
    for folder in cfg.gan_data or []:
        ds = ShardDataset(_folder(folder, "gan_data"), "train", value_range="unit")
        if ds.resolution <= 0:  # pragma: no cover - manifests always have a resolution
            raise HpcganError(f"gan_data {folder}: no resolution in the manifest")
        present = sorted({ds.class_names[int(lab)] for lab in ds.labels.tolist()})
        available.update(present)
        pools.append((folder, ds, present))
    wanted = list(cfg.gan_classes) if cfg.gan_classes else sorted(available)
    missing = [c for c in wanted if c not in available]
    if missing:
        raise HpcganError(f"gan_classes {missing} have no images in gan_data {cfg.gan_data}; they hold {sorted(available)}")
    foreign = [c for c in wanted if c not in names]
    if foreign:
        raise HpcganError(f"synthetic classes {foreign} (gan_classes/gan_data) are not among the real classes {names}; "
                          "set gan_classes to classes of the real data")
    entries = []  # (pool index, row)
    for k, (_, ds, _) in enumerate(pools):
        for r, lab in enumerate(ds.labels.tolist()):
            if ds.class_names[int(lab)] in wanted:
                entries.append((k, r))
    n = int(cfg.gan_n)
    if n > len(entries):
        raise HpcganError(f"gan_n {n} is more than the {len(entries)} synthetic images of classes {wanted} in "
                          f"gan_data {cfg.gan_data}; lower gan_n or generate more images")
    pick = np.sort(np.random.default_rng(cfg.seed).choice(len(entries), size=n, replace=False))
    views, counts = [], {c: 0 for c in wanted}
    for k, (_, ds, _) in enumerate(pools):
        rows = [entries[j][1] for j in pick if entries[j][0] == k]
        if not rows:
            continue
        label_map = {i: names.index(c) for i, c in enumerate(ds.class_names) if c in names}
        for r in rows:
            counts[ds.class_names[int(ds.labels[r])]] += 1
        views.append(Relabelled(ds, rows, label_map, transform=transform, seeded=True, salt=k + 1))
    return views, counts


def build_datasets(cfg: ClassifyConfig) -> dict:
    """``{train, val, test, class_names, train_mix}`` for a validated config (see the module docstring)."""
    names = real_class_names(cfg)
    size = resolved_image_size(cfg)
    train_tf = build_transform(size, classic="classic" in cfg.aug)
    eval_tf = build_transform(size, classic=False)
    real_train = _real(cfg, "train", names, train_tf, cfg.limit_per_class, seeded=True)
    val = _real(cfg, "val", names, eval_tf, None)
    test = _real(cfg, "test", names, eval_tf, None)
    for split, ds in (("train", real_train), ("val", val), ("test", test)):
        if len(ds) == 0:
            raise HpcganError(f"data {cfg.data} has no {split} images of classes {names}; re-run `hpcgan preprocess` "
                              "with a larger set or other --test-per-class/--val-fraction")
    real_counts = {c: int((real_train.labels == i).sum()) for i, c in enumerate(names)}
    parts: list[Dataset] = [real_train]
    synth_counts: dict[str, int] = {}
    if "gan" in cfg.aug:
        views, synth_counts = _synthetic(cfg, names, train_tf)
        parts += views
    train = ConcatDataset(parts) if len(parts) > 1 else real_train
    mix = {"real": real_counts, "synthetic": synth_counts,
           "gan_data": [str(Path(p)) for p in (cfg.gan_data or [])] if "gan" in cfg.aug else []}
    return {"train": train, "val": val, "test": test, "class_names": names, "train_mix": mix}
