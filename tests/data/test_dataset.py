import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hpcgan.data.dataset import ShardDataset, ShardSampler
from hpcgan.data.preprocess import PreprocessConfig, run_preprocess
from hpcgan.data.shards import read_split
from hpcgan.errors import HpcganError


@pytest.fixture(scope="module")
def data_shards(data_phantom_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "out"
    run_preprocess(PreprocessConfig(str(data_phantom_root), str(out), classes=["Clear", "Opacity"], resolution=32,
                                    test_per_class=2, val_fraction=0.1, shard_size=3, annotations="keep",
                                    workers=1, progress=False))
    return out


def test_values_labels_and_ranges(data_shards):
    raw = read_split(data_shards, "train")
    ds = ShardDataset(data_shards, "train")
    assert len(ds) == len(raw["labels"])
    for i in (0, len(ds) - 1):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (1, 32, 32)
        assert torch.allclose(x, torch.from_numpy(raw["images"][i]).float() / 255)
        assert int(y) == raw["labels"][i]
    g = ShardDataset(data_shards, "train", value_range="gan")
    xg, _ = g[0]
    assert xg.min() >= -1 and xg.max() <= 1 and torch.allclose(xg, ds[0][0] * 2 - 1)


def test_filter_and_limit(data_shards):
    only = ShardDataset(data_shards, "train", classes=["Opacity"])
    assert len(only) > 0 and set(only.labels.tolist()) == {1}
    lim = ShardDataset(data_shards, "train", limit_per_class=3)
    assert sorted(lim.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    with pytest.raises(HpcganError, match="Nope"):
        ShardDataset(data_shards, "train", classes=["Nope"])


def test_dataloader_workers_open_their_own_files(data_shards, monkeypatch):
    monkeypatch.setenv("HDF5_USE_FILE_LOCKING", "FALSE")
    ds = ShardDataset(data_shards, "train")
    ds[0]  # open a handle in the parent first: workers must not reuse it
    ref = torch.stack([ds[i][0] for i in range(len(ds))])
    for workers in (0, 2):
        xs, ys = [], []
        for x, y in DataLoader(ds, batch_size=5, shuffle=False, num_workers=workers):
            xs.append(x)
            ys.append(y)
        assert torch.equal(torch.cat(xs), ref)
        assert torch.equal(torch.cat(ys), ds.labels)


def test_sampler_disjoint_and_reshuffled():
    n, world = 23, 3
    parts = [list(ShardSampler(n, world, r, seed=5)) for r in range(world)]
    flat = [i for p in parts for i in p]
    assert len(flat) == len(set(flat)) == (n // world) * world
    assert all(len(p) == n // world == len(ShardSampler(n, world, 0)) for p in parts)
    s = ShardSampler(n, world, 0, seed=5)
    e0 = list(s)
    s.set_epoch(1)
    assert list(s) != e0
    s.set_epoch(0)
    assert list(s) == e0
    uneven = [list(ShardSampler(n, world, r, even=False)) for r in range(world)]
    assert sorted(i for p in uneven for i in p) == list(range(n))


def test_raw_uint8(data_shards):
    raw = ShardDataset(data_shards, "val", raw=True)
    ref = read_split(data_shards, "val")
    x, y = raw[0]
    assert x.dtype == torch.uint8 and torch.equal(x, torch.from_numpy(ref["images"][0]))
    batch = raw.__getitems__([1, 0])
    assert torch.equal(batch[1][0], x) and int(batch[0][1]) == ref["labels"][1]


def test_cache_gives_the_same_items_and_decodes_each_shard_once(data_shards):
    from hpcgan.data.dataset import ShardDataset

    plain = ShardDataset(data_shards, "train", cache=False)
    cached = ShardDataset(data_shards, "train", cache=True)
    auto = ShardDataset(data_shards, "train")
    assert auto.cache is True  # a small split is cached by default
    idx = list(range(len(plain)))[::-1]
    for a, b in zip(plain.__getitems__(idx), cached.__getitems__(idx)):
        assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert torch.equal(plain[3][0], cached[3][0])
    assert all(isinstance(h, np.ndarray) for h in cached._handles.values())
    assert not any(isinstance(h, np.ndarray) for h in plain._handles.values())
    with pytest.raises(HpcganError, match="cache"):
        ShardDataset(data_shards, "train", cache="yes")
