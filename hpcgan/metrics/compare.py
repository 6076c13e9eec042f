"""Generated shards against real shards: FID/KID, image similarity, memorisation (``hpcgan metrics``).

Sets (each capped at ``num`` images, a seeded subset):

* generated: every image of ``fake_dir`` (all its splits, or ``split_fake``);
* reference: the real ``split_real`` images (default ``test``: images the GAN never saw);
* training: the real ``split_train`` images (default ``train``: what the GAN learnt from).

Generated vs reference: FID, KID, and RMSE/PSNR/SRE/SAM/SSIM with each generated image
paired with its nearest reference image by RMSE (generated images have no natural
partner). Baseline (the floor a generator can approach): the same numbers for real
training images (as many as there are generated images) against the same reference set.
Memorisation: each generated image's nearest training image by RMSE, judged against
the nearest-training distances of the reference images (``similarity.pairwise_nearest``).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from hpcgan.errors import HpcganError
from hpcgan.metrics import fid as _fid
from hpcgan.metrics import similarity as _sim

ALL_METRICS = ("fid", "kid", "rmse", "psnr", "sre", "sam", "ssim", "memorisation")
_ALIASES = {"memorization": "memorisation", "memo": "memorisation"}
LABELS = {"rmse": "RMSE", "psnr": "PSNR (dB)", "sre": "SRE (dB)", "sam": "SAM (deg)", "ssim": "SSIM"}


def parse_metrics(spec) -> tuple[str, ...]:
    """``"fid,kid,..."`` or a sequence -> a validated tuple in canonical order."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [_ALIASES.get(s.strip().lower(), s.strip().lower()) for s in items if s.strip()]
    if "all" in names:
        return ALL_METRICS
    unknown = sorted(set(names) - set(ALL_METRICS))
    if unknown or not names:
        raise HpcganError(f"unknown metrics {unknown or spec!r}; choose from {','.join(ALL_METRICS)} (or all)")
    return tuple(m for m in ALL_METRICS if m in names)


def _load_set(out, splits: list[str] | None, num: int | None) -> tuple[torch.Tensor, list[str], int]:
    """uint8 images [N, 1, R, R] of the given splits (None: every non-empty split), the split names, R.

    With ``num``, a seeded (seed 0) random subset of ``num`` images, the same one
    ``fid.real_features`` takes for a single split.
    """
    from hpcgan.data.dataset import ShardDataset
    from hpcgan.data.shards import read_manifest

    if not Path(out).is_dir():
        raise HpcganError(f"{out}: no such directory; pass a folder written by `hpcgan preprocess` or "
                          "`hpcgan generate` (it holds manifest.json and the shards)")
    manifest = read_manifest(out)
    if splits is None:
        splits = [s for s, per in manifest["counts"].items() if sum(per.values()) > 0]
        if not splits:
            raise HpcganError(f"{out} holds no images")
    else:
        for s in splits:
            _fid._split_shards(out, s)
    sets = [ShardDataset(out, s, raw=True) for s in splits]
    offsets = np.cumsum([0] + [len(d) for d in sets])
    idx = _fid.subset_indices(int(offsets[-1]), num)
    parts = []
    for k, d in enumerate(sets):
        mine = idx[(idx >= offsets[k]) & (idx < offsets[k + 1])] - offsets[k]
        if len(mine):
            parts.append(torch.stack([x for x, _ in d.__getitems__([int(i) for i in mine])]))
    res = int(manifest["settings"]["resolution"])
    imgs = torch.cat(parts) if parts else torch.zeros((0, 1, res, res), dtype=torch.uint8)
    return imgs, list(splits), res


def load_images(out, splits: list[str] | None = None, num: int | None = None) -> tuple[torch.Tensor, list[str], int]:
    """The image sets :func:`compare_shards` compares: uint8 ``[N, 1, R, R]``, the splits, R (same subsets)."""
    return _load_set(out, splits, num)


def _summary(v: torch.Tensor) -> dict:
    a = v.numpy().astype(np.float64)
    fin = a[np.isfinite(a)]
    return {"mean": float(fin.mean()) if len(fin) else math.nan,
            "std": float(fin.std()) if len(fin) else math.nan,
            "median": float(np.median(a)) if len(a) else math.nan,
            "n": int(len(a)), "n_infinite": int((~np.isfinite(a)).sum())}


def _image_metrics(query: torch.Tensor, pool: torch.Tensor, names: list[str]) -> dict:
    idx, _ = _sim.nearest_distances(query, pool, "rmse")
    vals = _sim.compute_similarity(pool[idx], query, names)
    return {m: _summary(v) for m, v in vals.items()}


def compare_shards(real_dir, fake_dir, metrics=("fid", "kid"), split_real: str = "test", split_fake=None,
                   feature_net=None, split_train: str = "train", num: int | None = None, baseline: bool = True,
                   cache_dir=None, batch: int = 64, device="cpu", kid_subsets: int = 100, kid_subset_size: int = 1000,
                   fid_method: str = "sqrtm", seed: int = 0, progress: bool = False) -> dict:
    """Compare the generated shards in ``fake_dir`` with the real shards in ``real_dir`` (see the module docstring).

    Returns a JSON-able dict: ``generated`` and ``baseline`` hold ``fid`` (float),
    ``kid`` (``{"mean", "std"}``) and per-metric summaries (``mean``, ``std``,
    ``median``, ``n``, ``n_infinite``; the mean and std skip infinite values, e.g. the
    PSNR of an exact copy); ``memorisation`` holds the check's summary; ``extractor``
    names the feature network; ``pairing`` says how images were paired.
    """
    metrics = parse_metrics(metrics)
    for flag, v in (("batch", batch), ("kid subsets", kid_subsets), ("kid subset size", kid_subset_size)):
        if int(v) < 1:
            raise HpcganError(f"{flag} must be at least 1, got {v}")
    if num is not None and int(num) < 2:
        raise HpcganError(f"--num must be at least 2 (statistics need two images per set), got {num}")
    if isinstance(split_fake, str):
        split_fake = [s.strip() for s in split_fake.split(",") if s.strip()]
    fake_manifest_dir = Path(fake_dir)
    _fid._split_shards(real_dir, split_real)
    want_features = any(m in metrics for m in ("fid", "kid"))
    want_pixels = [m for m in metrics if m in _sim.SIMILARITY_METRICS]
    want_memo = "memorisation" in metrics
    has_train = split_train != split_real
    if has_train:
        try:
            _fid._split_shards(real_dir, split_train)
        except HpcganError:
            has_train = False
    if want_memo and not has_train:
        raise HpcganError(f"the memorisation check needs the real training split {split_train!r} in {real_dir} "
                          "(different from --real-split); pass --train-split or drop memorisation from --metrics")

    fake, fake_splits, fake_res = _load_set(fake_manifest_dir, split_fake, num)
    if len(fake) < 2:
        raise HpcganError(f"{fake_dir} holds {len(fake)} image(s); FID/KID and the statistics need at least 2")
    res: dict = {
        "real_dir": str(real_dir), "fake_dir": str(fake_dir), "split_real": split_real,
        "split_train": split_train if has_train else None, "split_fake": fake_splits, "metrics": list(metrics),
        "n": {"generated": int(len(fake))}, "extractor": None, "generated": {}, "baseline": {}, "notes": [],
    }
    do_baseline = baseline and has_train
    n_base = None
    if do_baseline:
        from hpcgan.data.dataset import ShardDataset

        n_train = len(ShardDataset(real_dir, split_train))
        n_base = min(n_train, len(fake), num if num is not None else n_train)

    if want_features:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            net = _fid.load_feature_net(feature_net, device)
        for w in caught:
            res["notes"].append(str(w.message))
        res["extractor"] = net.name
        res["fid_method"] = fid_method
        ref = _fid.real_features(real_dir, split_real, net, num_real=num, cache_dir=cache_dir, batch=batch,
                                 progress=progress)
        res["n"]["real"] = ref["n"]
        ff = net.features(fake, batch=batch)
        sets = [("generated", ff)]
        if do_baseline:
            tr = _fid.real_features(real_dir, split_train, net, num_real=n_base, cache_dir=cache_dir, batch=batch,
                                    progress=progress)
            sets.append(("baseline", tr["feats"].astype(np.float64)))
        for key, f in sets:
            if "fid" in metrics:
                mu, sigma = _fid.feature_stats(f)
                res[key]["fid"] = _fid.frechet_distance(mu, sigma, ref["mu"], ref["sigma"], method=fid_method)
            if "kid" in metrics:
                m, s = _fid.kid(f, ref["feats"].astype(np.float64), kid_subsets, kid_subset_size, seed=seed)
                res[key]["kid"] = {"mean": m, "std": s}

    if want_pixels or want_memo:
        real, _, real_res = _load_set(real_dir, [split_real], num)
        res["n"]["real"] = int(len(real))
        if fake_res != real_res:
            raise HpcganError(f"generated images are {fake_res}x{fake_res} but the real ones {real_res}x{real_res}; "
                              "pixel metrics need equal sizes: preprocess the real data with --resolution "
                              f"{fake_res} (or compare FID/KID only: --metrics fid,kid)")
        train = _load_set(real_dir, [split_train], num)[0] if has_train and (do_baseline or want_memo) else None
        if want_pixels:
            res["generated"].update(_image_metrics(fake, real, want_pixels))
            res["pairing"] = (f"each generated image with its nearest real {split_real} image by RMSE"
                              + (f"; baseline: each of {n_base} real {split_train} images "
                                 f"with its nearest real {split_real} image" if do_baseline else ""))
            if do_baseline:
                q = train[torch.as_tensor(_fid.subset_indices(len(train), n_base))]
                res["baseline"].update(_image_metrics(q, real, want_pixels))
        if want_memo:
            memo = _sim.pairwise_nearest(fake, train, "rmse", real_test=real)
            res["memorisation"] = memo["summary"]
            res["n"]["train"] = int(len(train))
    if do_baseline and n_base is not None:
        res["n"]["baseline"] = n_base
    if not do_baseline:
        res["baseline"] = {}
        if baseline:
            res["notes"].append(f"no real-vs-real baseline: {real_dir} has no split {split_train!r} besides "
                                f"{split_real!r}")
    return res


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict):
        if "mean" in v and "median" in v:
            s = f"{_fmt(v['mean'], digits)} ± {_fmt(v['std'], digits)}"
            return s + (f" ({v['n_infinite']} inf)" if v.get("n_infinite") else "")
        return f"{_fmt(v['mean'], digits)} ± {_fmt(v['std'], digits)}"
    if isinstance(v, float):
        if math.isinf(v) or math.isnan(v):
            return str(v)
        return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
    return str(v)


def format_markdown(res: dict) -> str:
    """The result of ``compare_shards`` as a markdown table with its notes."""
    split_real = res["split_real"]
    has_base = bool(res.get("baseline"))
    head = f"| metric | generated vs real {split_real} |"
    sep = "| --- | --- |"
    if has_base:
        head += f" real {res['split_train']} vs real {split_real} (baseline) |"
        sep += " --- |"
    lines = [head, sep]
    ext = res.get("extractor")
    for m in res["metrics"]:
        if m in ("fid", "kid"):
            label = f"{m.upper()} [{ext}]" + (" (x1000)" if m == "kid" else "")
            vals = []
            for key in ("generated", "baseline") if has_base else ("generated",):
                v = res[key].get(m)
                if m == "kid" and v is not None:
                    v = {"mean": v["mean"] * 1000, "std": v["std"] * 1000}
                vals.append(_fmt(v, 3))
        elif m in LABELS:
            label = f"{LABELS[m]}, nearest pair"
            vals = [_fmt(res[key].get(m)) for key in (("generated", "baseline") if has_base else ("generated",))]
        else:
            continue
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    memo = res.get("memorisation")
    if memo:
        verdict = "FLAGGED" if memo["flagged"] else "ok"
        lines.append(f"| memorisation ({memo['metric'].upper()} to nearest real {res['split_train']}) | "
                     f"{verdict}: {memo['fraction_closer_than_real_median']:.2f} closer than the real median "
                     f"({memo['reference_median']:.4f}); {memo['near_copies']}/{memo['n_generated']} near copies "
                     f"(< {memo['near_copy_threshold']:.4f}) |" + (" - |" if has_base else ""))
    n = res["n"]
    lines.append("")
    desc = [f"generated: {n['generated']} images from {res['fake_dir']} ({', '.join(res['split_fake'])})"]
    if "real" in n:
        desc.append(f"real {split_real}: {n['real']}")
    if "baseline" in n:
        desc.append(f"baseline real {res['split_train']}: {n['baseline']}")
    if "train" in n:
        desc.append(f"real {res['split_train']} (memorisation pool): {n['train']}")
    lines.append("; ".join(desc))
    if ext:
        lines.append(f"feature extractor: {ext} (FID via {res.get('fid_method', 'sqrtm')}); "
                     "FID/KID are only comparable between runs with the same extractor and image counts")
    if res.get("pairing"):
        lines.append(f"pairing: {res['pairing']}")
    if memo:
        lines.append(f"memorisation criterion: {memo['criterion']}")
    for note in res.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def write_json(path: str | os.PathLike, res: dict) -> None:
    """Write the result atomically (temporary name, then rename); infinities become strings."""
    import json

    from hpcgan.data.shards import atomic_write_text

    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, float) and (math.isinf(o) or math.isnan(o)):
            return str(o)
        return o

    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(clean(res), indent=1) + "\n")
