"""The real image set a metric compares against, as one value: folder, split and classes.

``RealSet.open(folder, split, classes)`` reads the folder's manifest once and keeps
what the metrics need (class names, per-class counts, the split's shard checksums,
the resolution). FID/KID statistics, the pixel metrics and the memorisation check all
take a ``RealSet`` instead of a bare path, so every comparison is between the same
classes: a generator trained on COVID only is scored against COVID images only.

``classes`` keeps the order it is given in: for a conditional generator, class ``k``
of the set is the generator's one-hot label ``k``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hpcgan.errors import HpcganError

__all__ = ["RealSet", "present_classes"]


def _manifest(folder: str | os.PathLike) -> dict:
    from hpcgan.data.shards import read_manifest

    if not Path(folder).is_dir():
        raise HpcganError(f"{folder}: no such directory; pass the output folder of `hpcgan preprocess` "
                          "(it holds manifest.json and the shards)")
    return read_manifest(folder)


def present_classes(manifest: dict, splits) -> list[str]:
    """The class names with at least one image in ``splits``, in the manifest's order."""
    return [c for c in manifest["class_names"] if any(int(manifest["counts"].get(s, {}).get(c, 0)) for s in splits)]


@dataclass(frozen=True)
class RealSet:
    """Real images of ``classes`` in ``split`` of the shard folder ``folder`` (see the module docstring)."""

    folder: str
    split: str
    classes: tuple[str, ...]
    class_names: tuple[str, ...]  # every class of the manifest: shard labels index this
    counts: tuple[int, ...]       # images per class of ``classes`` in the split
    shards: tuple[str, ...]       # sha256 of the split's shards, sorted
    resolution: int

    @classmethod
    def open(cls, folder: str | os.PathLike, split: str = "train", classes=None) -> RealSet:
        """Read ``folder``'s manifest once; ``classes`` None = every class with images in ``split``.

        A class the folder does not have, or one without images in ``split``, is an
        error that names the classes it does have.
        """
        m = _manifest(folder)
        if split not in m["counts"]:
            raise HpcganError(f"{folder} has no split {split!r}; its splits: {sorted(m['counts'])}")
        per = {c: int(m["counts"][split].get(c, 0)) for c in m["class_names"]}
        if sum(per.values()) == 0:
            nonempty = sorted(s for s, p in m["counts"].items() if sum(p.values()) > 0)
            raise HpcganError(f"split {split!r} of {folder} holds no images; pick another split (non-empty: {nonempty})")
        if classes is None:
            chosen = tuple(present_classes(m, [split]))
        else:
            chosen = tuple([classes] if isinstance(classes, str) else classes)
            unknown = [c for c in chosen if c not in per]
            if unknown:
                raise HpcganError(f"classes {unknown} are not in {folder}; it has {list(m['class_names'])}")
            empty = [c for c in chosen if per[c] == 0]
            if empty:
                raise HpcganError(f"split {split!r} of {folder} has no images of {empty}; classes with images: "
                                  f"{present_classes(m, [split])}")
            if not chosen or len(set(chosen)) != len(chosen):
                raise HpcganError(f"classes must be a non-empty list without repeats, got {list(chosen)}")
        shards = tuple(sorted(sh["sha256"] for sh in m["shards"] if sh["split"] == split))
        return cls(str(folder), split, chosen, tuple(m["class_names"]), tuple(per[c] for c in chosen), shards,
                   int(m["settings"]["resolution"]))

    @property
    def n(self) -> int:
        """Images in the set (all its classes)."""
        return sum(self.counts)

    @property
    def labels(self) -> tuple[int, ...]:
        """The shard labels of ``classes`` (indices into ``class_names``)."""
        return tuple(self.class_names.index(c) for c in self.classes)

    def only(self, classes) -> RealSet:
        """The same folder and split restricted to ``classes`` (a name or a list)."""
        want = (classes,) if isinstance(classes, str) else tuple(classes)
        bad = [c for c in want if c not in self.classes]
        if bad:
            raise HpcganError(f"classes {bad} are not in this set ({self.describe()})")
        return RealSet(self.folder, self.split, want, self.class_names,
                       tuple(self.counts[self.classes.index(c)] for c in want), self.shards, self.resolution)

    def other_split(self, split: str) -> RealSet:
        """The same folder and classes in another split (re-reads the manifest)."""
        return RealSet.open(self.folder, split, self.classes)

    def dataset(self, **kwargs):
        """A ``ShardDataset`` of exactly these images (``kwargs``: value_range, raw, ...)."""
        from hpcgan.data.dataset import ShardDataset

        return ShardDataset(self.folder, self.split, classes=list(self.classes), **kwargs)

    def key(self) -> dict:
        """What identifies the images, for cache keys: shard checksums, split, classes."""
        return {"shards": list(self.shards), "split": self.split, "classes": list(self.classes)}

    def describe(self) -> str:
        return f"{self.split} split of {self.folder}, classes {'+'.join(self.classes)} ({self.n} images)"
