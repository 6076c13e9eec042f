"""Like with like: a COVID-only generator is scored against COVID images only, and the memorisation
check searches the whole training split (real X-rays of ../shared/data/cxr/kaggle224 at 32 px)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hpcgan.metrics import similarity
from hpcgan.metrics.compare import compare_shards
from hpcgan.metrics.fid import feature_stats, frechet_distance, load_feature_net, subset_indices
from hpcgan.metrics.realset import RealSet

from .conftest import load_pngs, write_shard_set, write_splits

N_TRAIN, N_TEST, N_FAKE = 24, 8, 10  # per class (train, test), COVID "generated" images
RES = 32


@pytest.fixture(scope="module")
def metrics_cxr(data_cxr_root, tmp_path_factory) -> dict:
    """Real COVID + Normal shards (train, test) and COVID-only 'generated' shards of other COVID X-rays."""
    root = data_cxr_root / "kaggle224"
    covid = sorted((root / "COVID").glob("*.png"))[::9][:N_TRAIN + N_TEST + N_FAKE]
    normal = sorted((root / "Normal").glob("*.png"))[::9][:N_TRAIN + N_TEST]
    c, n = load_pngs(covid, RES), load_pngs(normal, RES)
    base = tmp_path_factory.mktemp("metrics_cxr")
    real = write_splits(base / "real", {
        "train": (np.concatenate([c[:N_TRAIN], n[:N_TRAIN]]), [0] * N_TRAIN + [1] * N_TRAIN),
        "test": (np.concatenate([c[N_TRAIN:N_TRAIN + N_TEST], n[N_TRAIN:]]), [0] * N_TEST + [1] * N_TEST),
    }, class_names=("COVID", "Normal"))
    fake_imgs = c[N_TRAIN + N_TEST:]
    fake = write_shard_set(base / "fake", fake_imgs, [0] * N_FAKE, class_names=("COVID",))  # a generate-style set
    return {"real": real, "fake": fake, "covid": c, "normal": n, "fake_imgs": fake_imgs}


def test_covid_only_set_is_scored_against_covid_only(metrics_cxr, metrics_tiny_net, tmp_path):
    net = load_feature_net(str(metrics_tiny_net))
    res = compare_shards(metrics_cxr["real"], metrics_cxr["fake"], metrics="fid,kid,rmse,ssim,memorisation",
                         feature_net=str(metrics_tiny_net), cache_dir=tmp_path, kid_subsets=5, fid_method="sqrtm")
    assert res["classes"] == ["COVID"] and res["n"]["real"] == N_TEST and res["n"]["train"] == N_TRAIN
    # FID against the COVID test images, computed here from features of exactly those images
    f_fake = net.features(torch.from_numpy(metrics_cxr["fake_imgs"]))
    test_covid = torch.from_numpy(metrics_cxr["covid"][N_TRAIN:N_TRAIN + N_TEST])
    test_all = torch.cat([test_covid, torch.from_numpy(metrics_cxr["normal"][N_TRAIN:])])
    want = frechet_distance(*feature_stats(f_fake), *feature_stats(net.features(test_covid)))
    mixed = frechet_distance(*feature_stats(f_fake), *feature_stats(net.features(test_all)))  # the old behaviour
    assert res["generated"]["fid"] == pytest.approx(want, rel=1e-6)
    assert abs(mixed - want) > 0.05 * want, (mixed, want)  # the class filter matters on these images
    assert res["generated"]["fid_label"] == f"FID ({N_FAKE} gen / all {N_TEST} real)"
    # the baseline: as many COVID training images as generated ones, against the same COVID test images
    assert res["n"]["baseline_per_class"] == {"COVID": N_FAKE}
    assert res["baseline"]["fid_label"] == f"FID ({N_FAKE} real train / all {N_TEST} real)"
    # pixel metrics: each generated image against its nearest COVID test image
    idx, dist = similarity.nearest_distances(torch.from_numpy(metrics_cxr["fake_imgs"]), test_covid)
    assert res["generated"]["rmse"]["mean"] == pytest.approx(float(dist.mean()), rel=1e-9)
    # an explicit class the generated set lacks is a clear error
    from hpcgan.errors import HpcganError

    with pytest.raises(HpcganError, match="no generated images of"):
        compare_shards(metrics_cxr["real"], metrics_cxr["fake"], metrics="rmse", classes="Normal")


def test_covid_only_generator_during_training_and_after(metrics_cxr, metrics_tiny_net, tmp_path):
    """FIDEvaluator in train-gan and `hpcgan metrics` on its `hpcgan generate` output see COVID images only."""
    from gan.helpers import tiny_train_config

    from hpcgan.gan.generate import GenerateConfig, generate
    from hpcgan.gan.train import train

    cfg = tiny_train_config(metrics_cxr["real"], tmp_path / "runs", classes=["COVID"], kimg=0.008, aug="noaug",
                            metric_every=1, fid_num_fake=12, feature_net=str(metrics_tiny_net),
                            fid_cache_dir=str(tmp_path / "cache"))
    run = train(cfg)
    recs = [json.loads(x) for x in (Path(run["run_dir"]) / "stats.jsonl").read_text().splitlines()]
    fids = [r for r in recs if "fid_key" in r]
    assert fids and all(r["fid_classes"] == ["COVID"] and r["fid_n"] == [12, N_TRAIN] for r in fids)
    assert fids[-1]["fid_key"] == "fid12_full" and np.isfinite(fids[-1]["fid12_full"])
    assert fids[-1]["fid_label"] == f"FID (12 gen / all {N_TRAIN} real)"
    gen = tmp_path / "gen"
    generate(GenerateConfig(network=run["snapshot"], out=str(gen), n=6, device="cpu"))
    res = compare_shards(metrics_cxr["real"], gen, metrics="fid,rmse", feature_net=str(metrics_tiny_net),
                         cache_dir=tmp_path / "cache", baseline=False)
    assert res["classes"] == ["COVID"] and res["n"]["real"] == N_TEST and res["n"]["generated"] == 6


def test_memorisation_finds_a_near_copy_anywhere_in_the_training_split(metrics_cxr, tmp_path):
    """A near copy of a training image outside any ``num``-subset of the pool is found (the pool is never capped)."""
    num = 4
    train_covid = metrics_cxr["covid"][:N_TRAIN]
    old_pool = subset_indices(N_TRAIN, num)  # the pool the capped check searched
    planted = next(i for i in range(N_TRAIN) if i not in old_pool)
    rng = np.random.default_rng(0)
    copy = np.clip(train_covid[planted].astype(np.int16) + rng.integers(-2, 3, train_covid[planted].shape), 0, 255)
    fresh = metrics_cxr["fake_imgs"][:num - 1]
    fake = write_shard_set(tmp_path / "fake", np.concatenate([fresh, copy[None].astype(np.uint8)]), [0] * num,
                           class_names=("COVID",))
    res = compare_shards(metrics_cxr["real"], fake, metrics="memorisation", num=num)
    memo = res["memorisation"]
    assert memo["n_generated"] == num and memo["n_train"] == N_TRAIN  # query capped, pool whole
    assert memo["near_copies"] == 1 and memo["flagged"]
    # the same check restricted to the old subset of the pool misses it
    q = torch.from_numpy(np.concatenate([fresh, copy[None].astype(np.uint8)]))
    _, d_old = similarity.nearest_distances(q, torch.from_numpy(train_covid[old_pool]))
    assert float(d_old[-1]) > memo["near_copy_threshold"]


def test_real_set_value(metrics_cxr):
    s = RealSet.open(metrics_cxr["real"], "test", ["Normal", "COVID"])
    assert s.classes == ("Normal", "COVID") and s.counts == (N_TEST, N_TEST) and s.labels == (1, 0)
    assert s.only("COVID").n == N_TEST and s.other_split("train").counts == (N_TRAIN, N_TRAIN)
    assert len(s.dataset(raw=True)) == 2 * N_TEST
    assert RealSet.open(metrics_cxr["fake"], "train").classes == ("COVID",)
