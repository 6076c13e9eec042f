"""StyleGAN2 networks: shapes, conditioning, truncation, native vs reference ops, gradients."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from hpcgan.gan import Discriminator, FullyConnected, Generator, MinibatchStd, set_impl
from hpcgan.gan.layers import Conv2d
from hpcgan.gan.networks import MappingNetwork, channels_at

from .helpers import W_DIM, Z_DIM, make_pair, onehot


@pytest.mark.parametrize(
    "res,channel_base,channel_max",
    [(32, 512, 32), (32, 256, 16), (64, 512, 32)],
)
def test_shapes_and_channels(res, channel_base, channel_max):
    torch.manual_seed(0)
    G = Generator(z_dim=Z_DIM, c_dim=0, w_dim=W_DIM, img_resolution=res, channel_base=channel_base,
                  channel_max=channel_max, mapping_layers=2)
    D = Discriminator(c_dim=0, img_resolution=res, channel_base=channel_base, channel_max=channel_max,
                      mapping_layers=2)
    log2 = int(math.log2(res))
    assert G.num_ws == 2 * log2 - 2
    # One block per resolution 4..res, with channel counts from channel_base / channel_max.
    assert [b.resolution for b in G.synthesis.blocks] == [2 ** i for i in range(2, log2 + 1)]
    for b in G.synthesis.blocks:
        assert b.out_channels == min(channel_base // b.resolution, channel_max)
    assert [b.resolution for b in D.blocks] == [2 ** i for i in range(log2, 2, -1)]
    assert D.b4.in_channels == channels_at(4, channel_base, channel_max)
    z = torch.randn(3, Z_DIM)
    ws = G.mapping(z, None)
    assert ws.shape == (3, G.num_ws, W_DIM)
    img = G(z)
    assert img.shape == (3, 1, res, res)
    assert torch.isfinite(img).all()
    logits = D(img)
    assert logits.shape == (3, 1)
    assert torch.isfinite(logits).all()


def test_multichannel_and_invalid_config():
    G = Generator(z_dim=8, w_dim=8, img_resolution=32, img_channels=3, channel_base=128, channel_max=8, mapping_layers=1)
    D = Discriminator(img_resolution=32, img_channels=3, channel_base=128, channel_max=8, mapping_layers=1)
    img = G(torch.randn(2, 8))
    assert img.shape == (2, 3, 32, 32)
    assert D(img).shape == (2, 1)
    for bad in (16, 48, 2048):
        with pytest.raises(ValueError, match="power of two"):
            Generator(z_dim=8, w_dim=8, img_resolution=bad)
    with pytest.raises(ValueError, match="impl"):
        Generator(z_dim=8, w_dim=8, img_resolution=32, impl="cuda")
    with pytest.raises(ValueError, match=r"\[N, 3, 32, 32\]"):
        D(torch.zeros(2, 1, 32, 32))  # 1 channel into a 3-channel D


def test_conditioning(gan_pair_cond):
    G, D = gan_pair_cond
    z = torch.randn(4, Z_DIM).repeat(2, 1)
    c = onehot([0] * 4 + [1] * 4, 2)
    img = G(z, c, noise_mode="const")
    # Same z, different class: different images.
    diff = (img[:4] - img[4:]).abs().flatten(1).amax(dim=1)
    assert (diff > 1e-3).all()
    # The discriminator's output depends on the label of the same image.
    la, lb = D(img[:4], c[:4]), D(img[:4], c[4:])
    assert ((la - lb).abs() > 1e-5).all()
    with pytest.raises(ValueError, match="conditional"):
        G(z, None)
    G0, D0 = make_pair(c_dim=0)
    with pytest.raises(ValueError, match="unconditional"):
        G0(z, c)
    assert G0(z, None).shape == G0(z, torch.zeros(8, 0)).shape  # an empty label is accepted


def test_noise_modes(gan_pair_uncond):
    G, _ = gan_pair_uncond
    z = torch.randn(2, Z_DIM)
    a, b = G(z, noise_mode="const"), G(z, noise_mode="const")
    assert torch.equal(a, b)
    r1, r2 = G(z, noise_mode="random"), G(z, noise_mode="random")
    assert not torch.allclose(r1, r2)
    n = G(z, noise_mode="none")
    assert not torch.allclose(n, a)
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, noise_mode="zero")


def test_w_avg_tracking_and_truncation(gan_pair_cond):
    G, _ = gan_pair_cond
    m = G.mapping
    assert torch.count_nonzero(m.w_avg) == 0
    z, c = torch.randn(6, Z_DIM), onehot([0, 1, 0, 1, 0, 1], 2)
    w = m(z, c, update_emas=True)[:, 0]
    assert torch.allclose(m.w_avg, (1 - m.w_avg_beta) * w.mean(dim=0), atol=1e-6)
    m(z, c)  # without update_emas: unchanged
    assert torch.allclose(m.w_avg, (1 - m.w_avg_beta) * w.mean(dim=0), atol=1e-6)
    with torch.no_grad():
        m.w_avg.copy_(torch.randn(W_DIM))
    # psi = 0: every w is w_avg.
    ws0 = m(z, c, truncation_psi=0)
    assert torch.allclose(ws0, m.w_avg.expand_as(ws0))
    # psi = 0.5 with a cutoff: the first ws are halfway, the others untouched.
    full = m(z, c)
    half = m(z, c, truncation_psi=0.5, truncation_cutoff=3)
    assert torch.allclose(half[:, :3], (full[:, :3] + m.w_avg) / 2, atol=1e-6)
    assert torch.equal(half[:, 3:], full[:, 3:])
    # The generator at psi = 0 ignores z (const noise): one image for all latents of a class.
    img = G(torch.randn(3, Z_DIM), onehot([1, 1, 1], 2), truncation_psi=0, noise_mode="const")
    assert torch.allclose(img[0], img[1], atol=1e-5) and torch.allclose(img[0], img[2], atol=1e-5)


@pytest.mark.parametrize("c_dim", [0, 3])
def test_native_and_ref_agree(c_dim):
    G, D = make_pair(c_dim=c_dim, impl="native")
    Gr, Dr = set_impl(copy.deepcopy(G), "ref"), set_impl(copy.deepcopy(D), "ref")
    assert all(m.impl == "ref" for m in Gr.modules() if hasattr(m, "impl"))
    z = torch.randn(4, Z_DIM)
    c = onehot([0, 1, 2, 0], 3) if c_dim else None
    img, img_r = G(z, c, noise_mode="const"), Gr(z, c, noise_mode="const")
    assert torch.allclose(img, img_r, rtol=1e-4, atol=1e-4 * img_r.abs().max().item())
    logits, logits_r = D(img_r, c), Dr(img_r, c)
    assert torch.allclose(logits, logits_r, rtol=1e-4, atol=1e-5)


def test_gradients_reach_every_parameter(gan_pair_cond):
    G, D = gan_pair_cond
    z, c = torch.randn(4, Z_DIM), onehot([0, 1, 1, 0], 2)
    img = G(z, c, noise_mode="random")
    D(img, c).square().sum().backward()
    for net in (G, D):
        for name, p in net.named_parameters():
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def _mbstd_loop(x, group_size):
    """Naive minibatch stddev: sample i is in group i % M."""
    N = x.shape[0]
    G = min(group_size, N)
    M = -(-N // G)
    stats = []
    for m in range(M):
        members = x[m::M]
        std = members.std(dim=0, unbiased=False) if len(members) > 1 else torch.zeros_like(members[0])
        stats.append((std.square() + 1e-8).sqrt().mean())
    return torch.stack([stats[i % M] for i in range(N)])


@pytest.mark.parametrize("n", [8, 4, 5, 6, 3, 1])
def test_minibatch_std_groups(n):
    torch.manual_seed(n)
    x = torch.randn(n, 6, 4, 4, dtype=torch.float64)
    y = MinibatchStd(group_size=4, num_channels=1)(x)
    assert y.shape == (n, 7, 4, 4)
    assert torch.equal(y[:, :6], x)
    assert torch.allclose(y[:, 6], _mbstd_loop(x, 4)[:, None, None].expand(n, 4, 4), atol=1e-6)


def test_discriminator_odd_batch(gan_pair_uncond):
    G, D = gan_pair_uncond
    for n in (1, 3, 5, 6):
        assert D(torch.randn(n, 1, 32, 32)).shape == (n, 1)


def test_equalized_learning_rate():
    torch.manual_seed(0)
    # The effective weight has std 1/sqrt(fan_in) whatever the lr multiplier.
    for lr in (1.0, 0.01):
        fc = FullyConnected(256, 256, lr_multiplier=lr, bias_init=1.0)
        w_eff = fc.weight * fc.weight_gain
        assert abs(w_eff.std().item() * 16 - 1) < 0.05
        assert torch.allclose(fc.bias * fc.bias_gain, torch.ones(256))
        x = torch.randn(5, 256)
        assert torch.allclose(fc(x), x @ w_eff.t() + 1, atol=1e-4)
    conv = Conv2d(8, 4, 3, down=2, activation="lrelu")
    assert conv(torch.randn(2, 8, 16, 16)).shape == (2, 4, 8, 8)
    assert Conv2d(8, 4, 1, down=2, bias=False)(torch.randn(2, 8, 16, 16)).shape == (2, 4, 8, 8)
    assert Conv2d(8, 4, 3, up=2)(torch.randn(2, 8, 8, 8)).shape == (2, 4, 16, 16)


def test_mapping_validation():
    with pytest.raises(ValueError):
        MappingNetwork(0, 0, 8, num_ws=2)
    m = MappingNetwork(0, 3, 8, num_ws=None, num_layers=1, w_avg_beta=None)
    assert m(None, onehot([0, 2], 3)).shape == (2, 8)
    with pytest.raises(ValueError, match="truncation"):
        m(None, onehot([0, 2], 3), truncation_psi=0.5)
