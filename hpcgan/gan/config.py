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

from hpcgan.config import csv_list, progress_setting, setting
from hpcgan.dist import DEVICES
from hpcgan.errors import HpcganError
from hpcgan.gan.augment import ADA_MODES as AUG_MODES
from hpcgan.ops._native import IMPLS

ARCHS = ("stylegan2", "cdcgan")
PRECISIONS = ("fp32", "mixed")
MIXED_CONV_CLAMP = 256.0  # StyleGAN2-ADA's clamp of every convolution output with mixed precision

# Fields that may differ from a snapshot's config when resuming: they change how the
# run is executed and logged, not what it computes.
RESUMABLE_OVERRIDES = ("kimg", "tick_kimg", "snap", "metric_every", "fid_num_fake", "fid_num_real", "feature_net",
                       "fid_cache_dir", "impl", "device", "workers", "progress", "data", "outdir", "resume")


def parse_gamma(value: str) -> float | str:
    """The ``--gamma`` value: a number or "auto"."""
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"expected a number or 'auto', got {value!r}") from None


def parse_conv_clamp(value: str) -> float | str:
    """The ``--conv-clamp`` value: a number, "auto" or "none"."""
    if value in ("auto", "none"):
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"expected a number, 'auto' or 'none', got {value!r}") from None


@dataclass
class TrainConfig:
    """Everything ``hpcgan train-gan`` needs; every field is a YAML key, those made with ``setting`` a CLI flag."""

    data: str = setting("", help="preprocessed shards (a folder with manifest.json)")
    outdir: str = setting("runs", help="folder for the numbered run directories")
    arch: str = setting("stylegan2", choices=ARCHS, help="StyleGAN2-ADA or the conditional DCGAN baseline")
    resume: str | None = setting(None, help="continue a run: a snapshot file, a run directory (its newest snapshot) or "
                                 "'latest' (newest snapshot under --outdir); kimg, ADA p, optimiser and RNG states carry "
                                 "over; only --kimg and logging/execution flags may change")

    # data and labels
    split: str = setting("train", help="split of the shards to train on")
    classes: list | None = setting(None, type=csv_list, default_text="all",
                                   help="comma-separated class names to train on; one class without --cond is "
                                   "single-class training")
    cond: bool = setting(False, const=True, help="class-conditional: one generator for all the training classes")
    workers: int = setting(0, help="DataLoader worker processes per rank (0: read in the training process)")

    # length, batch, seed
    kimg: float = setting(25000.0, help="total training length in thousands of real images shown (a resumed run "
                          "continues up to it)")
    batch: int = setting(32, help="global batch size (all ranks together)")
    batch_gpu: int | None = setting(None, type=int, default_text="batch / ranks",
                                    help="images per rank per round; smaller values accumulate gradients")
    seed: int = setting(0, help="random seed (network init, data order, latents)")

    # StyleGAN2 networks
    z_dim: int = 512
    w_dim: int = 512
    channel_base: int = 16384
    channel_max: int = 512
    mapping_layers: int = 8
    mbstd_group: int = 4
    conv_clamp: float | str | None = setting("auto", type=parse_conv_clamp,
                                             default_text="auto: 256 with --precision mixed, none with fp32",
                                             help="clamp every convolution output to +-N: a number, 'none', or 'auto'")

    # StyleGAN2 optimisation
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    betas: list = field(default_factory=lambda: [0.0, 0.99])
    r1_gamma: float | str = setting("auto", flag="--gamma", type=parse_gamma,
                                    help="R1 weight, or 'auto' = 0.0002 * resolution^2 / batch (StyleGAN2-ADA's "
                                    "heuristic)")
    pl_weight: float = 2.0
    style_mixing_prob: float = 0.9
    g_reg_interval: int = 4
    d_reg_interval: int = 16
    ema_kimg: float | None = None  # None: batch * 10 / 32 (StyleGAN2-ADA auto)
    ema_rampup: float | None = 0.05  # None: no ramp-up

    # ADA
    aug: str = setting("ada", choices=AUG_MODES, help="ADA mode: tune p (ada), constant --aug-p (fixed), or no "
                       "augmentation")
    aug_p: float = setting(0.0, help="initial (ada) or constant (fixed) augmentation probability")
    augpipe: str = "bgc"  # groups: b(litting), g(eometric), c(olour)
    ada_target: float = setting(0.6, flag="--target", help="ADA target for the mean sign of D on reals")
    ada_interval: int = 4
    ada_kimg: float = 500.0

    # cDCGAN baseline
    cdcgan_z_dim: int = 100
    cdcgan_filters: int = 64
    cdcgan_embed: int = 50
    cdcgan_lr: float = 0.0002
    cdcgan_beta1: float = 0.5
    cdcgan_d_every: int = setting(1, help="cdcgan: update D once every N generator steps (the study's schedule: 10)")

    # logging, snapshots, metrics
    tick_kimg: float = setting(4.0, help="log a stats.jsonl line every this many kimg")
    snap: int = setting(50, help="snapshot and sample grid every N ticks (0: at the end only)")
    metric_every: int = setting(0, help="FID of G_ema against the training split's images of the training classes "
                                "every N ticks (0: never); a conditional generator also gets one FID per class")
    fid_num_fake: int = setting(5000, flag="--fid-num", aliases=("--fid-num-fake",),
                                help="generated images per FID measurement; stats.jsonl names the FID with its sample "
                                "sizes, e.g. fid5k_full; 50000 with the whole split is NVlabs' fid50k_full")
    fid_num_real: int | None = setting(None, type=int, default_text="all of the split",
                                       help="real images of the training classes for the FID statistics")
    feature_net: str | None = setting(None, default_text="the metrics module's choice, named in stats.jsonl",
                                      help="FID feature network file")
    fid_cache_dir: str | None = setting(None, help="cache for real-set FID statistics")
    grid_cols: int = 8  # sample grid (fakes-*.png, reals.png): columns
    grid_rows: int = 8  # sample grid rows; conditional: split evenly among the classes, one class per row

    # precision (StyleGAN2 only)
    precision: str = setting("fp32", choices=PRECISIONS,
                             help="stylegan2: fp32 or mixed = the --fp16-res highest-resolution blocks of G and D in "
                             "half precision (float16 on CUDA, bfloat16 on CPU), as StyleGAN2-ADA; parameters, the "
                             "mapping network and D's 4x4 head stay fp32; NaN/inf gradients are zeroed and counted in "
                             "stats.jsonl")
    fp16_res: int = setting(4, help="with --precision mixed: how many of the highest resolutions are half "
                            "(StyleGAN2-ADA's num_fp16_res is 4; never below 8x8)")

    # execution
    impl: str = setting("auto", choices=IMPLS, help="op implementation: native kernels (auto, native) or the "
                        "pure-PyTorch references")
    device: str = setting("auto", choices=DEVICES, help="auto = CUDA if present")
    progress: str | bool = progress_setting()  # true/false (older configs) = auto/off

    def validate(self) -> None:
        if not self.data:
            raise HpcganError("--data is required: a folder written by `hpcgan preprocess`")
        if self.arch not in ARCHS:
            raise HpcganError(f"--arch must be one of {ARCHS}, got {self.arch!r}")
        if self.aug not in AUG_MODES:
            raise HpcganError(f"--aug must be one of {AUG_MODES}, got {self.aug!r}")
        if self.device not in DEVICES:
            raise HpcganError(f"--device must be one of {DEVICES}, got {self.device!r}")
        if self.impl not in IMPLS:
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
