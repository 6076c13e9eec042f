import csv
from collections import Counter

import pytest

from hpcgan.data.splits import assign_splits
from hpcgan.errors import HpcganError


def _toy(n_per_class=(50, 30)):
    stems, labels = [], []
    for c, n in enumerate(n_per_class):
        for i in range(n):
            stems.append(f"c{c}-{i}")
            labels.append(c)
    return stems, labels


def test_stratified_counts_and_reproducible():
    stems, labels = _toy()
    a = assign_splits(stems, labels, ["A", "B"], test_per_class=10, val_fraction=0.2, seed=1)
    b = assign_splits(stems, labels, ["A", "B"], test_per_class=10, val_fraction=0.2, seed=1)
    c = assign_splits(stems, labels, ["A", "B"], test_per_class=10, val_fraction=0.2, seed=2)
    assert a == b and a != c
    count = Counter((lab, a[s]) for s, lab in zip(stems, labels))
    assert count[(0, "test")] == 10 and count[(1, "test")] == 10
    assert count[(0, "val")] == round(0.2 * 40) and count[(1, "val")] == round(0.2 * 20)
    assert count[(0, "train")] == 32 and count[(1, "train")] == 16
    assert set(a) == set(stems)


def test_independent_of_input_order_for_other_classes():
    stems, labels = _toy()
    a = assign_splits(stems, labels, ["A", "B"], test_per_class=5, seed=0)
    # dropping one image of class B does not move any class A image
    keep = [i for i, s in enumerate(stems) if s != "c1-3"]
    b = assign_splits([stems[i] for i in keep], [labels[i] for i in keep], ["A", "B"], test_per_class=5, seed=0)
    assert all(a[s] == b[s] for s, lab in zip(stems, labels) if lab == 0)


def test_patient_aware_on_hannover_metadata(data_cxr_root):
    with open(data_cxr_root / "hannover" / "data.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    stems = [r["image_id"] for r in rows]
    patients = [r["patient_id"] for r in rows]
    # two classes by projection, so both stratification and patients matter
    labels = [0 if r["projection"] == "ap" else 1 for r in rows]
    assert len(set(patients)) < len(stems)
    out = assign_splits(stems, labels, ["ap", "pa"], test_per_class=15, val_fraction=0.15, seed=4, patients=patients)
    split_of_patient = {}
    for s, p in zip(stems, patients):
        split_of_patient.setdefault(p, set()).add(out[s])
    assert all(len(v) == 1 for v in split_of_patient.values()), "a patient in two splits"
    n_test = Counter(out[s] for s in stems)["test"]
    assert n_test >= 15  # whole patients: at least the requested count per class
    assert Counter(out.values())["train"] > 0 and Counter(out.values())["val"] > 0


def test_errors():
    stems, labels = _toy((5, 5))
    with pytest.raises(HpcganError, match="lower --test-per-class"):
        assign_splits(stems, labels, ["A", "B"], test_per_class=5)
    with pytest.raises(HpcganError, match="no usable images"):
        assign_splits(stems[:5], labels[:5], ["A", "B"], test_per_class=1)
    with pytest.raises(HpcganError, match="val-fraction"):
        assign_splits(stems, labels, ["A", "B"], test_per_class=1, val_fraction=1.5)
