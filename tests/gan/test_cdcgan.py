"""The conditional DCGAN baseline: architecture, schedule, training, resume and generation."""

from __future__ import annotations

import pytest
import torch

from hpcgan.data.shards import read_split, verify
from hpcgan.gan.cdcgan import CDCDiscriminator, CDCGANLoss, CDCGenerator
from hpcgan.gan.generate import GenerateConfig, generate
from hpcgan.gan.snapshot import list_snapshots, load_snapshot
from hpcgan.gan.train import train

from .helpers import tiny_train_config


@pytest.mark.parametrize("res", [32, 64])
def test_shapes_and_layers(res):
    torch.manual_seed(0)
    G, D = CDCGenerator(c_dim=2, img_resolution=res), CDCDiscriminator(c_dim=2, img_resolution=res)
    z, c = torch.randn(4, 100), torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1]), 2).float()
    img = G(z, c)
    assert img.shape == (4, 1, res, res) and img.abs().max() <= 1  # Tanh
    assert isinstance(G.net[-1], torch.nn.Tanh)
    convt = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert all(m.kernel_size == (4, 4) for m in convt) and convt[-1].in_channels == 64
    assert D(img, c).shape == (4, 1) and ((D.prob(img, c) > 0) & (D.prob(img, c) < 1)).all()
    convs = [m for m in D.features if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in D.features if isinstance(m, torch.nn.BatchNorm2d)]
    assert convs[0].in_channels == 2 and len(convs) == 4 and len(bns) == 3  # no BN on the first conv
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in D.features)
    with pytest.raises(ValueError):
        G(z, None)


def test_d_every_schedule():
    G, D = CDCGenerator(img_resolution=32), CDCDiscriminator(img_resolution=32)
    loss = CDCGANLoss(G, D, d_every=10)
    assert loss.phases_for_step(0) == ["Dmain", "Gmain"] and loss.phases_for_step(3) == ["Gmain"]
    assert loss.phases_for_step(20) == ["Dmain", "Gmain"]


def test_cdcgan_trains_resumes_and_generates(gan_shards, tmp_path):
    kw = dict(arch="cdcgan", cond=True, batch=4, kimg=0.016, tick_kimg=0.008, aug="noaug", cdcgan_filters=16,
              cdcgan_d_every=2)
    r = train(tiny_train_config(gan_shards, tmp_path, **kw))
    run = r["run_dir"]
    snap = load_snapshot(r["snapshot"])
    assert snap["arch"] == "cdcgan" and snap["counters"]["step"] == 4
    assert snap["opt_G"]["param_groups"][0]["lr"] == 2e-4 and snap["opt_G"]["param_groups"][0]["betas"][0] == 0.5
    r2 = train(tiny_train_config(gan_shards, tmp_path, **{**kw, "kimg": 0.024}, resume=run))
    assert r2["run_dir"] == run and load_snapshot(r2["snapshot"])["counters"]["step"] == 6
    assert len(list_snapshots(run)) >= 3
    out = tmp_path / "syn"
    generate(GenerateConfig(network=r2["snapshot"], out=str(out), n=2, png=True))
    assert verify(out) == [] and list(read_split(out, "train")["labels"]) == [0, 0, 1, 1]
    assert (out / "grid.png").is_file()
