"""The GAN training loop (``hpcgan train-gan``): StyleGAN2-ADA or the cDCGAN baseline.

:func:`train` runs one training job from a :class:`~hpcgan.gan.config.TrainConfig`;
:func:`train_main` is the CLI's entry (config file + flag overrides, resume).

What one run directory (``OUTDIR/NNNNN-<arch>-<data>-<res>px-<classes>``) holds:
``config.yaml`` (resolved), ``stats.jsonl`` (one line per tick: losses, ADA p, kimg,
sec/kimg, non-finite gradient counts, FID when measured), TensorBoard events (when ``torch.utils.tensorboard``
imports), ``reals.png``, ``fakes-<nimg>.png`` sample grids (fixed seeds; one row
per class when conditional) and ``snapshot-<nimg>.pt`` checkpoints
(:mod:`hpcgan.gan.snapshot`).

The step (StyleGAN2-ADA's): for each phase due at this step (``loss.phases_for_step``:
Gmain, Greg every ``g_reg_interval`` steps, Dmain, Dreg every ``d_reg_interval``
steps) zero the network's gradients, accumulate them over this rank's slices of
the global batch, average them over ranks, take one Adam step; then update
G_ema (half-life ``ema_kimg``, ramp-up ``ema_rampup``) and ADA's p.

Reproducibility and data parallelism: the global batch (reals, latents, labels)
of step ``s`` is a function of (seed, s) only, the same on every rank; it is cut
into ``batch / batch_gpu`` slices, and slice ``k`` of phase ``i`` runs with the
torch RNG seeded from (seed, s, i, k) (style mixing, noise inputs, augmentation,
dropout). A rank processes the slices ``rank * rounds ... (rank + 1) * rounds - 1``.
Running buffers (w_avg, pl_mean, batch-norm statistics) start every slice from
their value before the phase and are set to the slices' mean after it. So the
result depends on ``batch`` and ``batch_gpu`` but not on the number of ranks:
one process with ``batch_gpu = batch / 2`` computes what two ranks do, up to
float summation order. Resuming is exact for the same reason: the counters and
states in the snapshot determine everything that follows (ADA's partial sign sums
are summed over ranks into the snapshot, so a resume mid-interval counts each
observation once).

Signals: SIGTERM and SIGUSR2 (SLURM's time limit / preemption) set a flag; at the
next step boundary every rank agrees to stop, rank 0 writes a snapshot and
:func:`train` returns ``status="interrupted"``. A NaN/inf loss raises
:class:`~hpcgan.errors.HpcganError` naming the term and the last good snapshot;
nothing is written after the bad step.

Precision: with ``precision: mixed`` the networks are built with ``num_fp16_res``
half blocks and conv clamping (:meth:`~hpcgan.gan.config.TrainConfig.num_fp16_res`).
Before every optimiser step (after the all-reduce, so every rank does the same)
NaN/inf gradient values are replaced as StyleGAN2-ADA does
(:func:`~hpcgan.gan.loss.sanitize_gradients`); each tick's line in ``stats.jsonl``
counts them: ``grad_nonfinite`` (values replaced) and ``grad_nonfinite_phases``
(phase updates that had any), in every precision.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import signal
import time
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch
import yaml

from hpcgan.atomic import atomic_write_text
from hpcgan import dist as hdist
from hpcgan.config import load as load_config
from hpcgan.config import write_resolved
from hpcgan.data.imagegrid import class_rows, image_grid, write_png
from hpcgan.errors import HpcganError
from hpcgan.gan.config import RESUMABLE_OVERRIDES, TrainConfig
from hpcgan.gan.layers import half_dtype
from hpcgan.gan.loss import NonFiniteLossError, sanitize_gradients
from hpcgan.gan.snapshot import (FORMAT, VERSION, build_networks, list_snapshots, load_snapshot, resolve_resume,
                                 rng_state, save_snapshot, set_rng_state, snapshot_name)
from hpcgan.ops.conv import widens_for

__all__ = ["train", "train_main", "Trainer", "EXIT_INTERRUPTED", "ArchParts", "ARCH_BUILDERS", "build_stylegan2", "build_cdcgan",
           "StatsWriter"]

EXIT_INTERRUPTED = 3  # the CLI's exit status after a signal-triggered snapshot


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[-1, 1] float images -> uint8 (rounded as StyleGAN2-ADA: x * 127.5 + 128, clamped)."""
    return (img.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


class _StepBatches:
    """Per-step index lists of this rank's slices of the global batch (a batch_sampler for the DataLoader).

    Step ``s`` takes positions ``s*B ... s*B+B-1`` of the endless sequence of
    epoch permutations (``ShardSampler`` with one replica, reshuffled each epoch).
    """

    def __init__(self, length: int, batch: int, seed: int, start_step: int, lo: int, hi: int):
        from hpcgan.data.dataset import ShardSampler

        self.length, self.batch, self.start_step, self.lo, self.hi = length, batch, start_step, lo, hi
        self._sampler = ShardSampler(length, 1, 0, seed=seed, shuffle=True, even=False)
        self._cache: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            self._sampler.set_epoch(epoch)
            self._cache[epoch] = self._sampler.indices()
        return self._cache[epoch]

    def indices(self, step: int) -> list[int]:
        out = []
        for j in range(self.lo, self.hi):
            g = step * self.batch + j
            out.append(self._perm(g // self.length)[g % self.length])
        return out

    def __iter__(self):
        step = self.start_step
        while True:
            yield self.indices(step)
            step += 1


class StatsWriter:
    """A run's statistics: ``stats.jsonl`` (one JSON line per record, flushed and fsynced) and TensorBoard
    scalars (when ``torch.utils.tensorboard`` imports); the one place that opens, writes and closes both.

    ``enabled=False`` (every rank but 0): writes nothing. ``keep_upto`` (on resume): first drop the lines
    logged after that image count (they are re-done).
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, keep_upto: int | None = None, tensorboard: bool = True):
        self.path = Path(run_dir) / "stats.jsonl"
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        if keep_upto is not None:
            self._trim(keep_upto)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir))
            except Exception:  # noqa: BLE001 - TensorBoard is optional
                self._tb = None

    def _trim(self, nimg: int) -> None:
        if not self.path.is_file():
            return
        keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln).get("nimg", 0) <= nimg]
        atomic_write_text(self.path, "".join(ln + "\n" for ln in keep))

    def append(self, record: dict) -> None:
        """One line of ``stats.jsonl`` (events such as ``nonfinite``; no TensorBoard scalars)."""
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_tick(self, record: dict, nimg: int) -> None:
        """A tick's line, and its numbers (but the counters tick, step, nimg) as TensorBoard scalars at ``nimg``."""
        if not self.enabled:
            return
        self.append(record)
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("tick", "step", "nimg"):
                    self._tb.add_scalar(k, v, nimg)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class _TickStats:
    """One tick's step statistics, start time and start image count."""

    def __init__(self, nimg: int):
        self.stats: dict[str, list[float]] = {}
        self.t0 = time.perf_counter()
        self.nimg0 = nimg

    def add(self, step_stats: dict[str, list[float]]) -> None:
        for k, v in step_stats.items():
            self.stats.setdefault(k, []).extend(v)

    def seconds(self) -> float:
        return time.perf_counter() - self.t0


def _tick_line(tick_idx: int, record: dict) -> str:
    """The progress line of a tick: kimg, sec/kimg, losses, ADA p and FID when measured."""
    return (f"{hdist.log_prefix()}tick {tick_idx} kimg {record['kimg']:.3f} sec/kimg {record['sec_per_kimg']:.2f} "
            + " ".join(f"{k} {record[k]:.4g}" for k in ("loss_G", "loss_D", "aug_p", record.get("fid_key")) if k in record))


# -- one builder per architecture ------------------------------------------------------


@dataclasses.dataclass
class ArchParts:
    """What an architecture builder makes for the :class:`Trainer`: networks (on the device, G_ema a copy
    of G), their constructor arguments (stored in snapshots), loss, optimisers, EMA schedule, augmentation."""

    G_kwargs: dict
    D_kwargs: dict
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    loss: object  # StyleGAN2Loss or CDCGANLoss: phases_for_step, accumulate_gradients, state_dict
    opt_G: torch.optim.Optimizer  # noqa: N815 - the Trainer's (and StyleGAN2's) names
    opt_D: torch.optim.Optimizer  # noqa: N815
    ema_nimg: float  # G_ema's half-life in images (0: G_ema copies G)
    ema_rampup: float | None
    augment_pipe: torch.nn.Module | None = None
    ada: object | None = None  # AdaController


def _build_networks(cfg: TrainConfig, G_kwargs: dict, D_kwargs: dict, resolution: int, device: torch.device):
    """(G, D, G_ema) on ``device``, G and D in train mode, G_ema an eval copy of G without gradients."""
    try:
        G, D = build_networks(cfg.arch, G_kwargs, D_kwargs, impl=cfg.impl)
    except ValueError as exc:
        raise HpcganError(f"cannot build the {cfg.arch} networks for {resolution}px data: {exc}") from exc
    G = G.to(device).train()
    D = D.to(device).train()
    return G, D, copy.deepcopy(G).eval().requires_grad_(False)


def _adam(net: torch.nn.Module, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    return torch.optim.Adam(net.parameters(), lr=lr, betas=betas, eps=1e-8)


def build_stylegan2(cfg: TrainConfig, c_dim: int, resolution: int, batch_gpu: int, device: torch.device,
                    reduce_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ArchParts:
    """StyleGAN2-ADA: the networks, ADA's pipe and controller (unless ``aug: noaug``), the loss with lazy
    regularisation and Adam with the lazy-regularisation adjustment. ``reduce_fn``: ADA's sum over ranks."""
    from hpcgan.gan.augment import AdaController, AugmentPipe
    from hpcgan.gan.loss import StyleGAN2Loss, lazy_regularization_adam

    R = resolution
    G_kwargs = dict(z_dim=cfg.z_dim, c_dim=c_dim, w_dim=cfg.w_dim, img_resolution=R, img_channels=1,
                    channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                    mapping_layers=cfg.mapping_layers, conv_clamp=cfg.resolved_conv_clamp())
    D_kwargs = dict(c_dim=c_dim, img_resolution=R, img_channels=1, channel_base=cfg.channel_base,
                    channel_max=cfg.channel_max, conv_clamp=cfg.resolved_conv_clamp(),
                    mbstd_group_size=min(cfg.mbstd_group, batch_gpu), mapping_layers=cfg.mapping_layers)
    if cfg.num_fp16_res():  # only when on: fp32 networks keep the kwargs of older snapshots
        G_kwargs["num_fp16_res"] = D_kwargs["num_fp16_res"] = cfg.num_fp16_res()
    G, D, G_ema = _build_networks(cfg, G_kwargs, D_kwargs, R, device)  # the seeded RNG's first use
    augment_pipe = ada = None
    if cfg.aug != "noaug":
        augment_pipe = AugmentPipe.from_groups(cfg.augpipe, impl=cfg.impl).to(device)
        ada = AdaController(augment_pipe, mode=cfg.aug, p=cfg.aug_p, target=cfg.ada_target,
                            interval=cfg.ada_interval, ada_kimg=cfg.ada_kimg, batch_size=cfg.batch, reduce_fn=reduce_fn)
    loss = StyleGAN2Loss(G, D, augment_pipe, r1_gamma=cfg.gamma(R), style_mixing_prob=cfg.style_mixing_prob,
                         pl_weight=cfg.pl_weight, g_reg_interval=cfg.g_reg_interval, d_reg_interval=cfg.d_reg_interval)
    g_lr, g_betas = lazy_regularization_adam(cfg.g_lr, tuple(cfg.betas), cfg.g_reg_interval if cfg.pl_weight > 0 else None)
    d_lr, d_betas = lazy_regularization_adam(cfg.d_lr, tuple(cfg.betas),
                                             cfg.d_reg_interval if loss.r1_gamma > 0 else None)
    return ArchParts(G_kwargs, D_kwargs, G, D, G_ema, loss, _adam(G, g_lr, g_betas), _adam(D, d_lr, d_betas),
                     ema_nimg=cfg.ema_nimg(), ema_rampup=cfg.ema_rampup, augment_pipe=augment_pipe, ada=ada)


def build_cdcgan(cfg: TrainConfig, c_dim: int, resolution: int, batch_gpu: int, device: torch.device,  # noqa: ARG001
                 reduce_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ArchParts:  # noqa: ARG001
    """The cDCGAN baseline: its networks, BCE loss (D every ``cdcgan_d_every`` steps) and Adam; no
    augmentation, and no EMA (G_ema is a copy of G). The arguments are :func:`build_stylegan2`'s."""
    from hpcgan.gan.cdcgan import CDCGANLoss

    G_kwargs = dict(z_dim=cfg.cdcgan_z_dim, c_dim=c_dim, img_resolution=resolution, img_channels=1,
                    filters=cfg.cdcgan_filters, embed=cfg.cdcgan_embed)
    D_kwargs = dict(c_dim=c_dim, img_resolution=resolution, img_channels=1, filters=cfg.cdcgan_filters,
                    embed=cfg.cdcgan_embed)
    G, D, G_ema = _build_networks(cfg, G_kwargs, D_kwargs, resolution, device)  # the seeded RNG's first use
    betas = (cfg.cdcgan_beta1, 0.999)
    return ArchParts(G_kwargs, D_kwargs, G, D, G_ema, CDCGANLoss(G, D, d_every=cfg.cdcgan_d_every),
                     _adam(G, cfg.cdcgan_lr, betas), _adam(D, cfg.cdcgan_lr, betas), ema_nimg=0.0, ema_rampup=None)


ARCH_BUILDERS: dict[str, Callable[..., ArchParts]] = {"stylegan2": build_stylegan2, "cdcgan": build_cdcgan}


class Trainer:
    """One training job; see the module docstring. ``Trainer(cfg).run()`` or :func:`train`."""

    def __init__(self, cfg: TrainConfig, snapshot: dict | None = None, run_dir: Path | None = None,
                 on_step: Callable[[dict], None] | None = None):
        cfg.validate()
        self.cfg = cfg
        self.on_step = on_step
        self._join_ranks()
        self._open_data()
        self._plan_batch()
        self._build()
        # -- state: the snapshot's, or rank 0's fresh networks on every rank
        self.cur_nimg = self.step = self.tick = self.tick_start_nimg = 0
        if snapshot is not None:
            self._load_state(snapshot)
        elif self.ddp:
            self._broadcast_networks()
        self.run_dir = self._agree_run_dir(run_dir)
        self.batches = _StepBatches(len(self.dataset), cfg.batch, cfg.seed, self.step,
                                    self.rank * self.rounds * self.batch_gpu, (self.rank + 1) * self.rounds * self.batch_gpu)
        self._stop_signal: str | None = None
        self._tracked = self._tracked_buffers()
        # tools (hpcgan.bench) may wrap each phase's gradient all-reduce: sync_wrapper(do_sync, nbytes) must call
        # do_sync() once and return what it returns
        self.sync_wrapper: Callable[[Callable[[], bool], int], bool] | None = None
        self._nonfinite = {"grad_nonfinite": 0, "grad_nonfinite_phases": 0}  # this tick's sanitised gradients

    # -- set-up steps ----------------------------------------------------------------

    def _join_ranks(self) -> None:
        """torch.distributed when launched on several ranks; this rank's device."""
        self.ddp = hdist.init_process_group()
        self.world, self.rank = (hdist.world_size(), hdist.rank()) if self.ddp else (1, 0)
        self.rank0 = self.rank == 0
        self.device = hdist.select_device(self.cfg.device)

    def _open_data(self) -> None:
        """The training shards; the trained classes and the one-hot index of each data label."""
        from hpcgan.data.dataset import ShardDataset

        cfg = self.cfg
        self.dataset = ShardDataset(cfg.data, cfg.split, classes=cfg.classes, value_range="gan")
        if len(self.dataset) == 0:
            raise HpcganError(f"{cfg.data} split {cfg.split} has no images of classes {cfg.classes}")
        self.class_names = list(self.dataset.class_names)
        self.train_classes = list(cfg.classes) if cfg.classes else list(self.class_names)
        self.label_to_c = {self.class_names.index(n): i for i, n in enumerate(self.train_classes)}
        self.resolution = self.dataset.resolution
        self.c_dim = len(self.train_classes) if cfg.cond else 0

    def _plan_batch(self) -> None:
        """``batch_gpu`` images per slice, ``rounds`` slices per rank and step."""
        B = self.cfg.batch
        bg = self.cfg.batch_gpu or B // self.world
        if bg < 1 or B % (bg * self.world):
            raise HpcganError(f"--batch {B} must be a multiple of --batch-gpu {bg} times the {self.world} ranks")
        self.batch_gpu, self.rounds = bg, B // (bg * self.world)

    def _build(self) -> None:
        """The architecture's networks, loss, optimisers and augmentation (:data:`ARCH_BUILDERS`), initialised
        from the torch RNG seeded with ``cfg.seed``."""
        torch.manual_seed(self.cfg.seed)
        parts = ARCH_BUILDERS[self.cfg.arch](self.cfg, self.c_dim, self.resolution, self.batch_gpu, self.device,
                                             reduce_fn=self._allreduce_sum if self.ddp else None)
        self.G_kwargs, self.D_kwargs = parts.G_kwargs, parts.D_kwargs
        self.G, self.D, self.G_ema = parts.G, parts.D, parts.G_ema
        self.z_dim = self.G.z_dim
        self.augment_pipe, self.ada = parts.augment_pipe, parts.ada
        self.loss = parts.loss
        self.ema_nimg, self.ema_rampup = parts.ema_nimg, parts.ema_rampup
        self.opt_G, self.opt_D = parts.opt_G, parts.opt_D

    @torch.no_grad()
    def _broadcast_networks(self) -> None:
        """A fresh run on several ranks: every rank starts from rank 0's G and D (G_ema = G)."""
        for t in [*self.G.parameters(), *self.G.buffers(), *self.D.parameters(), *self.D.buffers()]:
            torch.distributed.broadcast(t.data, src=0)
        self.G_ema.load_state_dict(self.G.state_dict())

    def _agree_run_dir(self, run_dir: Path | None) -> Path:
        """``run_dir``, or a new one that rank 0 makes and every rank learns."""
        if run_dir is None:
            run_dir = self._new_run_dir() if self.rank0 else None
            if self.ddp:
                box = [str(run_dir) if run_dir else None]
                torch.distributed.broadcast_object_list(box, src=0)
                run_dir = Path(box[0])
        return Path(run_dir)

    # -- helpers -----------------------------------------------------------------

    def _allreduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dev_t = t.to(self.device)
        torch.distributed.all_reduce(dev_t)
        return dev_t.to(t.device)

    @property
    def tracked_buffers(self) -> list[torch.Tensor]:
        """The float buffers averaged over slices and ranks after each phase (w_avg, pl_mean, ...)."""
        return list(self._tracked)

    def _tracked_buffers(self) -> list[torch.Tensor]:
        bufs = [b for b in [*self.G.buffers(), *self.D.buffers()] if b.is_floating_point()]
        if hasattr(self.loss, "pl_mean"):
            bufs.append(self.loss.pl_mean)
        return bufs

    def _new_run_dir(self) -> Path:
        out = Path(self.cfg.outdir)
        out.mkdir(parents=True, exist_ok=True)
        ids = [int(m.group()) for p in out.iterdir() if p.is_dir() and (m := re.match(r"^\d+", p.name))]
        what = "cond" if self.cfg.cond else "+".join(self.train_classes) if self.cfg.classes else "all"
        desc = re.sub(r"[^A-Za-z0-9+._-]", "_", f"{self.cfg.arch}-{Path(self.cfg.data).name}-{self.resolution}px-{what}")
        for i in range(max(ids, default=-1) + 1, max(ids, default=-1) + 1000):
            path = out / f"{i:05d}-{desc}"
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
        raise HpcganError(f"cannot make a new run directory under {out}")

    def _onehot(self, labels: torch.Tensor) -> torch.Tensor | None:
        if self.c_dim == 0:
            return None
        idx = torch.tensor([self.label_to_c[int(v)] for v in labels], dtype=torch.int64)
        return torch.nn.functional.one_hot(idx, self.c_dim).float().to(self.device)  # [N, c_dim]

    # -- snapshots -------------------------------------------------------------------

    def state(self, ada_state: dict | None = None) -> dict:
        """The snapshot dict. ``ada_state``: the ADA controller's state summed over ranks
        (``AdaController.global_state_dict``, a collective); None: this process's own."""
        if ada_state is None and self.ada is not None:
            ada_state = self.ada.state_dict()
        return {
            "format": FORMAT, "version": VERSION, "arch": self.cfg.arch,
            "G_kwargs": dict(self.G_kwargs), "D_kwargs": dict(self.D_kwargs),
            "G": {k: v.cpu() for k, v in self.G.state_dict().items()},
            "D": {k: v.cpu() for k, v in self.D.state_dict().items()},
            "G_ema": {k: v.cpu() for k, v in self.G_ema.state_dict().items()},
            "augment": None if self.augment_pipe is None else {
                "groups": self.cfg.augpipe, "state": {k: v.cpu() for k, v in self.augment_pipe.state_dict().items()}},
            "ada": ada_state,
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "loss": self.loss.state_dict(),
            "counters": {"cur_nimg": self.cur_nimg, "step": self.step, "tick": self.tick,
                         "tick_start_nimg": self.tick_start_nimg, "kimg": self.cur_nimg / 1000},
            "rng": rng_state(),
            "config": dataclasses.asdict(self.cfg),
            "data": {"class_names": self.class_names, "train_classes": self.train_classes,
                     "resolution": self.resolution, "path": str(Path(self.cfg.data).resolve())},
        }

    def _load_state(self, snap: dict) -> None:
        def same(a: dict, b: dict) -> bool:  # the minibatch-stddev group follows batch_gpu: not a weight shape
            return {k: v for k, v in a.items() if k != "mbstd_group_size"} == \
                {k: v for k, v in b.items() if k != "mbstd_group_size"}

        if snap["arch"] != self.cfg.arch or snap["G_kwargs"] != self.G_kwargs or not same(snap["D_kwargs"], self.D_kwargs):
            raise HpcganError("the snapshot's networks do not match this configuration (arch, sizes, classes or data "
                              f"resolution differ): snapshot G {snap['G_kwargs']}, config G {self.G_kwargs}")
        self.G.load_state_dict(snap["G"])
        self.D.load_state_dict(snap["D"])
        self.G_ema.load_state_dict(snap["G_ema"])
        if self.augment_pipe is not None and snap.get("augment"):
            self.augment_pipe.load_state_dict(snap["augment"]["state"])
        if self.ada is not None and snap.get("ada"):
            self.ada.load_state_dict(snap["ada"], holder=self.rank0)  # the summed partials: counted once
        self.opt_G.load_state_dict(snap["opt_G"])
        self.opt_D.load_state_dict(snap["opt_D"])
        self.loss.load_state_dict(snap["loss"])
        c = snap["counters"]
        self.cur_nimg, self.step, self.tick = int(c["cur_nimg"]), int(c["step"]), int(c["tick"])
        self.tick_start_nimg = int(c.get("tick_start_nimg", self.cur_nimg))
        set_rng_state(snap["rng"])

    def write_snapshot(self) -> Path | None:
        path = None
        for name, net in (("G", self.G), ("D", self.D)):
            for pname, p in net.named_parameters():
                if not torch.isfinite(p).all():  # never store a broken state as the "last good" snapshot
                    raise NonFiniteLossError(f"parameter {name}.{pname}", "snapshot", float("nan"))
        # ADA's partial sums since its last adjustment, summed over ranks (every rank takes part)
        ada_state = None if self.ada is None else self.ada.global_state_dict()
        if self.rank0:
            path = save_snapshot(self.run_dir / snapshot_name(self.cur_nimg), self.state(ada_state))
        if self.ddp:
            torch.distributed.barrier()
        return path

    # -- one step -------------------------------------------------------------------

    def _sync(self, params: list[torch.nn.Parameter], bufs: list[torch.Tensor] | None, failed: bool) -> bool:
        """All-reduce the phase's gradients (mean over ranks), tracked buffers (mean) and the failure flag."""
        with_grad = [p for p in params if p.grad is not None]
        parts = [p.grad.flatten() for p in with_grad] + [b.flatten() for b in (bufs or [])]  # each [numel]
        parts.append(torch.tensor([1.0 if failed else 0.0], device=self.device))
        flat = torch.cat([t.to(self.device, torch.float32) for t in parts])  # [gradient numels + buffer numels + 1]
        torch.distributed.all_reduce(flat)
        if float(flat[-1]) > 0:
            return True
        flat /= self.world
        off = 0
        for t in [p.grad for p in with_grad] + list(bufs or []):
            n = t.numel()
            t.copy_(flat[off:off + n].view_as(t))  # [n] -> t's shape
            off += n
        return False

    def _sync_phase(self, params: list[torch.nn.Parameter], failed: bool) -> bool:
        """:meth:`_sync` of one phase, through :attr:`sync_wrapper` when a tool set one."""
        if self.sync_wrapper is None:
            return self._sync(params, self._tracked, failed)
        nbytes = 4 * (sum(p.grad.numel() for p in params if p.grad is not None)
                      + sum(b.numel() for b in self._tracked) + 1)
        return self.sync_wrapper(lambda: self._sync(params, self._tracked, failed), nbytes)

    def train_step(self, reals: torch.Tensor, real_labels: torch.Tensor) -> dict[str, list[float]]:
        """One step of every phase due (see the module docstring) on this rank's slices of the global batch;
        then G_ema, the counters and ADA. Returns each statistic's values, one per slice and phase."""
        cfg, B, bg = self.cfg, self.cfg.batch, self.batch_gpu
        gen = torch.Generator().manual_seed(_seed(cfg.seed, self.step, 0xDA7A))  # the step's latents and labels
        reals = reals.to(self.device, torch.float32)  # [rounds * bg, 1, R, R]: this rank's slices
        real_c = self._onehot(real_labels)  # [rounds * bg, c_dim] or None
        slicing = self.rounds > 1 or self.ddp
        stats: dict[str, list[float]] = {}
        for phase_i, phase in enumerate(self.loss.phases_for_step(self.step)):
            # -- the global batch's latents and labels (the same on every rank), the phase's network
            z_all = torch.randn(B, self.z_dim, generator=gen)  # [B, z_dim]
            c_all = self._onehot(self.dataset.labels[torch.randint(len(self.dataset), (B,), generator=gen)])  # [B, c_dim]
            net, opt = (self.G, self.opt_G) if phase.startswith("G") else (self.D, self.opt_D)
            opt.zero_grad(set_to_none=True)
            before = [b.detach().clone() for b in self._tracked] if slicing else None
            after = [torch.zeros_like(b) for b in self._tracked] if slicing else None
            error = None
            # -- accumulate the gradients of this rank's slices; each slice starts from the tracked buffers'
            # values before the phase, with the torch RNG seeded from (seed, step, phase, slice)
            try:
                for r in range(self.rounds):
                    k = self.rank * self.rounds + r
                    torch.manual_seed(_seed(cfg.seed, self.step, phase_i, k))
                    if slicing:
                        for b, b0 in zip(self._tracked, before):
                            b.copy_(b0)
                    lo = k * bg
                    s = self.loss.accumulate_gradients(
                        phase, reals[r * bg:(r + 1) * bg], None if real_c is None else real_c[r * bg:(r + 1) * bg],
                        z_all[lo:lo + bg].to(self.device), None if c_all is None else c_all[lo:lo + bg],
                        gain=1.0 / self.rounds)
                    if slicing:
                        for a, b in zip(after, self._tracked):
                            a += b.detach() / self.rounds
                    for key, v in s.items():
                        stats.setdefault(key, []).append(v)
                    if self.ada is not None and "Dreal_sign" in s:
                        self.ada.accumulate(s["Dreal_sign"], int(s["n_real"]))
            except NonFiniteLossError as exc:
                error = exc
            # -- the tracked buffers become the slices' mean; gradients, buffers and failure are averaged
            # over ranks (a failure on any rank stops every rank)
            if slicing and error is None:
                for b, a in zip(self._tracked, after):
                    b.copy_(a)
            if self.ddp:
                if self._sync_phase(list(net.parameters()), error is not None):
                    if error is None:
                        error = NonFiniteLossError("a loss term (on another rank)", phase, float("nan"))
            if error is not None:
                raise error
            # -- replace non-finite gradient values (identical on every rank: after the all-reduce), step
            bad = sanitize_gradients(net.parameters())
            self._nonfinite["grad_nonfinite"] += bad
            self._nonfinite["grad_nonfinite_phases"] += int(bad > 0)
            opt.step()
        # -- G_ema, the counters, ADA's p
        self._update_ema()
        self.cur_nimg += B
        self.step += 1
        if self.ada is not None:
            self.ada.step(B)
        return stats

    @torch.no_grad()
    def _update_ema(self) -> None:
        """G_ema moves towards G with a half-life of ``ema_nimg`` images (ramped up: at most ``cur_nimg *
        ema_rampup``); its buffers are G's."""
        ema_nimg = self.ema_nimg
        if self.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.cur_nimg * self.ema_rampup)
        beta = 0.5 ** (self.cfg.batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # -- grids, metrics -------------------------------------------------------------------

    def _grid_classes(self) -> list[int] | None:
        """Conditional runs: the training-class index of each grid row (blocks of rows per class)."""
        return class_rows(len(self.train_classes), self.cfg.grid_rows) if self.c_dim else None

    def _grid_inputs(self) -> tuple[torch.Tensor, torch.Tensor | None, int, int]:
        cfg = self.cfg
        per_row = self._grid_classes()
        rows = len(per_row) if per_row else cfg.grid_rows
        n = rows * cfg.grid_cols
        z = torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(_seed(cfg.seed, 0x6121D)))  # [rows * cols, z_dim]
        c = None
        if per_row:
            rows_c = torch.tensor(per_row).repeat_interleave(cfg.grid_cols)  # [rows * cols]: c index = train-class index
            c = torch.nn.functional.one_hot(rows_c, self.c_dim).float()  # [rows * cols, c_dim]
        return z, c, rows, cfg.grid_cols

    @torch.no_grad()
    def write_grid(self) -> Path:
        z, c, rows, cols = self._grid_inputs()
        imgs = []
        for i in range(0, len(z), 32):
            cc = None if c is None else c[i:i + 32].to(self.device)
            imgs.append(to_uint8(self.G_ema(z[i:i + 32].to(self.device), cc, noise_mode="const")))
        path = self.run_dir / f"fakes-{self.cur_nimg:010d}.png"
        write_png(path, image_grid(np.concatenate(imgs), rows, cols))
        return path

    def write_reals(self) -> None:
        per_row = self._grid_classes()
        rows = len(per_row) if per_row else self.cfg.grid_rows
        cols = self.cfg.grid_cols
        labels = self.dataset.labels
        idx: list[int] = []
        if per_row:
            for k in sorted(set(per_row)):  # each class's block of rows, filled with its images in order
                lab = self.class_names.index(self.train_classes[k])
                found = torch.nonzero(labels == lab).flatten().tolist()
                need = per_row.count(k) * cols
                idx += (found * need)[:need]
        else:
            idx = [i % len(self.dataset) for i in range(rows * cols)]
        items = self.dataset.__getitems__(idx)
        imgs = to_uint8(torch.stack([x for x, _ in items]))  # [rows * cols, 1, R, R]
        write_png(self.run_dir / "reals.png", image_grid(imgs, rows, cols))

    def _fid_evaluator(self):
        if self.cfg.metric_every <= 0 or not self.rank0:
            return None
        try:
            from hpcgan.metrics.fid import FIDEvaluator
        except ImportError as exc:
            raise HpcganError(f"--metric-every needs hpcgan.metrics.fid ({exc}); use --metric-every 0") from exc
        from hpcgan.metrics.realset import RealSet

        real = RealSet.open(self.cfg.data, self.cfg.split, self.train_classes)  # the generator's classes only
        return FIDEvaluator(real, feature_net=self.cfg.feature_net, num_real=self.cfg.fid_num_real,
                            cache_dir=self.cfg.fid_cache_dir, device=str(self.device))

    # -- the loop ------------------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self._stop_signal = signal.Signals(signum).name

    def _catch_stop_signals(self) -> dict:
        """SIGTERM and SIGUSR2 set the stop flag; returns the previous handlers."""
        return {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGUSR2)}

    def _agree_stop(self) -> bool:
        """Whether any rank received a stop signal (with several ranks a collective: every rank calls it)."""
        stop = self._stop_signal is not None
        if self.ddp:
            flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
            torch.distributed.all_reduce(flag)
            stop = float(flag) > 0
        return stop

    def _start_run(self) -> StatsWriter:
        """Rank 0: the resolved config, ``reals.png`` (a fresh run) and the stats writer (on resume without
        the lines logged after the snapshot). The other ranks get a writer that writes nothing."""
        if not self.rank0:
            return StatsWriter(self.run_dir, enabled=False)
        write_resolved(self.cfg, self.run_dir)
        if self.cur_nimg == 0:
            self.write_reals()
        return StatsWriter(self.run_dir, keep_upto=self.cur_nimg if self.cur_nimg else None)

    def _interrupted(self, log, written: bool = False, snapshot: Path | None = None) -> Path | None:
        """Stop on a signal: write the snapshot (every rank takes part) unless this step already ``written``
        it (``snapshot``: its path on rank 0), and say how to resume."""
        if not written:
            snapshot = self.write_snapshot()
        log(f"{hdist.log_prefix()}received {self._stop_signal or 'a stop signal on another rank'}: "
            f"wrote {snapshot or 'the snapshot'} at kimg {self.cur_nimg / 1000:.3f}; "
            f"continue with `hpcgan train-gan --resume latest --outdir {self.cfg.outdir}`")
        return snapshot

    def _diverged(self, exc: NonFiniteLossError, stats: StatsWriter) -> HpcganError:
        """A NaN/inf loss: the ``nonfinite`` event in stats.jsonl, and the error that names the last good snapshot."""
        snaps = list_snapshots(self.run_dir)
        last = f"the last good snapshot is {snaps[-1]} (resume with --resume {snaps[-1]})" if snaps \
            else "no snapshot was written before it"
        stats.append({"event": "nonfinite", "term": exc.term, "phase": exc.phase,
                      "step": self.step, "nimg": self.cur_nimg, "kimg": self.cur_nimg / 1000})
        return HpcganError(f"training stopped at kimg {self.cur_nimg / 1000:.3f} (step {self.step}): "
                           f"{exc} Nothing was saved after this step; {last}.")

    def run(self) -> dict:
        """Train up to ``cfg.kimg`` or a stop signal; returns the summary that :func:`train` returns."""
        from hpcgan.progress import Progress

        cfg = self.cfg
        total_nimg = int(round(cfg.kimg * 1000))
        fid = self._fid_evaluator()
        stats = self._start_run()
        bar = Progress(total=total_nimg, initial=min(self.cur_nimg, total_nimg), unit="img", mode=cfg.progress,
                       rank0=self.rank0, desc=f"{cfg.arch} {self.resolution}px")
        log = bar.write if self.rank0 else (lambda s: None)
        if cfg.precision == "mixed" and widens_for(self.device, half_dtype(self.device)):
            log("mixed precision: this CPU has no native bfloat16 convolution (AVX-512 or AMX), so the bfloat16 "
                "blocks convolve in float32 and round each result to bfloat16 (hpcgan.ops.conv)")
        old = self._catch_stop_signals()
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=self.batches, num_workers=cfg.workers,
                                             pin_memory=self.device.type == "cuda")
        it = iter(loader)
        try:
            status, last_snapshot = self._loop(it, total_nimg, fid, stats, bar, log)
        except NonFiniteLossError as exc:
            raise self._diverged(exc, stats) from exc
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            bar.close()
            stats.close()
            del it
        if status == "done" and last_snapshot is None and self.rank0:
            snaps = list_snapshots(self.run_dir)
            last_snapshot = snaps[-1] if snaps else None
        return {"status": status, "run_dir": str(self.run_dir), "snapshot": str(last_snapshot) if last_snapshot else None,
                "kimg": self.cur_nimg / 1000, "step": self.step, "signal": self._stop_signal}

    def _loop(self, it, total_nimg: int, fid, stats: StatsWriter, bar, log) -> tuple[str, Path | None]:
        """Steps until ``total_nimg`` images or a stop signal; returns the status ("done" or "interrupted")
        and the last snapshot written (its path on rank 0, None elsewhere)."""
        cfg = self.cfg
        last_snapshot = None
        tick = _TickStats(self.cur_nimg)
        while self.cur_nimg < total_nimg:
            # -- one step; then every rank agrees whether to stop
            reals, labels = next(it)
            tick.add(self.train_step(reals, labels))
            bar.update(min(cfg.batch, total_nimg - bar.n))
            if self.on_step is not None:
                self.on_step({"trainer": self, "step": self.step, "cur_nimg": self.cur_nimg})
            stop = self._agree_stop()
            done = self.cur_nimg >= total_nimg
            interrupt = stop and not done
            tick_end = done or self.tick == 0 or self.cur_nimg >= self.tick_start_nimg + cfg.tick_kimg * 1000
            # -- a stop signal inside a tick: stop now, with a snapshot
            if interrupt and not tick_end:
                return "interrupted", self._interrupted(log)
            if not tick_end:
                continue
            # -- end of a tick: its stats line, then grid and snapshot when due (no FID when stopping)
            snapped, path = self._end_tick(tick, fid, stats, log, done=done, interrupt=interrupt)
            if snapped:
                last_snapshot = path
            # -- a stop signal at a tick's last step: the tick is complete (so a resumed run keeps the
            # uninterrupted run's tick boundaries), then stop with its snapshot
            if interrupt:
                return "interrupted", self._interrupted(log, snapped, last_snapshot)
            tick = _TickStats(self.cur_nimg)
        return "done", last_snapshot

    def _end_tick(self, tick: _TickStats, fid, stats: StatsWriter, log, done: bool, interrupt: bool) -> tuple[bool, Path | None]:
        """Close a tick: the stats line (with FID when due, never when stopping), grid and snapshot when due.
        Every rank calls it (collectives). Returns (whether a snapshot was written, its path on rank 0)."""
        cfg = self.cfg
        tick_idx = self.tick
        self.tick += 1
        self.tick_start_nimg = self.cur_nimg
        record = self._tick_record(tick_idx, tick.stats, tick.seconds(), self.cur_nimg - tick.nimg0)
        if fid is not None and not interrupt and (done or tick_idx % cfg.metric_every == 0):
            t0 = time.perf_counter()
            record.update(fid.record(self.G_ema, cfg.fid_num_fake, seed=cfg.seed))  # fid5k_full, per class
            record["fid_sec"] = round(time.perf_counter() - t0, 3)
        if self.ddp:
            torch.distributed.barrier()
        if self.rank0:
            stats.write_tick(record, self.cur_nimg)
            log(_tick_line(tick_idx, record))
        if not (done or (cfg.snap > 0 and tick_idx % cfg.snap == 0)):
            return False, None
        if self.rank0:
            self.write_grid()
        return True, self.write_snapshot()

    def _tick_record(self, tick_idx: int, stats: dict[str, list[float]], dt: float, nimg: int) -> dict:
        means = {k: float(np.mean(v)) for k, v in sorted(stats.items()) if k != "n_real"}
        if self.ddp and means:
            keys = sorted(means)
            t = torch.tensor([means[k] for k in keys], dtype=torch.float64)
            t = self._allreduce_sum(t) / self.world
            means = dict(zip(keys, t.tolist()))
        rec = {"tick": tick_idx, "step": self.step, "nimg": self.cur_nimg, "kimg": self.cur_nimg / 1000,
               "sec_per_tick": round(dt, 3), "sec_per_kimg": round(dt / max(nimg / 1000, 1e-9), 3),
               "aug_p": float(self.augment_pipe.p) if self.augment_pipe is not None else 0.0, **means,
               **self._nonfinite, "time": time.time()}
        self._nonfinite = dict.fromkeys(self._nonfinite, 0)
        if self.device.type == "cuda":
            rec["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(self.device) / 2 ** 30, 3)
        return rec


# -- entry points ------------------------------------------------------------------------


def train(cfg: TrainConfig, on_step: Callable[[dict], None] | None = None) -> dict:
    """Run (or, with ``cfg.resume``, continue) a training job; returns a summary dict.

    ``status`` is "done" or "interrupted" (a signal; a snapshot was written).
    ``on_step`` (tests, tools) is called after every step with ``{"trainer", "step", "cur_nimg"}``.
    """
    snap, run_dir = None, None
    if cfg.resume:
        path = resolve_resume(cfg.resume, cfg.outdir)
        snap = load_snapshot(path)
        run_dir = path.parent
        cfg = dataclasses.replace(cfg, resume=str(path))
    trainer = Trainer(cfg, snapshot=snap, run_dir=run_dir, on_step=on_step)
    return trainer.run()


def resolve_config(overrides: dict, config_file: str | None = None) -> TrainConfig:
    """The run's config: preset + flags; on resume the snapshot's config + the flags that may change.

    When resuming, a setting that would change what is computed (network sizes,
    batch, learning rates, ...) and differs from the snapshot's is an error.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides.get("resume"):
        return load_config(TrainConfig, config_file, overrides)
    path = resolve_resume(overrides["resume"], overrides.get("outdir", TrainConfig.outdir))
    saved = load_snapshot(path)["config"]
    given: dict = {}
    if config_file is not None:  # validated by loading it, then only its own keys count
        load_config(TrainConfig, config_file, {"data": saved["data"]})
        given.update(yaml.safe_load(Path(config_file).read_text()) or {})
    given.update(overrides)
    changed = sorted(k for k, v in given.items()
                     if k not in RESUMABLE_OVERRIDES and k in saved and _norm(v) != _norm(saved[k]))
    if changed:
        raise HpcganError(f"cannot change {', '.join(changed)} when resuming from {path} (snapshot: "
                          + ", ".join(f"{k}={saved[k]!r}" for k in changed) + "); start a new run instead")
    merged = {**saved, **{k: v for k, v in given.items() if k in RESUMABLE_OVERRIDES}}
    merged["resume"] = str(path)
    return load_config(TrainConfig, None, merged)


def _norm(v):
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def train_and_summarise(cfg: TrainConfig) -> dict:
    """``train(cfg)`` as ``hpcgan train-gan`` and its job run it: one clear error for a dead or hung rank, and
    rank 0 prints where things went. Returns train's result ({"status": "done"|"interrupted", "snapshot",
    "run_dir", "kimg", "signal", ...})."""
    with hdist.collective_errors("training"):  # a dead or hung rank: one clear error, not a backend traceback
        result = train(cfg)
    if hdist.is_rank0():
        if result["status"] == "interrupted":
            print(f"interrupted by {result['signal']}: snapshot {result['snapshot']} at kimg {result['kimg']:.3f}; "
                  f"resume with: hpcgan train-gan --outdir {cfg.outdir} --resume latest")
        else:
            print(f"done: {result['run_dir']} (kimg {result['kimg']:.3f}, last snapshot {result['snapshot']})")
    return result


def train_main(overrides: dict, config_file: str | None = None) -> int:
    """CLI entry: resolve the config, train, print where things went; returns the exit status."""
    result = train_and_summarise(resolve_config(overrides, config_file))
    return EXIT_INTERRUPTED if result["status"] == "interrupted" else 0
