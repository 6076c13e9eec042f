"""Image similarity metrics and the memorisation check.

Every metric takes two batches ``x`` (the reference, a real image) and ``y`` (the
image being judged, e.g. a generated one) of shape ``[N, C, H, W]`` (or ``[C, H, W]``
for a single pair) with values in ``[0, 1]``, and returns one value per image pair
as a float64 tensor ``[N]``. They are computed in float64.

=========  ===============================================================  ===========
metric     formula (per image pair, ``n`` = number of values C*H*W)         identical
=========  ===============================================================  ===========
RMSE       ``sqrt(sum((x - y)^2) / n)``                                     0
PSNR       ``10 log10(R^2 / MSE)``, ``R`` = data range (1), in dB           +inf
SRE        ``10 log10(mean(x)^2 / (||x - y||^2 / n))``, in dB               +inf
SAM        angle between ``x`` and ``y`` taken as vectors, in degrees       0
SSIM       mean of the SSIM map (Wang et al. 2004), Gaussian window 11,     1
           sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, valid region
=========  ===============================================================  ===========

SRE (signal-to-reconstruction error, as in the image-fusion / super-resolution
literature, e.g. Lanaras et al. 2018) is the reference image's squared mean
intensity over the mean squared error: higher is better, and unlike PSNR it is
relative to the brightness of the reference image.

SAM (spectral angle mapper) is normally the mean over pixels of the angle between
the two spectra at a pixel; for one-channel images that angle is 0 everywhere (two
positive scalars point the same way), so here the whole image is the vector:
``angle = arccos(<x, y> / (||x|| ||y||))``. It is 0 for any positive multiple of
the reference (it ignores brightness), and is computed with the numerically stable
form ``2 atan2(||x/|x| - y/|y|||, ||x/|x| + y/|y|||)``. An all-zero image has no
direction; it is given 90 degrees.

Generated images have no paired real image: ``pairwise_nearest`` pairs each one with
its nearest real image, and the caller reports which pairing it used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "rmse", "mse", "psnr", "sre", "sam", "ssim", "SIMILARITY_METRICS", "compute_similarity",
    "pairwise_nearest", "nearest_distances", "memorisation_summary",
]


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim == 3:
        x, y = x[None], y[None]  # [1, C, H, W]
    if x.ndim != 4:
        raise ValueError(f"expected images [N, C, H, W] or [C, H, W], got shape {tuple(x.shape)}")
    return x.to(torch.float64), y.to(torch.float64)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: ``sum((x - y)^2) / n``."""
    x, y = _pair(x, y)
    return (x - y).square().flatten(1).mean(1)  # [N, C*H*W] -> [N]


def rmse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Root mean squared error per image: ``sqrt(sum((x - y)^2) / n)``; 0 for identical images."""
    return mse(x, y).sqrt()


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB: ``10 log10(data_range^2 / MSE)``.

    ``data_range`` is 1 for images in [0, 1]. Identical images give ``+inf``.
    """
    m = mse(x, y)
    out = 10.0 * torch.log10(float(data_range) ** 2 / m)
    return torch.where(m == 0, torch.full_like(m, math.inf), out)


def sre(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Signal-to-reconstruction error per image in dB: ``10 log10(mean(x)^2 / (||x - y||^2 / n))``.

    ``x`` is the reference (real) image, ``y`` the reconstruction (generated image);
    the measure is not symmetric. Identical images give ``+inf``; an all-zero
    reference gives ``-inf`` (unless ``y`` is also all zero).
    """
    x, y = _pair(x, y)
    m = (x - y).square().flatten(1).mean(1)  # [N]
    mu2 = x.flatten(1).mean(1).square()  # [N]
    out = 10.0 * torch.log10(mu2 / m)
    return torch.where(m == 0, torch.full_like(m, math.inf), out)


def sam(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Spectral angle in degrees between ``x`` and ``y``, each image taken as one vector.

    ``arccos(<x, y> / (||x|| ||y||))`` evaluated as ``2 atan2(||u - v||, ||u + v||)``
    with ``u = x/||x||``, ``v = y/||y||`` (accurate near 0). 0 for ``y = a * x``
    with ``a > 0``; 90 when either image is all zero.
    """
    x, y = _pair(x, y)
    xf, yf = x.flatten(1), y.flatten(1)  # [N, C*H*W]: each image one vector
    nx, ny = xf.norm(dim=1, keepdim=True), yf.norm(dim=1, keepdim=True)  # [N, 1]
    zero = (nx[:, 0] == 0) | (ny[:, 0] == 0)
    u = xf / nx.clamp_min(torch.finfo(torch.float64).tiny)
    v = yf / ny.clamp_min(torch.finfo(torch.float64).tiny)
    ang = 2.0 * torch.atan2((u - v).norm(dim=1), (u + v).norm(dim=1))
    ang = torch.rad2deg(ang)
    return torch.where(zero, torch.full_like(ang, 90.0), ang)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity per image (Wang, Bovik, Sheikh and Simoncelli 2004).

    Local means, variances and covariance are taken with a normalised Gaussian window
    (``win_size`` 11, ``sigma`` 1.5; separable, 'valid' region only, no padding), with
    ``C1 = (k1 R)^2``, ``C2 = (k2 R)^2``, ``R = data_range`` (1 for [0, 1] images) and
    sample (biased) local statistics; the SSIM map
    ``(2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``
    is averaged over the valid region and the channels. Identical images give 1.
    Images must be at least ``win_size`` pixels on each side.
    """
    x, y = _pair(x, y)
    n, c, h, w = x.shape
    if h < win_size or w < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}x{win_size} pixels, got {h}x{w}")
    g = _gaussian_window(win_size, sigma).to(x.device)
    gh = g.view(1, 1, 1, win_size).expand(c, 1, 1, win_size)  # [C, 1, 1, win]: a row filter per channel
    gv = g.view(1, 1, win_size, 1).expand(c, 1, win_size, 1)  # [C, 1, win, 1]: a column filter per channel

    def blur(t: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, C, H - win + 1, W - win + 1] ('valid')
        return F.conv2d(F.conv2d(t, gh, groups=c), gv, groups=c)

    # local statistics and the SSIM map, on the valid region
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    smap = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return smap.flatten(1).mean(1)  # [N]: mean over channels and the valid region


SIMILARITY_METRICS = {"rmse": rmse, "psnr": psnr, "sre": sre, "sam": sam, "ssim": ssim}
UNITS = {"rmse": "", "psnr": "dB", "sre": "dB", "sam": "deg", "ssim": ""}


def _as_unit_float(t: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float in [0, 1]; float tensors are taken as already in [0, 1]."""
    if t.dtype == torch.uint8:
        return t.to(torch.float32) / 255.0
    return t


def compute_similarity(reference: torch.Tensor, images: torch.Tensor, metrics=tuple(SIMILARITY_METRICS),
                       batch: int = 256) -> dict[str, torch.Tensor]:
    """Per-pair values of the named metrics between ``reference[i]`` and ``images[i]``.

    Inputs are uint8 ([0, 255]) or float ([0, 1]) batches ``[N, C, H, W]``; returns
    ``{metric: float64 tensor [N]}``.
    """
    unknown = [m for m in metrics if m not in SIMILARITY_METRICS]
    if unknown:
        raise ValueError(f"unknown similarity metrics {unknown}; known: {sorted(SIMILARITY_METRICS)}")
    if reference.shape != images.shape:
        raise ValueError(f"reference and images differ in shape: {tuple(reference.shape)} vs {tuple(images.shape)}")
    out: dict[str, list[torch.Tensor]] = {m: [] for m in metrics}
    for s in range(0, len(images), batch):
        r = _as_unit_float(reference[s:s + batch])
        g = _as_unit_float(images[s:s + batch])
        for m in metrics:
            out[m].append(SIMILARITY_METRICS[m](r, g))
    return {m: (torch.cat(v) if v else torch.zeros(0, dtype=torch.float64)) for m, v in out.items()}


def _flat(t: torch.Tensor, metric: str) -> torch.Tensor:
    t = torch.as_tensor(t)
    if metric == "rmse":
        if t.ndim not in (3, 4):
            raise ValueError(f"metric 'rmse' needs images [N, C, H, W], got shape {tuple(t.shape)}")
        return _as_unit_float(t).flatten(1)  # [N, C*H*W]
    if metric == "feature":
        if t.ndim != 2:
            raise ValueError(f"metric 'feature' needs feature vectors [N, D], got shape {tuple(t.shape)}")
        return t
    raise ValueError(f"unknown metric {metric!r}: use 'rmse' (images in [0, 1] or uint8) or 'feature' ([N, D] vectors)")


class _LazyFlat:
    """``_flat(pool)[i]`` computed on indexing, so only the indexed rows are converted."""

    def __init__(self, pool: torch.Tensor, metric: str):
        self.pool, self.metric = pool, metric

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, i) -> torch.Tensor:
        return _flat(self.pool[i], self.metric)


def nearest_distances(query: torch.Tensor, pool: torch.Tensor, metric: str = "rmse", chunk: int = 256,
                      candidates: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """For every row of ``query`` the index of the nearest row of ``pool`` and the distance to it.

    ``metric="rmse"``: images (uint8 or [0, 1] float, same shape), distance = RMSE;
    ``metric="feature"``: feature vectors ``[N, D]``, distance = Euclidean (L2).
    Candidates are ranked with a float32 matrix product (``|a|^2 + |b|^2 - 2 a.b``,
    chunked over both sets so memory stays bounded); the best ``candidates`` of each
    query are then measured exactly in float64, so an exact copy gives distance 0.
    The pool is converted chunk by chunk, so a whole uint8 training split can be
    searched without a float copy of it. Returns ``(index int64 [N], distance float64 [N])``.
    """
    q = _flat(query, metric)
    pool = torch.as_tensor(pool)
    if len(pool) == 0:
        raise ValueError("the pool of reference images is empty")
    _flat(pool[:1], metric)  # validates the pool's shape
    if q.shape[1] != pool[0].numel():
        raise ValueError(f"query and pool differ in size per item: {q.shape[1]} vs {pool[0].numel()}")
    p = _LazyFlat(pool, metric)
    k = min(candidates, len(p))
    # the k candidates of each query: float32 squared distances, chunked over queries and pool
    best_d = torch.full((len(q), k), math.inf, dtype=torch.float32)  # [N, k]
    best_i = torch.zeros((len(q), k), dtype=torch.int64)
    for qs in range(0, len(q), chunk):
        qc = q[qs:qs + chunk].to(torch.float32)  # [n, D]
        qn = qc.square().sum(1, keepdim=True)  # [n, 1]
        bd, bi = best_d[qs:qs + chunk], best_i[qs:qs + chunk]
        for ps in range(0, len(p), chunk):
            pc = p[ps:ps + chunk].to(torch.float32)  # [m, D]
            d2 = qn + pc.square().sum(1)[None] - 2.0 * (qc @ pc.T)  # [n, m]: |a|^2 + |b|^2 - 2 a.b
            cd = torch.cat([bd, d2], 1)  # [n, k + m]: the best so far and this chunk
            ci = torch.cat([bi, torch.arange(ps, ps + len(pc)).expand(len(qc), -1)], 1)  # [n, k + m]
            top = torch.topk(cd, k, dim=1, largest=False)
            bd, bi = top.values, torch.gather(ci, 1, top.indices)
        best_d[qs:qs + chunk], best_i[qs:qs + chunk] = bd, bi
    # exact float64 distances of the candidates
    exact = torch.empty((len(q), k), dtype=torch.float64)  # [N, k]
    for j in range(k):
        diff = q.to(torch.float64) - p[best_i[:, j]].to(torch.float64)  # [N, D]
        exact[:, j] = diff.square().mean(1).sqrt() if metric == "rmse" else diff.square().sum(1).sqrt()
    pos = exact.argmin(1)
    idx = best_i.gather(1, pos[:, None])[:, 0]  # [N]
    dist = exact.gather(1, pos[:, None])[:, 0]  # [N]
    return idx, dist


def pairwise_nearest(fake: torch.Tensor, real: torch.Tensor, metric: str = "rmse", real_test: torch.Tensor | None = None,
                     near_copy_factor: float = 0.5, near_copy_quantile: float = 0.05) -> dict:
    """The memorisation check: each generated image's nearest real training image.

    ``fake``: generated images; ``real``: the real training images (the set the GAN
    saw). With ``metric="rmse"`` they are images (uint8, or float in [0, 1]) and the
    distance is RMSE; with ``metric="feature"`` they are feature vectors ``[N, D]``
    (e.g. Inception features) and the distance is Euclidean.

    Returns ``{"metric", "index", "distance"}`` (index into ``real`` and distance for
    every generated image) and, when ``real_test`` (real images the GAN did not see,
    same kind as ``real``) is given, a ``"summary"`` with the criterion:

    * ``reference_median``: the median distance from a real test image to its nearest
      real training image — how close a genuinely new image typically is to the
      training set.
    * ``fraction_closer_than_real_median``: the fraction of generated images whose
      nearest-training distance is below that median. A generator that makes images
      as novel as new real data scores about 0.5; values near 1 mean the generated
      images sit closer to the training set than new real images do (memorisation).
    * ``near_copy_threshold`` = ``near_copy_factor`` (0.5) x the ``near_copy_quantile``
      (5th percentile) of the real test-to-train distances, and ``near_copies`` /
      ``near_copy_fraction``: generated images closer than that to a training image
      (closer than almost any real pair): likely copies, a privacy leak.
    * ``flagged``: True when any near copy is found or when
      ``fraction_closer_than_real_median`` exceeds 0.75.
    """
    idx, dist = nearest_distances(fake, real, metric)
    out = {"metric": metric, "index": idx, "distance": dist}
    if real_test is not None:
        _, ref = nearest_distances(real_test, real, metric)
        out["reference_distance"] = ref
        out["summary"] = memorisation_summary(dist, ref, len(torch.as_tensor(real)), metric, near_copy_factor,
                                              near_copy_quantile)
    return out


def memorisation_summary(dist: torch.Tensor, ref: torch.Tensor, n_train: int, metric: str = "rmse",
                         near_copy_factor: float = 0.5, near_copy_quantile: float = 0.05) -> dict:
    """The memorisation criterion (see ``pairwise_nearest``) from nearest-training distances.

    ``dist``: each generated image's distance to its nearest training image; ``ref``:
    the same for real test images; ``n_train``: the size of the training pool searched.
    """
    dist, ref = torch.as_tensor(dist, dtype=torch.float64), torch.as_tensor(ref, dtype=torch.float64)
    med = float(torch.quantile(ref, 0.5)) if len(ref) else math.nan
    q = float(torch.quantile(ref, near_copy_quantile)) if len(ref) else math.nan
    thr = near_copy_factor * q
    below = float((dist < med).double().mean()) if len(dist) else math.nan
    copies = int((dist < thr).sum())
    return {
        "metric": metric,
        "n_generated": int(len(dist)),
        "n_train": int(n_train),
        "n_test": int(len(ref)),
        "generated_median": float(torch.quantile(dist, 0.5)) if len(dist) else math.nan,
        "reference_median": med,
        "fraction_closer_than_real_median": below,
        "near_copy_threshold": thr,
        "near_copies": copies,
        "near_copy_fraction": copies / len(dist) if len(dist) else math.nan,
        "flagged": bool(copies > 0 or below > 0.75),
        "criterion": (f"reference = nearest-training-image distance of real test images; near copy = distance < "
                      f"{near_copy_factor} x its {near_copy_quantile:.0%} quantile; flagged when any near copy or "
                      f"more than 75% of generated images are closer than the reference median"),
    }
