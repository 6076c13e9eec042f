"""The rebalancing control (aug rebalance), --balance weight|oversample and --select on real shard folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hpcgan.classify import run_classify
from hpcgan.classify.config import validate
from hpcgan.classify.data import BalancedSampler, build_datasets, class_weights, train_labels
from hpcgan.errors import HpcganError
from hpcgan.metrics.classification import balanced_accuracy, confusion_matrix

from .helpers import blob_images, tiny_config, write_shard_folder


@pytest.fixture(scope="module")
def classify_skewed(tmp_path_factory):
    """A Normal-heavy folder as the study's: train Clear 18, Opacity 6; val 6 / 2; test 4 / 4 (learnable blobs)."""
    splits = {}
    for k, (split, n0, n1) in enumerate((("train", 18, 6), ("val", 6, 2), ("test", 4, 4))):
        labels = np.r_[np.zeros(n0, int), np.ones(n1, int)]
        splits[split] = (blob_images(labels, 32, 40 + k), labels)
    return write_shard_folder(tmp_path_factory.mktemp("classify_skewed"), ["Clear", "Opacity"], splits)


def _counts(sets) -> list[int]:
    return torch.bincount(train_labels(sets["train"]), minlength=2).tolist()


def test_rebalance_copies_real_images_of_the_named_class(classify_skewed, tmp_path):
    cfg = validate(tiny_config(classify_skewed, tmp_path / "r", aug="rebalance", gan_n=9, gan_classes=["Opacity"]))
    sets = build_datasets(cfg)
    assert sets["train_mix"]["oversampled"] == {"Opacity": 9} and sets["train_mix"]["synthetic"] == {}
    assert _counts(sets) == [18, 6 + 9]
    real, copies = sets["train"].datasets
    assert copies.base is real.base  # copies of the real training images, nothing else
    opacity_rows = real.indices[(real.labels == 1).numpy()]
    times = {int(r): int((copies.indices == r).sum()) for r in opacity_rows}
    assert set(copies.indices.tolist()) <= set(opacity_rows.tolist())
    assert sorted(times.values()) == [1, 1, 1, 2, 2, 2]  # 9 copies of 6 images: each 1 or 2 times
    x0, _ = copies[0]
    row = int(np.flatnonzero(real.indices == copies.indices[0])[0])
    assert torch.equal(x0, real[row][0])  # no classic augmentation: an exact copy


def test_rebalance_has_the_gan_arms_class_counts(classify_shards, classify_synthetic, tmp_path):
    kw = dict(gan_data=[str(classify_synthetic)], gan_n=7, seed=5)
    gan = build_datasets(validate(tiny_config(classify_shards, tmp_path / "g", aug="gan", **kw)))
    reb = build_datasets(validate(tiny_config(classify_shards, tmp_path / "b", aug="rebalance", **kw)))
    assert sum(gan["train_mix"]["synthetic"].values()) == 7
    assert reb["train_mix"]["oversampled"] == gan["train_mix"]["synthetic"]
    assert _counts(reb) == _counts(gan) and reb["train_mix"]["synthetic"] == {}


def test_rebalance_without_gan_data_or_classes_copies_the_short_class(classify_skewed, tmp_path):
    sets = build_datasets(validate(tiny_config(classify_skewed, tmp_path / "s", aug="rebalance", gan_n=12)))
    assert sets["train_mix"]["oversampled"] == {"Opacity": 12} and _counts(sets) == [18, 18]


def test_class_weights_and_balanced_sampler():
    labels = torch.tensor([0] * 30 + [1] * 10)
    w = class_weights(labels, 2)
    assert w.tolist() == pytest.approx([40 / (2 * 30), 40 / (2 * 10)])
    assert float((w[labels]).sum()) == pytest.approx(40)  # every image's weight sums to N
    s = BalancedSampler(labels, seed=3)
    draws = []
    for epoch in range(50):
        s.set_epoch(epoch)
        draws += list(s)
    share = np.mean(labels[torch.tensor(draws)].numpy())
    assert len(draws) == 50 * 40 and abs(share - 0.5) < 0.05  # the short class a quarter of data, half of draws
    s.set_epoch(1)
    assert list(s) == list(s)
    s.set_epoch(2)
    first, second = list(s), None
    s.set_epoch(3)
    second = list(s)
    assert first != second
    parts = []
    for rank in (0, 1):
        r = BalancedSampler(labels, num_replicas=2, rank=rank, seed=3)
        r.set_epoch(2)
        parts.append(list(r))
    assert len(parts[0]) == len(parts[1]) == 20 and sorted(parts[0] + parts[1]) == sorted(first)


def test_balanced_accuracy_by_hand():
    cm = confusion_matrix([0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0], 3)  # class 2 has no images
    assert balanced_accuracy(cm) == pytest.approx((3 / 4 + 1 / 2) / 2)


def _epochs(out) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("select, column", [("accuracy", "val_acc"), ("balanced", "val_balanced_acc"),
                                            ("auc", "val_auc")])
def test_select_picks_the_first_best_epoch_of_its_score(classify_skewed, tmp_path, select, column):
    res = run_classify(tiny_config(classify_skewed, tmp_path / "s", epochs=3, select=select, positive_class="Opacity",
                                   lr=3e-3))
    recs = _epochs(tmp_path / "s")
    best = max(recs, key=lambda r: (r[column] if r[column] is not None else -1.0, -r["epoch"]))
    assert res["best_epoch"] == best["epoch"] and res["best_val_score"] == pytest.approx(best[column])
    ck = torch.load(tmp_path / "s" / "best.pt", weights_only=True)
    assert ck["epoch"] == best["epoch"] and ck["select"] == select


def test_balance_weight_and_oversample_change_training(classify_skewed, tmp_path):
    runs = {b: run_classify(tiny_config(classify_skewed, tmp_path / b, epochs=1, balance=b))
            for b in ("none", "weight", "oversample")}
    loss = {b: _epochs(tmp_path / b)[0]["train_loss"] for b in runs}
    assert loss["weight"] != loss["none"] and loss["oversample"] != loss["none"]
    assert runs["oversample"]["balance"] == "oversample"
    again = run_classify(tiny_config(classify_skewed, tmp_path / "again", epochs=1, balance="oversample"))
    assert again["scores"] == runs["oversample"]["scores"]  # the balanced draw is seeded


@pytest.mark.parametrize("over, words", [(dict(balance="smote"), "balance"), (dict(select="loss"), "select"),
                                         (dict(aug="rebalance", gan_n=0), "gan_n")])
def test_bad_balance_settings(classify_skewed, tmp_path, over, words):
    with pytest.raises(HpcganError, match=words):
        validate(tiny_config(classify_skewed, tmp_path / "x", **over))
