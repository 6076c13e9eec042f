"""StyleGAN2(-ADA) training losses.

:class:`StyleGAN2Loss` computes one phase of a training step and accumulates
its gradients (``.backward()``) into the parameters of the network that phase
trains; the optimiser step is the caller's:

========  ===============================================================
phase     what it does
========  ===============================================================
Gmain     non-saturating loss ``softplus(-D(G(z)))`` on G
Greg      path-length regularisation of G (lazy: scaled by ``g_reg_interval``)
Gboth     Gmain and the path-length term in one pass (no lazy scaling)
Dmain     ``softplus(D(G(z))) + softplus(-D(x))`` on D
Dreg      R1 penalty ``gamma/2 * |grad_x D(x)|^2`` on D (lazy: scaled by ``d_reg_interval``)
Dboth     Dmain and R1 in one pass (no lazy scaling)
========  ===============================================================

Lazy regularisation (Karras et al. 2020): the regularisers run every
``*_reg_interval`` steps only, multiplied by the interval so their average
strength is unchanged; :meth:`StyleGAN2Loss.phases_for_step` says which phases
are due at a step, and :func:`lazy_regularization_adam` gives the adjusted Adam
hyper-parameters for the networks trained that way.

During a G phase the discriminator's parameters are frozen (and vice versa),
so each phase only writes the gradients of the network it trains. The
generated images of the D phase are made without a graph through G.

Every loss term is checked before its backward pass: a NaN or inf raises
:class:`NonFiniteLossError`, which names the term and the phase.

Gradients are a different matter: in mixed precision a half-precision backward pass
can overflow in a few values while every loss is finite. :func:`sanitize_gradients`
replaces them as StyleGAN2-ADA does (NaN -> 0, +-inf -> +-1e5) before the optimiser
step and returns how many it replaced, so the training loop can log the count.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from hpcgan.errors import HpcganError

__all__ = ["PHASES", "NonFiniteLossError", "StyleGAN2Loss", "lazy_regularization_adam", "sanitize_gradients"]

PHASES = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")


class NonFiniteLossError(HpcganError, FloatingPointError):
    """A loss term became NaN or infinite; training cannot go on from this state.

    Attributes: ``term`` (e.g. "loss_Dreal"), ``phase`` and ``value``.
    """

    def __init__(self, term: str, phase: str, value: float):
        self.term, self.phase, self.value = term, phase, value
        super().__init__(
            f"the loss term {term} is {value} in training phase {phase}. Training diverged or the data holds "
            "NaN/inf pixels: check the input images, lower the learning rate or raise the R1 gamma, and "
            "resume from the last good snapshot."
        )


def lazy_regularization_adam(lr: float, betas: tuple[float, float], reg_interval: int | None) -> tuple[float, tuple[float, float]]:
    """Adam settings for a network whose regulariser runs every ``reg_interval`` steps.

    As in StyleGAN2: with ``r = reg_interval / (reg_interval + 1)``, returns
    ``(lr * r, (beta1 ** r, beta2 ** r))``; unchanged when ``reg_interval`` is None or 0.
    """
    if not reg_interval:
        return lr, betas
    r = reg_interval / (reg_interval + 1)
    return lr * r, (betas[0] ** r, betas[1] ** r)


GRAD_INF_VALUE = 1e5  # what +-inf gradient values become (StyleGAN2-ADA's choice)


@torch.no_grad()
def sanitize_gradients(params) -> int:
    """Replace NaN gradient values by 0 and +-inf by +-1e5, in place; returns how many were replaced.

    ``params``: an iterable of parameters (those without a gradient are skipped).
    One device sync for the count, whatever the number of parameters.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0
    bad = torch.stack([torch.isfinite(g).logical_not().sum() for g in grads]).sum()
    n = int(bad)
    if n:
        for g in grads:
            torch.nan_to_num(g, nan=0.0, posinf=GRAD_INF_VALUE, neginf=-GRAD_INF_VALUE, out=g)
    return n


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily set requires_grad=False on all parameters of ``module``."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class StyleGAN2Loss:
    """Non-saturating logistic GAN loss with lazy R1, path-length regularisation and style mixing.

    Args:
        G: the generator; anything with ``mapping(z, c, update_emas=...)``
            returning ws ``[N, num_ws, w_dim]`` and ``synthesis(ws)`` returning
            images (a :class:`hpcgan.gan.networks.Generator`; for
            data-parallel training pass an object whose ``mapping`` and
            ``synthesis`` are the wrapped modules).
        D: the discriminator, ``D(img, c) -> [N, 1]`` logits.
        augment_pipe: applied to every image (real and generated) before D; None: none.
        r1_gamma: R1 weight (0 disables R1).
        style_mixing_prob: probability of mixing two latents at a random cutoff (0.9).
        pl_weight: path-length weight (0 disables it).
        pl_batch_shrink: the path-length pass uses ``batch // pl_batch_shrink`` samples.
        pl_decay: decay of the running mean path length ``pl_mean``.
        g_reg_interval, d_reg_interval: lazy regularisation intervals (None or 0: not lazy,
            use the Gboth / Dboth phases).
        check_finite: raise :class:`NonFiniteLossError` on NaN/inf loss terms.

    :meth:`accumulate_gradients` returns a dict of float statistics.
    ``state_dict()`` holds ``pl_mean`` for checkpoints.
    """

    def __init__(self, G: nn.Module, D: nn.Module, augment_pipe: nn.Module | None = None, r1_gamma: float = 10.0,
                 style_mixing_prob: float = 0.9, pl_weight: float = 2.0, pl_batch_shrink: int = 2,
                 pl_decay: float = 0.01, g_reg_interval: int | None = 4, d_reg_interval: int | None = 16,
                 check_finite: bool = True):
        if r1_gamma < 0 or pl_weight < 0:
            raise ValueError(f"r1_gamma and pl_weight must be >= 0, got {r1_gamma}, {pl_weight}")
        if not 0 <= style_mixing_prob <= 1:
            raise ValueError(f"style_mixing_prob must be in [0, 1], got {style_mixing_prob}")
        if pl_batch_shrink < 1:
            raise ValueError(f"pl_batch_shrink must be >= 1, got {pl_batch_shrink}")
        if not 0 <= pl_decay <= 1:
            raise ValueError(f"pl_decay must be in [0, 1], got {pl_decay}")
        for name, v in (("g_reg_interval", g_reg_interval), ("d_reg_interval", d_reg_interval)):
            if v is not None and v < 0:
                raise ValueError(f"{name} must be None or >= 0, got {v}")
        self.G, self.D, self.augment_pipe = G, D, augment_pipe
        self.r1_gamma = float(r1_gamma)
        self.style_mixing_prob = float(style_mixing_prob)
        self.pl_weight = float(pl_weight)
        self.pl_batch_shrink = int(pl_batch_shrink)
        self.pl_decay = float(pl_decay)
        self.g_reg_interval = g_reg_interval or None
        self.d_reg_interval = d_reg_interval or None
        self.check_finite = check_finite
        self.pl_mean = torch.zeros([], device=self._device())

    def _device(self) -> torch.device:
        for p in self.G.parameters() if isinstance(self.G, nn.Module) else ():
            return p.device
        return torch.device("cpu")

    # -- schedule ---------------------------------------------------------

    def phases_for_step(self, step: int) -> list[str]:
        """The phases to run at training step ``step`` (0-based), G phases first.

        Lazy regularisers run at steps 0, interval, 2*interval, ...; without a
        lazy interval the regulariser runs every step inside Gboth / Dboth.
        A disabled regulariser (weight 0) is never scheduled.
        """
        phases = []
        if self.g_reg_interval is None:
            phases.append("Gboth")
        else:
            phases.append("Gmain")
            if self.pl_weight > 0 and step % self.g_reg_interval == 0:
                phases.append("Greg")
        if self.d_reg_interval is None:
            phases.append("Dboth")
        else:
            phases.append("Dmain")
            if self.r1_gamma > 0 and step % self.d_reg_interval == 0:
                phases.append("Dreg")
        return phases

    # -- forward passes -----------------------------------------------------

    def run_G(self, z: torch.Tensor, c: torch.Tensor | None, update_emas: bool = False) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: N802 - the StyleGAN2 names
        """Generate images with style mixing; returns ``(img, ws)``."""
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing_prob > 0 and ws.shape[1] > 1:
            if float(torch.rand([])) < self.style_mixing_prob:
                cutoff = int(torch.randint(1, ws.shape[1], []))
                ws2 = self.G.mapping(torch.randn_like(z), c, update_emas=False)
                ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        img = self.G.synthesis(ws)
        return img, ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:  # noqa: N802
        """Augment (if a pipe is set) and score images; returns logits ``[N, 1]``."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c)

    def _check(self, term: str, phase: str, loss: torch.Tensor, stats: dict, key: str | None = None) -> None:
        v = float(loss.detach().mean())
        stats[key or term] = v
        if self.check_finite and not math.isfinite(v):
            raise NonFiniteLossError(term, phase, v)

    # -- one phase -----------------------------------------------------------

    def accumulate_gradients(self, phase: str, real_img: torch.Tensor, real_c: torch.Tensor | None,
                             gen_z: torch.Tensor, gen_c: torch.Tensor | None, gain: float = 1.0) -> dict[str, float]:
        """Run ``phase`` and accumulate its gradients (``.backward()``), scaled by ``gain``.

        Args:
            phase: one of :data:`PHASES`.
            real_img: ``[N, C, R, R]`` real images in [-1, 1] (used by D phases).
            real_c: ``[N, c_dim]`` labels of the reals (None when unconditional).
            gen_z: ``[M, z_dim]`` latents for the generated images.
            gen_c: ``[M, c_dim]`` labels to generate (None when unconditional).
            gain: extra factor on every gradient of this call (e.g. 1/rounds when
                a batch is split into rounds). The lazy interval scaling of
                Greg/Dreg is applied on top of it automatically.

        Returns a dict of floats: Gmain: ``loss_G``, ``scores_fake``; Greg/Gboth:
        ``pl_penalty``, ``loss_Gpl``, ``pl_mean``; Dmain: ``loss_Dgen``,
        ``loss_Dreal``, ``loss_D``, ``scores_fake``; any phase that scores reals:
        ``scores_real``, ``Dreal_sign`` (mean sign of D on reals, for ADA) and
        ``n_real``; Dreg/Dboth: ``r1_penalty``, ``loss_Dr1``.

        Raises:
            NonFiniteLossError: a loss term is NaN or inf.
        """
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        do_Gmain = phase in ("Gmain", "Gboth")
        do_Dmain = phase in ("Dmain", "Dboth")
        do_Gpl = phase in ("Greg", "Gboth") and self.pl_weight > 0
        do_Dr1 = phase in ("Dreg", "Dboth") and self.r1_gamma > 0
        g_reg_gain = self.g_reg_interval if phase == "Greg" and self.g_reg_interval else 1
        d_reg_gain = self.d_reg_interval if phase == "Dreg" and self.d_reg_interval else 1
        stats: dict[str, float] = {}

        if do_Gmain or do_Gpl:
            with _frozen(self.D):
                # Gmain: maximise D's logits for generated images.
                if do_Gmain:
                    gen_img, _ = self.run_G(gen_z, gen_c, update_emas=True)  # [N, C, R, R]
                    gen_logits = self.run_D(gen_img, gen_c)  # [N, 1]
                    loss_G = F.softplus(-gen_logits)
                    stats["scores_fake"] = float(gen_logits.detach().mean())
                    self._check("loss_Gmain", phase, loss_G, stats, "loss_G")
                    loss_G.mean().mul(gain).backward()
                # Gpl: path-length regularisation (Greg: lazy, scaled by g_reg_interval).
                if do_Gpl:
                    loss_Gpl, gen_img = self._path_length_loss(phase, gen_z, gen_c, stats)
                    (gen_img[:, 0, 0, 0] * 0 + loss_Gpl).mean().mul(gain * g_reg_gain).backward()

        if do_Dmain or do_Dr1:
            with _frozen(self.G if isinstance(self.G, nn.Module) else nn.Module()):
                # Dmain: minimise D's logits for generated images (made without a graph through G).
                if do_Dmain:
                    with torch.no_grad():
                        gen_img, _ = self.run_G(gen_z, gen_c, update_emas=False)  # [N, C, R, R]
                    gen_logits = self.run_D(gen_img, gen_c)  # [N, 1]
                    loss_Dgen = F.softplus(gen_logits)
                    stats["scores_fake"] = float(gen_logits.detach().mean())
                    self._check("loss_Dgen", phase, loss_Dgen, stats)
                    loss_Dgen.mean().mul(gain).backward()

                # Dmain: maximise D's logits for real images. Dr1: R1 penalty on them (Dreg: lazy, scaled by
                # d_reg_interval). One pass over the reals for both; its sign statistic feeds ADA.
                real = real_img.detach().requires_grad_(do_Dr1)  # [N, C, R, R]
                real_logits = self.run_D(real, real_c)  # [N, 1]
                stats["scores_real"] = float(real_logits.detach().mean())
                stats["Dreal_sign"] = float(real_logits.detach().sign().mean())
                stats["n_real"] = float(real_logits.shape[0])
                total = real_logits * 0
                if do_Dmain:
                    loss_Dreal = F.softplus(-real_logits)
                    self._check("loss_Dreal", phase, loss_Dreal, stats)
                    stats["loss_D"] = stats["loss_Dgen"] + stats["loss_Dreal"]
                    total = total + loss_Dreal
                if do_Dr1:
                    (r1_grads,) = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real],
                                                      create_graph=True, only_inputs=True)  # [N, C, R, R]
                    r1_penalty = r1_grads.square().sum(dim=[1, 2, 3])  # [N]
                    loss_Dr1 = r1_penalty * (self.r1_gamma / 2)
                    stats["r1_penalty"] = float(r1_penalty.detach().mean())
                    self._check("loss_Dr1", phase, loss_Dr1, stats)
                    total = total + loss_Dr1 * d_reg_gain
                total.mean().mul(gain).backward()
        return stats

    def _path_length_loss(self, phase: str, gen_z: torch.Tensor, gen_c: torch.Tensor | None,
                          stats: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The path-length penalty of ``batch // pl_batch_shrink`` generated images, times ``pl_weight``
        (``[n]``), and those images (for the caller's backward); updates ``pl_mean``."""
        n = max(1, gen_z.shape[0] // self.pl_batch_shrink)
        pl_c = None if gen_c is None else gen_c[:n]
        gen_img, gen_ws = self.run_G(gen_z[:n], pl_c)  # [n, C, R, R], [n, num_ws, w_dim]
        pl_noise = torch.randn_like(gen_img) / math.sqrt(gen_img.shape[2] * gen_img.shape[3])  # [n, C, R, R]
        (pl_grads,) = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws],
                                          create_graph=True, only_inputs=True)  # [n, num_ws, w_dim]
        pl_lengths = pl_grads.square().sum(dim=2).mean(dim=1).sqrt()  # [n]
        pl_mean = self.pl_mean.lerp(pl_lengths.mean().detach().to(self.pl_mean.dtype), self.pl_decay)
        pl_penalty = (pl_lengths - pl_mean.to(pl_lengths.dtype)).square()  # [n]
        loss_Gpl = pl_penalty * self.pl_weight
        stats["pl_penalty"] = float(pl_penalty.detach().mean())
        self._check("loss_Gpl", phase, loss_Gpl, stats)
        self.pl_mean.copy_(pl_mean)
        stats["pl_mean"] = float(pl_mean)
        return loss_Gpl, gen_img

    # -- checkpointing ---------------------------------------------------------

    def state_dict(self) -> dict:
        """``{"pl_mean": tensor}``."""
        return {"pl_mean": self.pl_mean.detach().clone().cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.pl_mean.copy_(torch.as_tensor(state["pl_mean"], dtype=self.pl_mean.dtype))
