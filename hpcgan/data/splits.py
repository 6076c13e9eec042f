"""Reproducible, stratified, patient-aware train/val/test splits.

Per class, the units (patients when patient ids are known, else single images)
are shuffled with a generator seeded from (seed, class position); units go to the
test set until it holds ``test_per_class`` images, then to validation until it
holds ``round(val_fraction * rest)`` images, the rest to train. A patient's
images all belong to the class of its first image's unit list, so no patient
ever appears in two splits. The result depends only on the kept images, their
classes and patients, and the seed: never on workers, ranks or file order.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from hpcgan.errors import HpcganError

SPLITS = ("train", "val", "test")


def assign_splits(
    stems: list[str],
    labels: list[int],
    class_names: list[str],
    test_per_class: int = 200,
    val_fraction: float = 0.1,
    seed: int = 0,
    patients: list[str | None] | None = None,
) -> dict[str, str]:
    """``stem -> split`` for the given images (stems in canonical order)."""
    if test_per_class < 0:
        raise HpcganError(f"--test-per-class must be >= 0, got {test_per_class}")
    if not 0.0 <= val_fraction < 1.0:
        raise HpcganError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    patients = patients or [None] * len(stems)
    out: dict[str, str] = {}
    for c, units in _units_by_class(stems, labels, len(class_names), patients).items():
        n_images = sum(len(v) for v in units.values())
        if n_images == 0:
            raise HpcganError(
                f"class {class_names[c]!r} has no usable images after exclusions; "
                "check the manifest's exclusions or drop the class from --classes"
            )
        if n_images <= test_per_class:
            raise HpcganError(
                f"class {class_names[c]!r} has {n_images} usable images, not more than "
                f"--test-per-class {test_per_class}; lower --test-per-class"
            )
        for idx, split in _deal_units(units, n_images, np.random.default_rng([int(seed), c]), test_per_class,
                                      val_fraction):
            for i in idx:
                out[stems[i]] = split
    return out


def _units_by_class(stems: list[str], labels: list[int], n_classes: int,
                    patients: list[str | None]) -> dict[int, OrderedDict[str, list[int]]]:
    """Per class, its units in first-seen order: a patient's image indices, or one image without a patient id.

    A patient belongs to the class of its first image.
    """
    units_by_class: dict[int, OrderedDict[str, list[int]]] = {c: OrderedDict() for c in range(n_classes)}
    patient_class: dict[str, int] = {}
    for i, (lab, pat) in enumerate(zip(labels, patients)):
        if pat:
            c = patient_class.setdefault(pat, lab)
            units_by_class[c].setdefault("p:" + pat, []).append(i)
        else:
            units_by_class[lab]["i:" + stems[i]] = [i]
    return units_by_class


def _deal_units(units: OrderedDict[str, list[int]], n_images: int, rng: np.random.Generator, test_per_class: int,
                val_fraction: float):
    """(image indices, split) of each unit of one class, in ``rng``'s order: test until it holds
    ``test_per_class`` images, then val until ``round(val_fraction * rest)``, then train."""
    keys = list(units.keys())
    order = rng.permutation(len(keys))
    n_test = 0
    n_val_target = None
    n_val = 0
    for j in order:
        idx = units[keys[j]]
        if n_test < test_per_class:
            split = "test"
            n_test += len(idx)
        else:
            if n_val_target is None:
                n_val_target = int(round(val_fraction * (n_images - n_test)))
            if n_val < n_val_target:
                split = "val"
                n_val += len(idx)
            else:
                split = "train"
        yield idx, split
