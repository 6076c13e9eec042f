"""Fixtures of the classifier tests (prefix ``classify_``)."""

from __future__ import annotations

import pytest

from data.helpers import phantom_shards

from .helpers import blob_folder, link_subset


@pytest.fixture(scope="session")
def classify_shards(tmp_path_factory):
    """32 px phantom shards (Clear, Opacity) from the real preprocessing, with train, val and test splits."""
    return phantom_shards(tmp_path_factory, "classify", 24, seed=11, test_per_class=4, val_fraction=0.2)


@pytest.fixture(scope="session")
def classify_synthetic(tmp_path_factory):
    """Synthetic-flagged shards (train split only): Opacity and Clear (label order swapped), 10 each, 24 px (real: 32)."""
    return blob_folder(tmp_path_factory.mktemp("classify_synth"), ["Opacity", "Clear"], {"train": 10}, res=24, seed=7,
                       synthetic=True)


@pytest.fixture(scope="session")
def classify_four(tmp_path_factory):
    """A 4-class shard folder (A, B, C, D) of learnable blob images."""
    return blob_folder(tmp_path_factory.mktemp("classify_four"), ["A", "B", "C", "D"],
                       {"train": 8, "val": 3, "test": 3}, seed=1)


@pytest.fixture(scope="session")
def classify_real_shards(data_cxr_root, tmp_path_factory):
    """12 + 12 real Kaggle X-rays (every 50th; flat layout) preprocessed at 48 px."""
    from hpcgan.data.preprocess import PreprocessConfig, run_preprocess

    root = tmp_path_factory.mktemp("classify_kaggle")
    for c in ("COVID", "Normal"):
        link_subset(data_cxr_root / "kaggle224" / c, root / c, 12, step=50)
    out = tmp_path_factory.mktemp("classify_kaggle_shards")
    run_preprocess(PreprocessConfig(str(root), str(out), classes=["COVID", "Normal"], layout="flat", resolution=48,
                                    test_per_class=3, val_fraction=0.2, annotations="keep", workers=1,
                                    progress=False))
    return out
