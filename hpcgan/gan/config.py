"""Settings of ``hpcgan train-gan``: the :class:`TrainConfig` dataclass.

Loaded with :func:`hpcgan.config.load` from a preset in ``configs/gan/`` (unknown
keys are an error), single fields overridden by CLI flags, validated by
:meth:`TrainConfig.validate`, and written resolved as ``config.yaml`` into the
run directory (and into every snapshot, as a plain dict).

Sizes: ``batch`` is the global batch (images per optimiser step over all ranks);
each rank processes ``batch_gpu`` images at a time (default ``batch / world``)
and accumulates ``batch / (world * batch_gpu)`` rounds. Randomness is a function
of (seed, step, phase, slice of the global batch), so a run's result depends on
``batch`` and ``batch_gpu`` but not on how many ranks share the slices.

Precision: ``precision: mixed`` runs the ``fp16_res`` highest-resolution blocks of G
and D in half precision (float16 on CUDA, bfloat16 on CPUs), as StyleGAN2-ADA's
``num_fp16_res``; ``conv_clamp: auto`` is then 256 (StyleGAN2-ADA's value), and None
(no clamping) with ``precision: fp32``. :meth:`TrainConfig.num_fp16_res` and
:meth:`TrainConfig.resolved_conv_clamp` give what the networks are built with.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from hpcgan.errors import HpcganError

ARCHS = ("stylegan2", "cdcgan")
AUG_MODES = ("ada", "fixed", "noaug")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "mixed")
MIXED_CONV_CLAMP = 256.0  # StyleGAN2-ADA's clamp of every convolution output with mixed precision

# Fields that may differ from a snapshot's config when resuming: they change how the
# run is executed and logged, not what it computes.
RESUMABLE_OVERRIDES = ("kimg", "tick_kimg", "snap", "metric_every", "fid_num_fake", "fid_num_real", "feature_net",
                       "fid_cache_dir", "impl", "device", "workers", "progress", "data", "outdir", "resume")


@dataclass
class TrainConfig:
    """Everything ``hpcgan train-gan`` needs; every field is a YAML key (and most a CLI flag)."""

    data: str = ""  # preprocessed shards (output of `hpcgan preprocess`)
    outdir: str = "runs"  # a numbered run directory is made in here
    arch: str = "stylegan2"  # stylegan2 | cdcgan
    resume: str | None = None  # snapshot path, a run directory, or "latest" (newest snapshot under outdir)

    # data and labels
    split: str = "train"
    classes: list | None = None  # class names to train on (default: all); one class = single-class training
    cond: bool = False  # class-conditional (one generator for all the classes)
    workers: int = 0  # DataLoader worker processes per rank (0: read in the training process)

    # length, batch, seed
    kimg: float = 25000.0  # total length in thousands of real images shown to D (resume continues to it)
    batch: int = 32  # global batch size
    batch_gpu: int | None = None  # images per rank per round (default batch / world)
    seed: int = 0

    # StyleGAN2 networks
    z_dim: int = 512
    w_dim: int = 512
    channel_base: int = 16384
    channel_max: int = 512
    mapping_layers: int = 8
    mbstd_group: int = 4
    conv_clamp: float | str | None = "auto"  # a number, None/"none" (off) or "auto": 256 with mixed precision, else off

    # StyleGAN2 optimisation
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    betas: list = field(default_factory=lambda: [0.0, 0.99])
    r1_gamma: float | str = "auto"  # a number, or "auto" = 0.0002 * resolution^2 / batch (StyleGAN2-ADA)
    pl_weight: float = 2.0
    style_mixing_prob: float = 0.9
    g_reg_interval: int = 4
    d_reg_interval: int = 16
    ema_kimg: float | None = None  # None: batch * 10 / 32 (StyleGAN2-ADA auto)
    ema_rampup: float | None = 0.05  # None: no ramp-up

    # ADA
    aug: str = "ada"  # ada | fixed | noaug
    aug_p: float = 0.0  # initial (ada) or constant (fixed) augmentation probability
    augpipe: str = "bgc"  # groups: b(litting), g(eometric), c(olour)
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 500.0

    # cDCGAN baseline
    cdcgan_z_dim: int = 100
    cdcgan_filters: int = 64
    cdcgan_embed: int = 50
    cdcgan_lr: float = 0.0002
    cdcgan_beta1: float = 0.5
    cdcgan_d_every: int = 1  # update D once every this many G steps (the study's schedule: 10)

    # logging, snapshots, metrics
    tick_kimg: float = 4.0  # progress/log interval in kimg
    snap: int = 50  # snapshot (and sample grid) every this many ticks (0: only at the end)
    metric_every: int = 0  # FID every this many ticks (0: never)
    fid_num_fake: int = 5000
    fid_num_real: int | None = None  # None: the whole split
    feature_net: str | None = None  # FID feature network (None: the metrics module's default)
    fid_cache_dir: str | None = None
    grid_cols: int = 8  # sample grid (fakes-*.png, reals.png): columns
    grid_rows: int = 8  # sample grid rows; conditional: split evenly among the classes, one class per row

    # precision (StyleGAN2 only)
    precision: str = "fp32"  # fp32 | mixed (half in the fp16_res highest-resolution blocks: fp16 on CUDA, bf16 on CPU)
    fp16_res: int = 4  # with mixed: how many of the highest resolutions of G and D are half (StyleGAN2-ADA: 4)

    # execution
    impl: str = "auto"  # op implementation: auto | native | ref
    device: str = "auto"  # auto | cpu | cuda
    progress: str | bool = "auto"  # auto | bar | lines | off (hpcgan.progress); true/false = auto/off

    def validate(self) -> None:
        if not self.data:
            raise HpcganError("--data is required: a folder written by `hpcgan preprocess`")
        if self.arch not in ARCHS:
            raise HpcganError(f"--arch must be one of {ARCHS}, got {self.arch!r}")
        if self.aug not in AUG_MODES:
            raise HpcganError(f"--aug must be one of {AUG_MODES}, got {self.aug!r}")
        if self.device not in DEVICES:
            raise HpcganError(f"--device must be one of {DEVICES}, got {self.device!r}")
        if self.impl not in ("auto", "native", "ref"):
            raise HpcganError(f"--impl must be auto, native or ref, got {self.impl!r}")
        if self.batch < 1 or (self.batch_gpu is not None and self.batch_gpu < 1):
            raise HpcganError(f"--batch and --batch-gpu must be >= 1, got {self.batch}, {self.batch_gpu}")
        if not self.kimg > 0:
            raise HpcganError(f"--kimg must be > 0, got {self.kimg}")
        if not self.tick_kimg > 0:
            raise HpcganError(f"--tick-kimg must be > 0, got {self.tick_kimg}")
        if self.snap < 0 or self.metric_every < 0:
            raise HpcganError("--snap and --metric-every must be >= 0 (0: off)")
        if not 0 <= self.aug_p <= 1:
            raise HpcganError(f"--aug-p must be in [0, 1], got {self.aug_p}")
        if isinstance(self.r1_gamma, str) and self.r1_gamma != "auto":
            raise HpcganError(f"--gamma must be a number or 'auto', got {self.r1_gamma!r}")
        if self.cdcgan_d_every < 1:
            raise HpcganError(f"--cdcgan-d-every must be >= 1, got {self.cdcgan_d_every}")
        if self.classes is not None and (not isinstance(self.classes, list) or not self.classes):
            raise HpcganError(f"classes must be a non-empty list of class names, got {self.classes!r}")
        if not isinstance(self.betas, (list, tuple)) or len(self.betas) != 2:
            raise HpcganError(f"betas must be two numbers, got {self.betas!r}")
        self._validate_precision()

    def _validate_precision(self) -> None:
        if self.precision not in PRECISIONS:
            raise HpcganError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if isinstance(self.fp16_res, bool) or not isinstance(self.fp16_res, int) or self.fp16_res < 0:
            raise HpcganError(f"--fp16-res must be an integer >= 0 (blocks in half precision), got {self.fp16_res!r}")
        if self.precision == "mixed" and self.arch != "stylegan2":
            raise HpcganError(f"--precision mixed is for --arch stylegan2; the {self.arch} baseline trains in fp32: "
                              "drop --precision or set it to fp32")
        c = self.conv_clamp
        if not (c is None or c in ("auto", "none") or (isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0)):
            raise HpcganError(f"--conv-clamp must be a number > 0, 'auto' or 'none', got {c!r}")

    def num_fp16_res(self) -> int:
        """Blocks of G and D built in half precision: ``fp16_res`` with mixed precision, else 0."""
        return int(self.fp16_res) if self.precision == "mixed" else 0

    def resolved_conv_clamp(self) -> float | None:
        """The clamp the networks use: the number, None, or for "auto" 256 with mixed precision and None with fp32."""
        if self.conv_clamp == "auto":
            return MIXED_CONV_CLAMP if self.precision == "mixed" else None
        return None if self.conv_clamp in (None, "none") else float(self.conv_clamp)

    def gamma(self, resolution: int) -> float:
        """The R1 weight: the number, or StyleGAN2-ADA's heuristic for "auto"."""
        if self.r1_gamma == "auto":
            return 0.0002 * resolution ** 2 / self.batch
        return float(self.r1_gamma)

    def ema_nimg(self) -> float:
        kimg = self.batch * 10 / 32 if self.ema_kimg is None else self.ema_kimg
        return kimg * 1000


def field_names() -> list[str]:
    return [f.name for f in fields(TrainConfig)]
