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
