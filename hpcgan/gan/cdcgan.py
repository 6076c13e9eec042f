"""The conditional DCGAN baseline of the second study (``hpcgan train-gan --arch cdcgan``).

Generator (:class:`CDCGenerator`): the noise is projected by a linear layer to a
4x4 map (batch norm, ReLU); the class label goes through an embedding and a
linear layer to one 4x4 map; both are concatenated, then transposed
convolutions (4x4 kernels, stride 2) with batch norm and ReLU double the size
until the last one, which outputs ``img_channels`` with Tanh, so images are in
[-1, 1]. The last hidden layer has ``filters`` (64) channels, each earlier one
twice as many (at most 8x).

Discriminator (:class:`CDCDiscriminator`): the label embedding is mapped to one
image-sized plane and concatenated to the image; a 4x4 stride-2 convolution with
LeakyReLU(0.2) (no batch norm), three conv-BN-LeakyReLU blocks (2x, 4x, 8x
``filters``), flatten, dropout 0.5, a linear layer (no batch norm) and a sigmoid.
``forward`` returns the logit (the sigmoid's input); the loss applies the
sigmoid inside binary cross-entropy (the same function, computed stably);
:meth:`CDCDiscriminator.prob` returns the probability.

With ``c_dim=0`` both networks are the unconditional DCGAN (single-class training).

:class:`CDCGANLoss` has the interface of :class:`hpcgan.gan.loss.StyleGAN2Loss`
that the training loop uses: phases ``Dmain`` (BCE on reals as 1, fakes as 0)
and ``Gmain`` (BCE on fakes as 1); with ``d_every=10`` D is updated once per ten
G steps, the study's schedule. Adam lr 2e-4, beta1 0.5, batch 4 are the
preset's (``configs/gan/cdcgan.yaml``) and TrainConfig's cdcgan_* defaults.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hpcgan.gan.loss import NonFiniteLossError

__all__ = ["CDCGenerator", "CDCDiscriminator", "CDCGANLoss"]


def _check_res(img_resolution: int) -> int:
    if not isinstance(img_resolution, int) or img_resolution < 16 or img_resolution & (img_resolution - 1):
        raise ValueError(f"img_resolution must be a power of two >= 16, got {img_resolution!r}")
    return img_resolution


def _labels(c: torch.Tensor | None, c_dim: int, n: int) -> torch.Tensor | None:
    if c_dim == 0:
        if c is not None and c.numel() != 0:
            raise ValueError(f"the network is unconditional (c_dim=0) but got labels of shape {tuple(c.shape)}")
        return None
    if c is None or c.ndim != 2 or c.shape != (n, c_dim):
        raise ValueError(f"c must have shape [{n}, {c_dim}] (one-hot), got {None if c is None else tuple(c.shape)}")
    return c


class CDCGenerator(nn.Module):
    """``forward(z [N, z_dim], c [N, c_dim] one-hot or None) -> img [N, img_channels, R, R]`` in [-1, 1].

    Accepts (and ignores) StyleGAN2's ``noise_mode``; ``truncation_psi`` must be 1.
    """

    def __init__(self, z_dim: int = 100, c_dim: int = 0, img_resolution: int = 32, img_channels: int = 1,
                 filters: int = 64, embed: int = 50):
        super().__init__()
        self.z_dim, self.c_dim = z_dim, c_dim
        self.img_resolution, self.img_channels = _check_res(img_resolution), img_channels
        n_up = int(math.log2(img_resolution)) - 2
        chans = [filters * min(8, 2 ** (n_up - 1 - i)) for i in range(n_up)]  # input channels of each up-block
        self.project = nn.Sequential(nn.Linear(z_dim, chans[0] * 16, bias=False), nn.Unflatten(1, (chans[0], 4, 4)),  # -> [N, chans[0], 4, 4]
                                     nn.BatchNorm2d(chans[0]), nn.ReLU(True))
        extra = 0
        if c_dim > 0:
            self.embed = nn.Linear(c_dim, embed, bias=False)  # == nn.Embedding on one-hot labels
            self.label_map = nn.Sequential(nn.Linear(embed, 16), nn.Unflatten(1, (1, 4, 4)))  # [N, embed] -> [N, 1, 4, 4]
            extra = 1
        else:
            self.embed = self.label_map = None
        layers: list[nn.Module] = []
        cin = chans[0] + extra
        for i in range(n_up):
            if i < n_up - 1:
                layers += [nn.ConvTranspose2d(cin, chans[i + 1], 4, 2, 1, bias=False), nn.BatchNorm2d(chans[i + 1]),
                           nn.ReLU(True)]
                cin = chans[i + 1]
            else:
                layers += [nn.ConvTranspose2d(cin, img_channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                noise_mode: str = "random", **_ignored) -> torch.Tensor:  # noqa: ARG002 - the StyleGAN2 generator's signature
        if truncation_psi != 1:
            raise ValueError("the cDCGAN has no truncation; use truncation_psi=1")
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {tuple(z.shape)}")
        c = _labels(c, self.c_dim, z.shape[0])
        x = self.project(z)  # [N, chans[0], 4, 4]
        if c is not None:
            x = torch.cat([x, self.label_map(self.embed(c.to(x.dtype)))], dim=1)  # [N, chans[0] + 1, 4, 4]
        return self.net(x)  # [N, img_channels, R, R]


class CDCDiscriminator(nn.Module):
    """``forward(img, c=None) -> logits [N, 1]``; :meth:`prob` gives ``sigmoid(logits)``."""

    def __init__(self, c_dim: int = 0, img_resolution: int = 32, img_channels: int = 1, filters: int = 64,
                 embed: int = 50, dropout: float = 0.5):
        super().__init__()
        self.c_dim, self.img_resolution, self.img_channels = c_dim, _check_res(img_resolution), img_channels
        R = img_resolution
        if c_dim > 0:
            self.embed = nn.Linear(c_dim, embed, bias=False)
            self.label_map = nn.Sequential(nn.Linear(embed, R * R), nn.Unflatten(1, (1, R, R)))  # [N, embed] -> [N, 1, R, R]
        else:
            self.embed = self.label_map = None
        cin = img_channels + (1 if c_dim > 0 else 0)
        f = filters
        self.features = nn.Sequential(
            nn.Conv2d(cin, f, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(f, 2 * f, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * f), nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * f, 4 * f, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * f), nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * f, 8 * f, 4, 2, 1, bias=False), nn.BatchNorm2d(8 * f), nn.LeakyReLU(0.2, True),
            nn.Flatten(), nn.Dropout(dropout),
        )
        self.out = nn.Linear(8 * f * (R // 16) ** 2, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        R = self.img_resolution
        if img.ndim != 4 or img.shape[1:] != (self.img_channels, R, R):
            raise ValueError(f"img must have shape [N, {self.img_channels}, {R}, {R}], got {tuple(img.shape)}")
        c = _labels(c, self.c_dim, img.shape[0])
        x = img  # [N, C, R, R]
        if c is not None:
            x = torch.cat([x, self.label_map(self.embed(c.to(img.dtype)))], dim=1)  # [N, C + 1, R, R]
        return self.out(self.features(x))  # [N, 8f * (R/16)^2] -> [N, 1]

    def prob(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.forward(img, c))


class CDCGANLoss:
    """Binary cross-entropy GAN loss with the training loop's phase interface.

    ``phases_for_step(step)``: ``["Dmain", "Gmain"]`` when ``step % d_every == 0``, else ``["Gmain"]``.
    ``accumulate_gradients(phase, real_img, real_c, gen_z, gen_c, gain=1.0) -> stats``.
    """

    def __init__(self, G: nn.Module, D: nn.Module, d_every: int = 1, check_finite: bool = True):
        if d_every < 1:
            raise ValueError(f"d_every must be >= 1, got {d_every}")
        self.G, self.D, self.d_every, self.check_finite = G, D, int(d_every), check_finite

    def phases_for_step(self, step: int) -> list[str]:
        return (["Dmain"] if step % self.d_every == 0 else []) + ["Gmain"]

    def _check(self, term: str, phase: str, loss: torch.Tensor, stats: dict) -> None:
        v = float(loss.detach())
        stats[term] = v
        if self.check_finite and not math.isfinite(v):
            raise NonFiniteLossError(term, phase, v)

    def accumulate_gradients(self, phase: str, real_img: torch.Tensor, real_c: torch.Tensor | None,
                             gen_z: torch.Tensor, gen_c: torch.Tensor | None, gain: float = 1.0) -> dict[str, float]:
        stats: dict[str, float] = {}
        if phase == "Gmain":
            self.D.requires_grad_(False)
            try:
                logits = self.D(self.G(gen_z, gen_c), gen_c)
                loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
                stats["scores_fake"] = float(logits.detach().mean())
                self._check("loss_G", phase, loss, stats)
                loss.mul(gain).backward()
            finally:
                self.D.requires_grad_(True)
        elif phase == "Dmain":
            with torch.no_grad():
                fake = self.G(gen_z, gen_c)
            fake_logits = self.D(fake, gen_c)
            real_logits = self.D(real_img, real_c)
            loss_fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
            loss_real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            self._check("loss_Dgen", phase, loss_fake, stats)
            self._check("loss_Dreal", phase, loss_real, stats)
            stats["loss_D"] = stats["loss_Dgen"] + stats["loss_Dreal"]
            stats["scores_fake"] = float(fake_logits.detach().mean())
            stats["scores_real"] = float(real_logits.detach().mean())
            (loss_fake + loss_real).mul(gain).backward()
        else:
            raise ValueError(f"the cDCGAN has phases Gmain and Dmain, got {phase!r}")
        return stats

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
