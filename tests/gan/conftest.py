"""Fixtures of the GAN tests (prefix ``gan_``)."""

from __future__ import annotations

import pytest

from data.helpers import phantom_shards

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
    return phantom_shards(tmp_path_factory, "gan", 32, seed=5, test_per_class=2, val_fraction=0.0)


@pytest.fixture(scope="session")
def gan_cond_run(gan_shards, tmp_path_factory):
    """A finished tiny conditional StyleGAN2 run: its summary dict from hpcgan.gan.train.train."""
    from hpcgan.gan.train import train

    from .helpers import tiny_train_config

    return train(tiny_train_config(gan_shards, tmp_path_factory.mktemp("gan_runs"), cond=True))

