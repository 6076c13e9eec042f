"""Small helpers shared by the GAN tests: tiny networks that run in a blink on a CPU."""

from __future__ import annotations

import torch

from hpcgan.gan import Discriminator, Generator

# 32 px, <= 32 channels, 2 mapping layers: the whole G is ~60k parameters.
TINY = dict(img_resolution=32, channel_base=512, channel_max=32)
Z_DIM = W_DIM = 32


def make_pair(c_dim: int = 0, impl: str = "native", seed: int = 0, dtype=torch.float32, noise_strength: float = 0.2,
              **overrides):
    """A tiny (G, D) pair; noise strengths are set non-zero so noise paths matter."""
    torch.manual_seed(seed)
    kw = {**TINY, **overrides}
    G = Generator(z_dim=Z_DIM, c_dim=c_dim, w_dim=W_DIM, mapping_layers=2, impl=impl, **kw)
    D = Discriminator(c_dim=c_dim, mapping_layers=2, impl=impl, **kw)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(noise_strength)
    return G.to(dtype), D.to(dtype)


def onehot(labels, c_dim: int, dtype=torch.float32) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(labels), c_dim).to(dtype)


