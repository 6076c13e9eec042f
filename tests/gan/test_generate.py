"""hpcgan generate: shards in the preprocess format, per-class labels, seeds, PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hpcgan.data.dataset import ShardDataset
from hpcgan.data.shards import read_split, sha256_file, verify
from hpcgan.data.sources import FLAG_SYNTHETIC
from hpcgan.errors import HpcganError
from hpcgan.gan.generate import GenerateConfig, generate, parse_seeds
from hpcgan.gan.train import train

from .helpers import cli, tiny_train_config


def test_conditional_generation_via_cli(gan_cond_run, tmp_path):
    snap = gan_cond_run["snapshot"]
    out = tmp_path / "syn"
    proc = cli("generate", "--network", snap, "--n", 3, "--out", out, "--png")
    assert "6 images of Clear, Opacity" in proc.stdout
    assert verify(out) == []
    data = read_split(out, "train")
    assert list(data["labels"]) == [0, 0, 0, 1, 1, 1]  # labels in the training data's order
    assert data["images"].shape == (6, 1, 32, 32) and data["images"].dtype == np.uint8
    assert all(f & FLAG_SYNTHETIC for f in data["flags"])
    assert list(data["source"][:3]) == [f"synthetic-Clear-seed{s:06d}" for s in range(3)]
    m = json.loads((out / "manifest.json").read_text())
    g = m["generator"]
    assert g["snapshot_sha256"] == sha256_file(snap) and g["seeds"] == [0, 1, 2] and g["trunc"] == 1.0
    assert m["counts"]["train"] == {"Clear": 3, "Opacity": 3} and (out / "config.yaml").is_file()
    assert sorted(p.name for p in (out / "png" / "Opacity").iterdir()) == [f"seed{s:06d}.png" for s in range(3)]
    assert (out / "grid.png").is_file()
    ds = ShardDataset(out, "train", value_range="gan")
    assert len(ds) == 6 and ds.class_names == ["Clear", "Opacity"]
    # the images of the two classes differ (the label reaches the generator)
    assert not np.array_equal(data["images"][:3], data["images"][3:])


def test_one_class_seeds_and_determinism(gan_cond_run, tmp_path):
    snap = gan_cond_run["snapshot"]
    a = generate(GenerateConfig(network=snap, out=str(tmp_path / "a"), classes=["Opacity"], seeds="5-6,9"))
    generate(GenerateConfig(network=snap, out=str(tmp_path / "b"), classes=["1"], seeds=[5, 6, 9], trunc=0.7))
    assert a["generator"]["classes"] == ["Opacity"] and a["generator"]["seeds"] == [5, 6, 9]
    da, db = read_split(tmp_path / "a", "train"), read_split(tmp_path / "b", "train")
    assert list(da["labels"]) == [1, 1, 1] and list(db["labels"]) == [1, 1, 1]
    assert not np.array_equal(da["images"], db["images"])  # truncation changes them
    generate(GenerateConfig(network=snap, out=str(tmp_path / "c"), classes=["Opacity"], seeds="5-6,9"))
    assert np.array_equal(da["images"], read_split(tmp_path / "c", "train")["images"])
    with pytest.raises(HpcganError, match="unknown class"):
        generate(GenerateConfig(network=snap, out=str(tmp_path / "d"), classes=["COVID"], n=1))
    with pytest.raises(HpcganError, match="--n"):
        generate(GenerateConfig(network=snap, out=str(tmp_path / "d")))


def test_unconditional_networks(gan_shards, tmp_path):
    one = train(tiny_train_config(gan_shards, tmp_path / "one", classes=["Opacity"], kimg=0.008, aug="noaug"))
    m = generate(GenerateConfig(network=one["run_dir"], out=str(tmp_path / "o"), n=2))
    assert m["generator"]["classes"] == ["Opacity"] and list(read_split(tmp_path / "o", "train")["labels"]) == [1, 1]
    mixed = train(tiny_train_config(gan_shards, tmp_path / "mix", kimg=0.008, aug="noaug"))
    with pytest.raises(HpcganError, match="unconditional"):
        generate(GenerateConfig(network=mixed["snapshot"], out=str(tmp_path / "m"), n=2))
    proc = cli("generate", "--network", mixed["snapshot"], "--n", 2, "--out", tmp_path / "m", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_parse_seeds():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7] and parse_seeds([4, 2]) == [4, 2]
    with pytest.raises(HpcganError):
        parse_seeds("3-1")
    with pytest.raises(HpcganError):
        parse_seeds("a")
