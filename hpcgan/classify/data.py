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
as ``train_mix``: ``{real: {class: n}, synthetic: {class: n}, oversampled: {class: n}, gan_data: [folders]}``.

Rebalance (aug rebalance), the control of the gan arm: the gan arm changes the class
balance as well as adding new images. Rebalance adds, per class, as many *copies of
real training images* as the gan arm adds synthetic ones (:func:`gan_arm_counts`), so
both arms train on the same class counts and differ only in what the extra images are.

``balance`` (independent of ``aug``) is the classifier's own correction:
``weight`` weights the loss by :func:`class_weights`, ``oversample`` draws batches with
:class:`BalancedSampler`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler

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


def _synthetic_pools(cfg: ClassifyConfig, names: list[str]) -> tuple[list[ShardDataset], list[tuple[int, int]],
                                                                     list[str]]:
    """The gan_data folders (train split), the ``gan_n`` drawn (folder index, row) pairs and the classes used."""
    pools = []
    available: set[str] = set()
    for folder in cfg.gan_data or []:
        ds = ShardDataset(_folder(folder, "gan_data"), "train", value_range="unit")
        if ds.resolution <= 0:  # pragma: no cover - manifests always have a resolution
            raise HpcganError(f"gan_data {folder}: no resolution in the manifest")
        available.update(ds.class_names[int(lab)] for lab in ds.labels.tolist())
        pools.append(ds)
    wanted = list(cfg.gan_classes) if cfg.gan_classes else sorted(available)
    missing = [c for c in wanted if c not in available]
    if missing:
        raise HpcganError(f"gan_classes {missing} have no images in gan_data {cfg.gan_data}; they hold {sorted(available)}")
    foreign = [c for c in wanted if c not in names]
    if foreign:
        raise HpcganError(f"synthetic classes {foreign} (gan_classes/gan_data) are not among the real classes {names}; "
                          "set gan_classes to classes of the real data")
    entries = [(k, r) for k, ds in enumerate(pools) for r, lab in enumerate(ds.labels.tolist())
               if ds.class_names[int(lab)] in wanted]
    n = int(cfg.gan_n)
    if n > len(entries):
        raise HpcganError(f"gan_n {n} is more than the {len(entries)} synthetic images of classes {wanted} in "
                          f"gan_data {cfg.gan_data}; lower gan_n or generate more images")
    pick = np.sort(np.random.default_rng(cfg.seed).choice(len(entries), size=n, replace=False))
    return pools, [entries[j] for j in pick], wanted


def _synthetic(cfg: ClassifyConfig, names: list[str], transform) -> tuple[list[Relabelled], dict[str, int]]:
    pools, picked, wanted = _synthetic_pools(cfg, names)
    views, counts = [], {c: 0 for c in wanted}
    for k, ds in enumerate(pools):
        rows = [r for (j, r) in picked if j == k]
        if not rows:
            continue
        label_map = {i: names.index(c) for i, c in enumerate(ds.class_names) if c in names}
        for r in rows:
            counts[ds.class_names[int(ds.labels[r])]] += 1
        views.append(Relabelled(ds, rows, label_map, transform=transform, seeded=True, salt=k + 1))
    return views, counts


def gan_arm_counts(cfg: ClassifyConfig, names: list[str], real_counts: dict[str, int]) -> dict[str, int]:
    """Images per class the gan arm adds: what rebalance copies from the real training set.

    With gan_data: the class counts of the gan arm's own draw (same seed, same folders). Without: gan_n split
    evenly over gan_classes (the first classes take the remainder), or, without gan_classes, all to the class
    with the fewest real training images (the short class).
    """
    if cfg.gan_data:
        pools, picked, wanted = _synthetic_pools(cfg, names)
        counts = {c: 0 for c in wanted}
        for k, r in picked:
            counts[pools[k].class_names[int(pools[k].labels[r])]] += 1
        return counts
    wanted = list(cfg.gan_classes) if cfg.gan_classes else [min(names, key=lambda c: (real_counts[c], names.index(c)))]
    foreign = [c for c in wanted if c not in names]
    if foreign:
        raise HpcganError(f"gan_classes {foreign} are not among the real classes {names}; rebalance copies real "
                          "images of these classes")
    n = int(cfg.gan_n)
    return {c: n // len(wanted) + (1 if i < n % len(wanted) else 0) for i, c in enumerate(wanted)}


def _rebalance(cfg: ClassifyConfig, names: list[str], real_train: Relabelled,
               real_counts: dict[str, int]) -> tuple[Relabelled, dict[str, int]]:
    """Copies of real training images: per class the gan arm's count, cycling through a seeded permutation.

    Each image of a class is copied floor(k / n) or ceil(k / n) times for k copies of n images.
    """
    extra = gan_arm_counts(cfg, names, real_counts)
    rng = np.random.default_rng([int(cfg.seed), 1])
    rows = []
    for c, k in extra.items():
        own = np.flatnonzero(real_train.labels.numpy() == names.index(c))
        if k and not len(own):
            raise HpcganError(f"rebalance: no real training images of class {c!r} to copy")
        rounds = -(-k // len(own)) if k else 0
        order = np.concatenate([rng.permutation(own) for _ in range(rounds)])[:k] if k else own[:0]
        rows.append(real_train.indices[order])
    view = Relabelled(real_train.base, np.sort(np.concatenate(rows)), real_train.label_map,
                      transform=real_train.transform, seeded=True, salt=101)
    return view, {c: int(k) for c, k in extra.items()}


class BalancedSampler(Sampler):
    """``balance: oversample``: each epoch ``length`` draws with replacement, class c with weight 1 / n_c.

    Every class is drawn equally often on average. The draw is seeded from (seed, epoch) and split over the
    ranks as :class:`~hpcgan.data.dataset.ShardSampler` splits its permutation (every rank the same count).
    """

    def __init__(self, labels: torch.Tensor, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        counts = torch.bincount(labels)
        self.weights = (1.0 / counts.double())[labels]
        self.length = len(labels)
        self.num_replicas, self.rank, self.seed, self.epoch = int(num_replicas), int(rank), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch + 17)
        draw = torch.multinomial(self.weights, self.length, replacement=True, generator=g).tolist()
        draw = draw[: (self.length // self.num_replicas) * self.num_replicas]
        return iter(draw[self.rank:: self.num_replicas])

    def __len__(self) -> int:
        return self.length // self.num_replicas


def train_labels(dataset: Dataset) -> torch.Tensor:
    """The labels of a training set (a Relabelled view or a ConcatDataset of them), in item order."""
    return torch.cat([part.labels for part in getattr(dataset, "datasets", [dataset])])


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``balance: weight``: w_c = N / (K * n_c), so every class carries the same total weight (a class without
    images gets weight 0)."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    w = torch.where(counts > 0, len(labels) / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    return w.float()


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
    copies: dict[str, int] = {}
    if "gan" in cfg.aug:
        views, synth_counts = _synthetic(cfg, names, train_tf)
        parts += views
    if cfg.aug == "rebalance":
        view, copies = _rebalance(cfg, names, real_train, real_counts)
        parts.append(view)
    train = ConcatDataset(parts) if len(parts) > 1 else real_train
    mix = {"real": real_counts, "synthetic": synth_counts, "oversampled": copies,
           "gan_data": [str(Path(p)) for p in (cfg.gan_data or [])] if "gan" in cfg.aug else []}
    return {"train": train, "val": val, "test": test, "class_names": names, "train_mix": mix}
