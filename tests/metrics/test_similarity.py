import math

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from hpcgan.data.shards import read_split
from hpcgan.metrics.similarity import (compute_similarity, nearest_distances, pairwise_nearest, psnr, rmse, sam, sre,
                                       ssim)


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


def test_rmse_psnr_hand_values():
    x = torch.zeros(1, 1, 2, 2)
    y = torch.full((1, 1, 2, 2), 0.5)
    assert rmse(x, y).item() == pytest.approx(0.5)
    assert psnr(x, y).item() == pytest.approx(10 * math.log10(1 / 0.25))  # 6.0206 dB
    # one pixel off by 0.2 of four: MSE 0.01 -> RMSE 0.1, PSNR 20 dB
    y2 = x.clone()
    y2[0, 0, 0, 0] = 0.2
    assert rmse(x, y2).item() == pytest.approx(0.1)
    assert psnr(x, y2).item() == pytest.approx(20.0)
    assert psnr(x, y2, data_range=2.0).item() == pytest.approx(20.0 + 20 * math.log10(2))
    assert psnr(y, y).item() == math.inf and rmse(y, y).item() == 0.0


def test_sre_hand_values():
    x = torch.full((2, 1, 4, 4), 0.5)
    y = x + 0.1  # MSE 0.01, mean(x)^2 = 0.25 -> 10 log10(25)
    v = sre(x, y)
    assert v.shape == (2,) and v[0].item() == pytest.approx(10 * math.log10(25.0))
    assert sre(x, x).tolist() == [math.inf, math.inf]
    # brighter reference, same error: SRE rises by 20 log10(2); it is relative to the reference's mean
    assert sre(2 * x, 2 * x + 0.1)[0].item() == pytest.approx(10 * math.log10(100.0))


def test_sam_hand_values():
    x = _t([[[[0.2, 0.7], [0.1, 0.9]]]])
    assert sam(x, 3 * x).item() == pytest.approx(0.0, abs=1e-6)
    assert sam(x, 2 * x).item() == 0.0
    a = _t([[[[1.0, 0.0]]]])
    assert sam(a, _t([[[[0.0, 1.0]]]])).item() == pytest.approx(90.0)
    assert sam(a, _t([[[[1.0, 1.0]]]])).item() == pytest.approx(45.0)
    assert sam(a, torch.zeros_like(a)).item() == 90.0
    # against arccos on random images
    g = torch.Generator().manual_seed(0)
    p, q = torch.rand(3, 1, 5, 5, generator=g), torch.rand(3, 1, 5, 5, generator=g)
    pf, qf = p.flatten(1).double().numpy(), q.flatten(1).double().numpy()
    ref = np.degrees(np.arccos((pf * qf).sum(1) / np.linalg.norm(pf, axis=1) / np.linalg.norm(qf, axis=1)))
    assert np.allclose(sam(p, q).numpy(), ref, atol=1e-9)


def _ssim_numpy(x: np.ndarray, y: np.ndarray) -> float:
    """Independent SSIM: explicit 2-D Gaussian window, scipy 'valid' convolution."""
    r = np.arange(11) - 5.0
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()

    def f(a):
        return convolve2d(a, w, mode="valid")

    c1, c2 = 0.01**2, 0.03**2
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    return float((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


def test_ssim_identical_constant_and_independent():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 20, 24, generator=g)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    # constant images: only the luminance term remains, (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.3, 0.6, 0.01**2
    v = ssim(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)).item()
    assert v == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)
    y = (x + 0.2 * torch.rand(2, 1, 20, 24, generator=g)).clamp(0, 1)
    got = ssim(x, y)
    for i in range(2):
        assert got[i].item() == pytest.approx(_ssim_numpy(x[i, 0].double().numpy(), y[i, 0].double().numpy()), abs=1e-10)
    assert ssim(x[0], y[0]).shape == (1,)  # [C, H, W] is one pair
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_compute_similarity_uint8_and_shapes():
    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 256, (3, 1, 16, 16), generator=g, dtype=torch.uint8)
    b = torch.randint(0, 256, (3, 1, 16, 16), generator=g, dtype=torch.uint8)
    out = compute_similarity(a, b, ("rmse", "psnr"), batch=2)
    assert torch.allclose(out["rmse"], rmse(a.float() / 255, b.float() / 255))
    assert out["psnr"].shape == (3,)
    with pytest.raises(ValueError, match="same shape"):
        rmse(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="unknown"):
        compute_similarity(a, b, ("nope",))


def test_nearest_distances_brute_force():
    g = torch.Generator().manual_seed(3)
    pool = torch.randint(0, 256, (23, 1, 8, 8), generator=g, dtype=torch.uint8)
    query = torch.cat([pool[[5, 17]], torch.randint(0, 256, (7, 1, 8, 8), generator=g, dtype=torch.uint8)])
    idx, dist = nearest_distances(query, pool, "rmse", chunk=4)
    q, p = query.double().flatten(1) / 255, pool.double().flatten(1) / 255
    d = ((q[:, None] - p[None]) ** 2).mean(-1).sqrt()
    assert torch.equal(idx, d.argmin(1)) and torch.allclose(dist, d.min(1).values, atol=1e-12)
    assert idx[:2].tolist() == [5, 17] and dist[:2].tolist() == [0.0, 0.0]
    fi, fd = nearest_distances(q * 10, p * 10, "feature", chunk=5)
    assert torch.equal(fi, idx) and torch.allclose(fd, torch.cdist(q * 10, p * 10).min(1).values)


def test_memorisation_flags_copies(metrics_real_shards):
    train = torch.from_numpy(read_split(metrics_real_shards, "train")["images"])
    test = torch.from_numpy(read_split(metrics_real_shards, "test")["images"])
    honest = pairwise_nearest(test, train, real_test=test)  # new real images: the reference itself
    assert honest["summary"]["near_copies"] == 0 and not honest["summary"]["flagged"]
    assert honest["summary"]["fraction_closer_than_real_median"] == pytest.approx(0.5)
    # a generator that copies three training images (one slightly noisy) among new images
    noisy = (train[7].int() + torch.randint(-1, 2, train[7].shape)).clamp(0, 255).to(torch.uint8)
    fake = torch.cat([train[[2, 11]], noisy[None], test[:3]])
    res = pairwise_nearest(fake, train, real_test=test)
    assert res["index"][:3].tolist() == [2, 11, 7]
    assert res["distance"][:2].tolist() == [0.0, 0.0] and res["distance"][2] < 0.01
    s = res["summary"]
    assert s["flagged"] and s["near_copies"] == 3 and s["near_copy_fraction"] == pytest.approx(0.5)
    assert s["n_generated"] == 6 and s["n_train"] == len(train) and s["n_test"] == len(test)
    assert 0 < s["near_copy_threshold"] < s["reference_median"]
    assert "summary" not in pairwise_nearest(fake, train)
