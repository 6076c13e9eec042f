"""Reading preprocessed shards for training: a torch Dataset and a distributed sampler.

``ShardDataset(out, split)`` indexes a split from the manifest and the shards'
labels, and opens the HDF5 files lazily in the process that reads them (a
DataLoader worker opens its own handles; handles never cross a fork), read-only
with HDF5 file locking off. Items are ``(image, label)`` with ``image`` a float32
tensor (1, R, R) in [0, 1] (``value_range="gan"``: [-1, 1]); ``raw=True`` returns
the stored uint8 instead (4x less to move from DataLoader workers; scale on the GPU).
``cache`` keeps each shard's decoded images in memory after its first read (one
sequential read and LZF decompression per shard and process instead of one per
image and epoch); ``"auto"`` (default) turns it on when the split's pixels take
at most 1 GiB, which covers the full Kaggle database at 256 px per class pair.

``ShardSampler`` gives each of ``num_replicas`` ranks a disjoint part of a seeded
permutation that changes with ``set_epoch``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from hpcgan.data.shards import open_h5, read_manifest
from hpcgan.errors import HpcganError

# cache="auto" keeps a split's decoded images in memory (per process) up to this size.
CACHE_AUTO_BYTES = 1 << 30


class ShardDataset(Dataset):
    def __init__(
        self,
        out: str | os.PathLike,
        split: str = "train",
        classes: list[str] | None = None,
        limit_per_class: int | None = None,
        value_range: str = "unit",
        transform=None,
        raw: bool = False,
        cache: bool | str = "auto",
    ):
        self.out = Path(out)
        manifest = read_manifest(self.out)
        if split not in manifest["counts"]:
            raise HpcganError(f"{out} has no split {split!r}; splits: {sorted(manifest['counts'])}")
        if value_range not in ("unit", "gan"):
            raise HpcganError(f"value_range must be 'unit' ([0, 1]) or 'gan' ([-1, 1]), got {value_range!r}")
        self.class_names = list(manifest["class_names"])
        self.resolution = int(manifest["settings"]["resolution"])
        self.value_range = value_range
        self.raw = raw
        self.transform = transform
        keep_labels = None
        if classes is not None:
            unknown = [c for c in classes if c not in self.class_names]
            if unknown:
                raise HpcganError(f"classes {unknown} are not in {out}; it has {self.class_names}")
            keep_labels = {self.class_names.index(c) for c in classes}
        # the items: (shard, row, label) of every kept image, in shard order
        self.files = [str(self.out / sh["path"]) for sh in manifest["shards"] if sh["split"] == split]
        self.shard_ids, self.rows, self.labels = _index(self.files, keep_labels, limit_per_class)
        self._handles: dict[int, object] = {}
        self._pid = None
        if cache == "auto":
            cache = self._split_bytes() <= CACHE_AUTO_BYTES
        elif not isinstance(cache, bool):
            raise HpcganError(f"cache must be True, False or 'auto', got {cache!r}")
        self.cache = cache

    def __len__(self) -> int:
        return len(self.rows)

    def _split_bytes(self) -> int:
        """Bytes of uint8 pixels in the shards this dataset reads from."""
        total = 0
        for path in self.files:
            with open_h5(path) as f:
                total += int(np.prod(f["images"].shape))
        return total

    def _dataset(self, k: int):
        """Shard k's images: an open HDF5 dataset, or (cache on) the decoded array, read once."""
        if self._pid != os.getpid():  # a fresh process (DataLoader worker): own handles
            self._handles = {}
            self._pid = os.getpid()
        h = self._handles.get(k)
        if h is None:
            if self.cache:
                with open_h5(self.files[k]) as f:
                    h = f["images"][:]  # one sequential read and decompression of the whole shard
            else:
                h = open_h5(self.files[k])["images"]
            self._handles[k] = h
        return h

    def _to_float(self, a: np.ndarray) -> torch.Tensor:
        if self.raw:
            return torch.from_numpy(a)
        t = torch.from_numpy(a).to(torch.float32).div_(255.0)
        if self.value_range == "gan":
            t = t.mul_(2.0).sub_(1.0)
        return t

    def __getitem__(self, i: int):
        img = self._dataset(int(self.shard_ids[i]))[int(self.rows[i])]
        x = self._to_float(img)
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i]

    def __getitems__(self, indices: list[int]):
        """Batched read (used by DataLoader): one sorted read per shard instead of one per image."""
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(idx), 1, self.resolution, self.resolution), dtype=np.uint8)  # [N, 1, R, R]
        shards = self.shard_ids[idx]
        for k in np.unique(shards):
            sel = np.flatnonzero(shards == k)
            rows = self.rows[idx[sel]]
            order = np.argsort(rows, kind="stable")
            ds = self._dataset(int(k))
            if isinstance(ds, np.ndarray):
                out[sel[order]] = ds[rows[order]]
            else:
                for j, r in zip(sel[order], rows[order]):
                    out[j] = ds[int(r)]
        x = self._to_float(out)
        labs = self.labels[torch.as_tensor(idx)]
        if self.transform is not None:
            return [(self.transform(x[j]), labs[j]) for j in range(len(idx))]
        return [(x[j], labs[j]) for j in range(len(idx))]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"] = {}
        state["_pid"] = None
        return state


def _index(files: list[str], keep_labels: set[int] | None,
           limit_per_class: int | None) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """(shard index [N], row in the shard [N], label [N]) of the images of ``files`` with a label in
    ``keep_labels`` (None: all), the first ``limit_per_class`` of each class (None: all)."""
    shard_ids, rows, labels = [], [], []
    taken: dict[int, int] = {}
    for k, path in enumerate(files):
        with open_h5(path) as f:
            labs = f["labels"][:]  # [n]
        for r, lab in enumerate(labs):
            lab = int(lab)
            if keep_labels is not None and lab not in keep_labels:
                continue
            if limit_per_class is not None and taken.get(lab, 0) >= limit_per_class:
                continue
            taken[lab] = taken.get(lab, 0) + 1
            shard_ids.append(k)
            rows.append(r)
            labels.append(lab)
    return (np.asarray(shard_ids, dtype=np.int64), np.asarray(rows, dtype=np.int64),
            torch.as_tensor(labels, dtype=torch.int64))


class ShardSampler(Sampler):
    """A disjoint, seeded, per-epoch reshuffled part of the dataset for each rank.

    ``even=True`` (default) gives every rank the same number of samples (dropping at
    most ``num_replicas - 1`` per epoch, a different few each epoch), as DDP needs;
    the parts never overlap.
    """

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0, seed: int = 0, shuffle: bool = True, even: bool = True):
        if not 0 <= rank < num_replicas:
            raise HpcganError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.length = int(length)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.even = even
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> list[int]:
        """This rank's sample indices for the current epoch, in order: what iterating the sampler yields."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed * 1_000_003 + self.epoch)
            perm = torch.randperm(self.length, generator=g).tolist()
        else:
            perm = list(range(self.length))
        if self.even:
            perm = perm[: (self.length // self.num_replicas) * self.num_replicas]
        return perm[self.rank :: self.num_replicas]

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        if self.even:
            return self.length // self.num_replicas
        return len(range(self.rank, self.length, self.num_replicas))
