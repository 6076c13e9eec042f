"""Fixtures of the GAN tests (prefix ``gan_``)."""

from __future__ import annotations

import pytest

from .helpers import make_pair


@pytest.fixture
def gan_pair_cond():
    """(G, D) conditional on 2 classes, native ops."""
    return make_pair(c_dim=2)


@pytest.fixture
def gan_pair_uncond():
    """(G, D) unconditional, native ops."""
    return make_pair(c_dim=0)


@pytest.fixture(scope="session")
def gan_shards(tmp_path_factory):
    """32 px phantom shards: classes Clear and Opacity, ~30 training images each."""
    from hpcgan.data.phantom import generate_phantoms
    from hpcgan.data.preprocess import PreprocessConfig, run_preprocess

    root = tmp_path_factory.mktemp("gan_phantoms")
    generate_phantoms(root, 32, seed=5)
    out = tmp_path_factory.mktemp("gan_shards")
    run_preprocess(PreprocessConfig(str(root), str(out), classes=["Clear", "Opacity"], resolution=32,
                                    test_per_class=2, val_fraction=0.0, workers=1, progress=False))
    return out


@pytest.fixture(scope="session")
def gan_cond_run(gan_shards, tmp_path_factory):
    """A finished tiny conditional StyleGAN2 run: its summary dict from hpcgan.gan.train.train."""
    from hpcgan.gan.train import train

    from .helpers import tiny_train_config

    return train(tiny_train_config(gan_shards, tmp_path_factory.mktemp("gan_runs"), cond=True))


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run only with HPCGAN_SLOW=1 (or when selected with -m slow)."""
    import os

    if os.environ.get("HPCGAN_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: set HPCGAN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords and "tests/gan/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)
