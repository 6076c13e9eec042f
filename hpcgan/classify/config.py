"""The settings of one classifier run (``hpcgan classify``): :class:`ClassifyConfig`.

Loaded like every stage's config (:func:`hpcgan.config.load`: YAML + overrides);
:func:`validate` checks the values a user can get wrong and names the setting;
:func:`resolved_image_size` gives the model's input side when ``image_size`` is unset.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcgan.config import csv_list, progress_setting, setting
from hpcgan.dist import DEVICES
from hpcgan.errors import HpcganError

MODELS = ("inception_v3", "efficientnet_b0", "small_cnn")
AUGS = ("none", "classic", "gan", "classic+gan", "rebalance")
BALANCES = ("none", "weight", "oversample")
SELECTS = ("accuracy", "balanced", "auc")
PRETRAINED = ("auto", "yes", "no")
AMPS = ("off", "bf16", "fp16")  # torch.autocast dtype of the forward passes (fp16 with a GradScaler)
# Input side (pixels) per model when image_size is not given.
DEFAULT_IMAGE_SIZE = {"inception_v3": 299, "efficientnet_b0": 224, "small_cnn": 64}
# The smallest input InceptionV3's stride-2 stem and reductions accept.
INCEPTION_MIN_SIZE = 75
MIN_IMAGE_SIZE = {"inception_v3": INCEPTION_MIN_SIZE, "efficientnet_b0": 32, "small_cnn": 8}

# Fields that change nothing in the result (how it runs, not what it computes):
# ignored when deciding whether an output directory holds "the same run".
# channels_last changes the memory layout only (the same math in another summation order).
EXECUTION_FIELDS = ("outdir", "workers", "device", "progress", "channels_last")


@dataclass
class ClassifyConfig:
    """Everything ``hpcgan classify`` needs; every field is a YAML key and a CLI flag of the same name."""

    data: str = setting("", help="real shards: an `hpcgan preprocess` output folder")
    outdir: str = setting("", help="this run's directory (made if missing)")
    model: str = setting("inception_v3", choices=MODELS, help="classifier")
    aug: str = setting("none", choices=AUGS,
                       help="training-set augmentation: none, classic (rotation +-5 deg, shifts 0.05, shear 0.05, zoom "
                       "0.1, brightness 0.6-1.4), gan (add --gan-n synthetic images), classic+gan (both) or rebalance "
                       "(the gan arm's control: add as many copies of real training images per class as gan adds "
                       "synthetic ones: the counts of gan's draw from --gan-data when given, else --gan-n split over "
                       "--gan-classes, else all to the class with the fewest images)")
    gan_data: list | None = setting(None, type=csv_list, help="comma-separated `hpcgan generate` output folders (aug "
                                    "gan, classic+gan; rebalance: optional)")
    gan_n: int = setting(2000, help="synthetic images added to the training set in total, drawn with --seed; "
                         "rebalance: real copies")
    gan_classes: list | None = setting(None, type=csv_list, default_text="all in --gan-data",
                                       help="comma-separated classes of synthetic images to use; each must be one of "
                                       "the real classes")
    balance: str = setting("none", choices=BALANCES,
                           help="class-balance correction of training: none, weight (loss weight N/(K n_c) per class) "
                           "or oversample (batches drawn with replacement, every class equally likely)")
    select: str = setting("balanced", choices=SELECTS,
                          help="validation score that picks the tested epoch: balanced accuracy (the validation split "
                          "keeps the training imbalance, the test split is balanced), accuracy, or ROC AUC of the "
                          "positive class")
    classes: list | None = setting(None, type=csv_list, default_text="all in the manifest",
                                   help="comma-separated real classes, 2 or 4, in label order")
    positive_class: str | None = setting(None, default_text="the first class",
                                         help="class whose TPR/TNR/FPR/FNR and ROC are reported")
    epochs: int = setting(6, help="training epochs; a larger value continues a finished run")
    batch: int = setting(32, help="global batch size, all ranks together")
    lr: float = setting(1e-4, help="Adam learning rate")
    image_size: int | None = setting(None, type=int,
                                     default_text="299 inception_v3 (>= 75), 224 efficientnet_b0, 64 small_cnn",
                                     help="model input side in pixels")
    pretrained: str = setting("auto", choices=PRETRAINED,
                              help="ImageNet weights from $TORCH_HOME/hub/checkpoints: auto = if the file is there, "
                              "yes = required (error with the command to fetch them), no = random initialisation")
    limit_per_class: int | None = setting(None, type=int, help="use at most this many real training images per class "
                                          "(scaled-down runs)")
    seed: int = setting(0, help="seed of initialisation, data order, augmentation and the synthetic draw")
    workers: int = setting(0, help="DataLoader worker processes per rank")
    device: str = setting("auto", choices=DEVICES, help="auto = CUDA if present")
    amp: str = setting("off", choices=AMPS,
                       help="mixed precision: forward passes under torch.autocast in bfloat16 (CPUs with "
                       "AVX512-BF16/AMX, A100/H100) or float16 (GPUs; with a GradScaler that skips overflowing steps)")
    channels_last: bool = setting(False, const=True,
                                  help="model and images in channels_last memory layout (faster convolutions with "
                                  "--amp and on recent GPUs; the same result up to rounding)")
    progress: str | bool = progress_setting()  # true/false (older configs) = auto/off


def _as_list(value, name: str) -> list | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise HpcganError(f"{name} must be a list (or a comma-separated string), got {value!r}")
    return [str(v) for v in value]


def resolved_image_size(cfg: ClassifyConfig) -> int:
    return int(cfg.image_size) if cfg.image_size is not None else DEFAULT_IMAGE_SIZE[cfg.model]


def validate(cfg: ClassifyConfig) -> ClassifyConfig:
    """Check every setting a user can get wrong; HpcganError names the setting. Normalises list fields."""
    _check_paths_and_choices(cfg)
    _check_lists(cfg)
    _check_numbers(cfg)
    return cfg


def _check_paths_and_choices(cfg: ClassifyConfig) -> None:
    """data and outdir set (stored as strings); every choice field one of its choices."""
    cfg.data = str(cfg.data) if cfg.data else ""  # Path objects from callers: stored as YAML strings
    cfg.outdir = str(cfg.outdir) if cfg.outdir else ""
    if not cfg.data:
        raise HpcganError("data is not set: give --data, an `hpcgan preprocess` output folder")
    if not cfg.outdir:
        raise HpcganError("outdir is not set: give --outdir, the folder of this run")
    if cfg.model not in MODELS:
        raise HpcganError(f"model {cfg.model!r} is unknown; use one of {', '.join(MODELS)}")
    if cfg.aug not in AUGS:
        raise HpcganError(f"aug {cfg.aug!r} is unknown; use one of {', '.join(AUGS)}")
    if cfg.balance not in BALANCES:
        raise HpcganError(f"balance {cfg.balance!r} is unknown; use one of {', '.join(BALANCES)}")
    if cfg.select not in SELECTS:
        raise HpcganError(f"select {cfg.select!r} is unknown; use one of {', '.join(SELECTS)}")
    if cfg.pretrained not in PRETRAINED:
        raise HpcganError(f"pretrained {cfg.pretrained!r} is unknown; use one of {', '.join(PRETRAINED)}")
    if cfg.device not in DEVICES:
        raise HpcganError(f"device {cfg.device!r} is unknown; use one of {', '.join(DEVICES)}")
    if cfg.amp not in AMPS:
        raise HpcganError(f"amp {cfg.amp!r} is unknown; use one of {', '.join(AMPS)} (bf16 on CPUs and recent GPUs, "
                          "fp16 on GPUs)")
    if not isinstance(cfg.channels_last, bool):
        raise HpcganError(f"channels_last must be true or false, got {cfg.channels_last!r}")


def _check_lists(cfg: ClassifyConfig) -> None:
    """The list fields normalised to lists of strings; what the aug needs of them; 2 or 4 distinct classes."""
    cfg.gan_data = _as_list(cfg.gan_data, "gan_data")
    cfg.gan_classes = _as_list(cfg.gan_classes, "gan_classes")
    cfg.classes = _as_list(cfg.classes, "classes")
    if "gan" in cfg.aug:
        if not cfg.gan_data:
            raise HpcganError(f"aug {cfg.aug!r} needs gan_data: give --gan-data with `hpcgan generate` output folders")
    if "gan" in cfg.aug or cfg.aug == "rebalance":
        if int(cfg.gan_n) < 1:
            raise HpcganError(f"gan_n must be >= 1 with aug {cfg.aug!r}, got {cfg.gan_n}")
    if cfg.classes is not None and len(cfg.classes) not in (2, 4):
        raise HpcganError(f"classes must name 2 or 4 classes, got {cfg.classes}")
    if cfg.classes is not None and len(set(cfg.classes)) != len(cfg.classes):
        raise HpcganError(f"classes lists a class twice: {cfg.classes}")


def _check_numbers(cfg: ClassifyConfig) -> None:
    """Counts and rates in range; the image size at least the model's minimum."""
    for name in ("epochs", "batch"):
        if int(getattr(cfg, name)) < 1:
            raise HpcganError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if not float(cfg.lr) > 0:
        raise HpcganError(f"lr must be > 0, got {cfg.lr}")
    if cfg.limit_per_class is not None and int(cfg.limit_per_class) < 1:
        raise HpcganError(f"limit_per_class must be >= 1, got {cfg.limit_per_class}")
    if int(cfg.workers) < 0:
        raise HpcganError(f"workers must be >= 0, got {cfg.workers}")
    size = resolved_image_size(cfg)
    if size < MIN_IMAGE_SIZE[cfg.model]:
        raise HpcganError(f"image_size {size} is too small for {cfg.model}: use image_size >= "
                          f"{MIN_IMAGE_SIZE[cfg.model]}")
