"""StyleGAN2-ADA on CUDA: the tiny networks against their CPU twins, and a short
training run on the GPU. The `cuda` marker skips them with "no GPU" without one
(HPCGAN_REQUIRE_GPU=1: a failure)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from .helpers import Z_DIM, make_pair, onehot, tiny_train_config

pytestmark = pytest.mark.cuda


def test_networks_on_cuda_match_cpu():
    G, D = make_pair(c_dim=2, seed=4)
    z = torch.randn(4, Z_DIM, generator=torch.Generator().manual_seed(1))
    c = onehot([0, 1, 1, 0], 2)
    img = G(z, c, noise_mode="const")
    logits = D(img, c)
    Gc, Dc = G.cuda(), D.cuda()
    img_c = Gc(z.cuda(), c.cuda(), noise_mode="const")
    torch.testing.assert_close(img_c.cpu(), img, rtol=1e-3, atol=1e-3)  # cuDNN and the CUDA kernels vs the CPU
    torch.testing.assert_close(Dc(img.cuda(), c.cuda()).cpu(), logits, rtol=1e-3, atol=1e-3)


def test_training_steps_on_cuda(gan_shards, tmp_path):
    from hpcgan.gan.train import train

    res = train(tiny_train_config(gan_shards, tmp_path, device="cuda", kimg=0.032, cond=True))
    assert res["status"] == "done" and res["kimg"] == pytest.approx(0.032)
    lines = [json.loads(x) for x in (Path(res["run_dir"]) / "stats.jsonl").read_text().splitlines()]
    assert lines and lines[-1]["nimg"] == 32
    for r in lines:
        assert math.isfinite(r["loss_G"]) and math.isfinite(r["loss_D"])
