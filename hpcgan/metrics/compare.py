"""Generated shards against real shards: FID/KID, image similarity, memorisation (``hpcgan metrics``).

Every comparison is between the same classes. The generated set's classes (those
with images in ``fake_dir``, matched by name; or ``classes``) pick the real images:
the real sets are ``RealSet`` values (folder, split, classes) of those classes only.

Sets:

* generated: the images of ``fake_dir`` (all its splits, or ``split_fake``), capped
  at ``num`` (a seeded subset), and for FID/KID at ``fid_num``;
* reference: the real ``split_real`` images of the classes (default ``test``: images
  the GAN never saw), capped at ``num``;
* training: the real ``split_train`` images of the classes (what the GAN learnt from).

Generated vs reference: FID (over all classes and, with two or more classes, per
class), KID, and RMSE/PSNR/SRE/SAM/SSIM with each generated image paired with its
nearest reference image of its own class by RMSE (generated images have no natural
partner). Baseline (the floor a generator can approach): the same numbers for real
training images of the same classes, as many per class as there are generated images
(the training split permitting), against the same reference set. Memorisation: each
generated image's nearest image in the WHOLE training split of its class by RMSE
(only the query sets are capped, never the pool), judged against the same distance
for the reference images (``similarity.memorisation_summary``).

Every FID carries its sample sizes (``fid_label``: ``FID (200 gen / 120 real)``).
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
from hpcgan.metrics.realset import RealSet, present_classes

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


class _Generated:
    """The generated images (uint8 [N, 1, R, R]) with their class names, read from a shard folder."""

    def __init__(self, folder, splits, classes, num: int | None):
        from hpcgan.data.shards import read_manifest

        if not Path(folder).is_dir():
            raise HpcganError(f"{folder}: no such directory; pass a folder written by `hpcgan generate` or "
                              "`hpcgan preprocess` (it holds manifest.json and the shards)")
        m = read_manifest(folder)
        if splits is None:
            splits = [s for s, per in m["counts"].items() if sum(per.values()) > 0]
            if not splits:
                raise HpcganError(f"{folder} holds no images")
        have = present_classes(m, splits)
        self.classes = list(classes) if classes is not None else have
        missing = [c for c in self.classes if c not in have]
        if missing:
            raise HpcganError(f"{folder} ({', '.join(splits)}) has no generated images of {missing}; it has {have}")
        sets = [RealSet.open(folder, s, [c for c in self.classes if m["counts"][s].get(c, 0)]).dataset(raw=True)
                for s in splits if any(m["counts"][s].get(c, 0) for c in self.classes)]
        offsets = np.cumsum([0] + [len(d) for d in sets])
        idx = _fid.subset_indices(int(offsets[-1]), num)
        imgs, names = [], []
        for k, d in enumerate(sets):
            mine = idx[(idx >= offsets[k]) & (idx < offsets[k + 1])] - offsets[k]
            if len(mine):
                items = d.__getitems__([int(i) for i in mine])
                imgs.append(torch.stack([x for x, _ in items]))  # [n, 1, R, R]
                names += [d.class_names[int(y)] for _, y in items]
        self.resolution = int(m["settings"]["resolution"])
        self.images = torch.cat(imgs) if imgs else torch.zeros(  # [N, 1, R, R]
            (0, 1, self.resolution, self.resolution), dtype=torch.uint8)
        self.names = np.asarray(names)
        self.splits = list(splits)

    def of(self, cls: str, num: int | None = None) -> torch.Tensor:
        sel = np.flatnonzero(self.names == cls)
        return self.images[torch.as_tensor(sel[_fid.subset_indices(len(sel), num)], dtype=torch.int64)]

    def count(self, cls: str) -> int:
        return int((self.names == cls).sum())


def _load_real(real: RealSet, num: int | None = None) -> dict[str, torch.Tensor]:
    """uint8 images of a real set by class: all of them or the seeded subset of ``num`` that FID uses too."""
    ds = real.dataset(raw=True)
    idx = _fid.subset_indices(len(ds), num)
    parts = list(_fid.read_images(ds, idx, 512))
    imgs = torch.cat([x for x, _ in parts]) if parts else torch.zeros((0, 1, real.resolution, real.resolution),
                                                                      dtype=torch.uint8)
    labels = torch.cat([y for _, y in parts]) if parts else torch.zeros(0, dtype=torch.int64)  # [N]
    return {c: imgs[labels == lab] for c, lab in zip(real.classes, real.labels)}


def load_images(out, splits: list[str] | None = None, num: int | None = None,
                classes=None) -> tuple[torch.Tensor, list[str], int]:
    """uint8 images ``[N, 1, R, R]`` of a shard folder's ``splits`` (None: every non-empty split) and ``classes``
    (None: all), a seeded subset of ``num`` (as :func:`compare_shards` takes it); returns them, the splits, R."""
    s = _Generated(out, splits, classes, num)
    return s.images, s.splits, s.resolution


def _summary(v: torch.Tensor) -> dict:
    a = v.numpy().astype(np.float64)
    fin = a[np.isfinite(a)]
    return {"mean": float(fin.mean()) if len(fin) else math.nan,
            "std": float(fin.std()) if len(fin) else math.nan,
            "median": float(np.median(a)) if len(a) else math.nan,
            "n": int(len(a)), "n_infinite": int((~np.isfinite(a)).sum())}


def _image_metrics(pairs: list[tuple[torch.Tensor, torch.Tensor]], names: list[str]) -> dict:
    """Summaries over every (query, pool) pair of one class each: query images paired with their nearest in pool."""
    vals: dict[str, list[torch.Tensor]] = {m: [] for m in names}
    for query, pool in pairs:
        if len(query) == 0:
            continue
        idx, _ = _sim.nearest_distances(query, pool, "rmse")
        for m, v in _sim.compute_similarity(pool[idx], query, names).items():
            vals[m].append(v)
    return {m: _summary(torch.cat(v) if v else torch.zeros(0, dtype=torch.float64)) for m, v in vals.items()}


def _fid_entry(f_gen: np.ndarray, f_real: np.ndarray, full: bool, cls, method: str, what: str = "gen") -> dict:
    mu, sigma = _fid.feature_stats(f_gen)
    mu_r, sigma_r = _fid.feature_stats(f_real)
    return {"fid": _fid.frechet_distance(mu, sigma, mu_r, sigma_r, method=method), "n_gen": int(len(f_gen)),
            "n_real": int(len(f_real)), "key": _fid.fid_key(len(f_gen), len(f_real), full, cls),
            "label": _fid.fid_label(len(f_gen), len(f_real), full, cls, what)}


def compare_shards(real_dir, fake_dir, metrics=("fid", "kid"), split_real: str = "test", split_fake=None,
                   feature_net=None, split_train: str = "train", num: int | None = None, fid_num: int | None = None,
                   classes=None, baseline: bool = True, cache_dir=None, batch: int = 64, device="cpu",
                   kid_subsets: int = 100, kid_subset_size: int = 1000, fid_method: str = "sqrtm", seed: int = 0,
                   progress: bool = False) -> dict:
    """Compare the generated shards in ``fake_dir`` with the real shards in ``real_dir`` (see the module docstring).

    ``classes``: the classes to compare (names; default: every class ``fake_dir`` has
    images of). Returns a JSON-able dict: ``generated`` and ``baseline`` hold ``fid``
    (float), ``fid_label`` / ``fid_key`` (with the sample sizes), ``kid``
    (``{"mean", "std"}``) and per-metric summaries (``mean``, ``std``, ``median``,
    ``n``, ``n_infinite``; the mean and std skip infinite values, e.g. the PSNR of an
    exact copy); ``per_class`` the per-class FIDs; ``memorisation`` the check's summary;
    ``classes``, ``n`` (counts), ``extractor`` and ``pairing`` say what was compared.
    """
    metrics = parse_metrics(metrics)
    _check_sizes(batch, kid_subsets, kid_subset_size, num, fid_num)
    # the sets: generated, reference (the same classes), training (the baseline's and memorisation's pool)
    gen, ref, train = _open_sets(real_dir, fake_dir, split_real, _names(split_fake), split_train, _names(classes), num)
    want_pixels = [m for m in metrics if m in _sim.SIMILARITY_METRICS]
    want_memo = "memorisation" in metrics
    if want_memo and train is None:
        raise HpcganError(f"the memorisation check needs the real training split {split_train!r} of classes "
                          f"{gen.classes} in {real_dir} (different from --real-split); pass --train-split or drop "
                          "memorisation from --metrics")
    do_baseline = baseline and train is not None
    res: dict = {
        "real_dir": str(real_dir), "fake_dir": str(fake_dir), "split_real": split_real,
        "split_train": train.split if train is not None else None, "split_fake": gen.splits, "metrics": list(metrics),
        "classes": list(gen.classes), "n": {"generated": int(len(gen.images))}, "extractor": None,
        "generated": {}, "baseline": {}, "per_class": {}, "notes": [],
    }
    n_base = _baseline_counts(res, gen, train, split_train) if do_baseline else {}
    res["n"]["generated_per_class"] = {c: gen.count(c) for c in gen.classes}
    # features: FID (all classes and per class) and KID
    if any(m in metrics for m in ("fid", "kid")):
        _features(res, gen, ref, train if do_baseline else None, n_base, metrics, feature_net, num, fid_num,
                  cache_dir, batch, device, kid_subsets, kid_subset_size, fid_method, seed, progress)
    # pixels: RMSE/PSNR/SRE/SAM/SSIM of nearest pairs, and the memorisation check
    if want_pixels or want_memo:
        _pixel_metrics(res, gen, ref, train, n_base if do_baseline else None, want_pixels, want_memo, num,
                       split_real, split_train)
    if not do_baseline:
        res["baseline"] = {}
        if baseline:
            res["notes"].append(f"no real-vs-real baseline: {real_dir} has no split {split_train!r} of "
                                f"{gen.classes} besides {split_real!r}")
    return res


def _check_sizes(batch, kid_subsets, kid_subset_size, num, fid_num) -> None:
    """Reject sizes the statistics cannot use (before any image is read)."""
    for flag, v in (("batch", batch), ("kid subsets", kid_subsets), ("kid subset size", kid_subset_size)):
        if int(v) < 1:
            raise HpcganError(f"{flag} must be at least 1, got {v}")
    for flag, v in (("--num", num), ("--fid-num", fid_num)):
        if v is not None and int(v) < 2:
            raise HpcganError(f"{flag} must be at least 2 (statistics need two images per set), got {v}")


def _names(v):
    """A comma-separated string as a list of names; anything else as given."""
    return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v


def _open_sets(real_dir, fake_dir, split_real, split_fake, split_train, classes, num):
    """(generated, reference, training or None): the generated images and the real sets of their classes."""
    RealSet.open(real_dir, split_real)  # a bad real folder or split fails before the generated set is read
    gen = _Generated(fake_dir, split_fake, classes, num)
    if len(gen.images) < 2:
        raise HpcganError(f"{fake_dir} holds {len(gen.images)} image(s); FID/KID and the statistics need at least 2")
    try:
        ref = RealSet.open(real_dir, split_real, gen.classes)
    except HpcganError as exc:
        raise HpcganError(f"the generated classes {gen.classes} need real {split_real} images of the same classes: "
                          f"{exc} (pass --classes to compare a subset)") from exc
    train = None
    if split_train != split_real:
        try:
            train = ref.other_split(split_train)
        except HpcganError:
            train = None
    return gen, ref, train


def _baseline_counts(res: dict, gen: _Generated, train: RealSet, split_train: str) -> dict:
    """Real training images per class for the baseline: as many as generated, the split permitting."""
    n_base = {}
    for c in gen.classes:
        n_base[c] = min(gen.count(c), train.only(c).n)
        if n_base[c] < gen.count(c):
            res["notes"].append(f"baseline {c}: only {n_base[c]} real {split_train} images for "
                                f"{gen.count(c)} generated")
    res["n"]["baseline"] = sum(n_base.values())
    res["n"]["baseline_per_class"] = n_base
    return n_base


def _pixel_metrics(res, gen, ref, train, n_base, want_pixels, want_memo, num, split_real, split_train) -> None:
    """Nearest-pair similarity of the generated set (and the baseline, ``n_base`` not None) against the reference,
    and the memorisation check against the whole training split."""
    if gen.resolution != ref.resolution:
        raise HpcganError(f"generated images are {gen.resolution}x{gen.resolution} but the real ones "
                          f"{ref.resolution}x{ref.resolution}; pixel metrics need equal sizes: preprocess the real "
                          f"data with --resolution {gen.resolution} (or compare FID/KID only: --metrics fid,kid)")
    real_imgs = _load_real(ref, num)  # the reference, capped at num
    res["n"]["real"] = sum(len(v) for v in real_imgs.values())
    if want_pixels:
        res["generated"].update(_image_metrics([(gen.of(c), real_imgs[c]) for c in gen.classes], want_pixels))
        res["pairing"] = (f"each generated image with its nearest real {split_real} image of its class by RMSE"
                          + (f"; baseline: each of {res['n']['baseline']} real {split_train} images with its "
                             f"nearest real {split_real} image of its class" if n_base is not None else ""))
        if n_base is not None:
            base = [(_load_real(train.only(c), n_base[c])[c], real_imgs[c]) for c in gen.classes]
            res["baseline"].update(_image_metrics(base, want_pixels))
    if want_memo:
        res["memorisation"] = _memorisation(gen, real_imgs, train)
        res["n"]["train"] = train.n


def _features(res, gen, ref, train, n_base, metrics, feature_net, num, fid_num, cache_dir, batch, device, kid_subsets,
              kid_subset_size, fid_method, seed, progress) -> None:
    """FID (all classes and per class) and KID of the generated set and the baseline against the reference."""
    # the extractor (its warnings become notes) and the reference's features, per class
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = _fid.load_feature_net(feature_net, device)
    for w in caught:
        res["notes"].append(str(w.message))
    res["extractor"], res["fid_method"] = net.name, fid_method
    r = _fid.real_features(ref, net, num_real=num, cache_dir=cache_dir, batch=batch, progress=progress)
    res["n"]["real"] = r["n"]
    real_by = {c: r["feats"][r["labels"] == lab].astype(np.float64) for c, lab in zip(ref.classes, ref.labels)}
    # generated features, per class (capped at fid_num over all classes, in proportion)
    take = dict(zip(gen.classes, _fid.apportion(min(fid_num or len(gen.images), len(gen.images)),
                                                [gen.count(c) for c in gen.classes])))
    sets = {"generated": {c: net.features(gen.of(c, take[c]), batch=batch) for c in gen.classes}}
    if train is not None:
        base = {c: _fid.real_features(train.only(c), net, num_real=min(n_base[c], take[c]), cache_dir=cache_dir,
                                      batch=batch, progress=progress) for c in gen.classes}
        sets["baseline"] = {c: b["feats"].astype(np.float64) for c, b in base.items()}
    # FID (all classes, then per class) and KID of each set against the reference
    f_real = r["feats"].astype(np.float64)  # [N, D]
    for key, per in sets.items():
        what = "gen" if key == "generated" else f"real {train.split}"
        f_all = np.concatenate([per[c] for c in gen.classes])  # [N, D]: every class's features
        if "fid" in metrics:
            e = _fid_entry(f_all, f_real, r["full"], None, fid_method, what)
            res[key].update(fid=e["fid"], fid_label=e["label"], fid_key=e["key"], fid_n=[e["n_gen"], e["n_real"]])
            if len(gen.classes) > 1:
                for c in gen.classes:
                    if len(per[c]) >= 2 and len(real_by[c]) >= 2:
                        res["per_class"].setdefault(c, {})[key] = _fid_entry(per[c], real_by[c], r["full"], c,
                                                                             fid_method, what)
        if "kid" in metrics:
            m, s = _fid.kid(f_all, f_real, kid_subsets, kid_subset_size, seed=seed)
            res[key]["kid"] = {"mean": m, "std": s}


def _memorisation(gen: _Generated, real_imgs: dict, train: RealSet) -> dict:
    """Nearest images in the whole training split of each class, for the generated and the reference images."""
    dist, ref = [], []
    for c in gen.classes:
        pool = _load_real(train.only(c))[c]  # never capped: a near copy anywhere in the split must be found
        dist.append(_sim.nearest_distances(gen.of(c), pool, "rmse")[1])
        ref.append(_sim.nearest_distances(real_imgs[c], pool, "rmse")[1])
    return _sim.memorisation_summary(torch.cat(dist), torch.cat(ref), train.n, "rmse")


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


def _sizes(e: dict) -> list:
    return e.get("fid_n") or [e.get("n_gen"), e.get("n_real")]


def _fid_row(label: str, ext, entries: list) -> str:
    """One FID row: the generated set's label (with its sample sizes) and each column's value; a column whose
    sample sizes differ from the first one's shows its own label."""
    cells = []
    for e in entries:
        if not e or e.get("fid") is None:
            cells.append("-")
            continue
        differs = e is not entries[0] and _sizes(e) != _sizes(entries[0] or {})
        cells.append(_fmt(e["fid"], 3) + (f" ({e.get('fid_label') or e.get('label')})" if differs else ""))
    return f"| {label} [{ext}] | " + " | ".join(cells) + " |"


def format_markdown(res: dict) -> str:
    """The result of ``compare_shards`` as a markdown table with its notes."""
    has_base = bool(res.get("baseline"))
    head = f"| metric | generated vs real {res['split_real']} |"
    sep = "| --- | --- |"
    if has_base:
        head += f" real {res['split_train']} vs real {res['split_real']} (baseline) |"
        sep += " --- |"
    lines = [head, sep, *_metric_rows(res, ("generated", "baseline") if has_base else ("generated",))]
    if res.get("memorisation"):
        lines.append(_memorisation_row(res) + (" - |" if has_base else ""))
    return "\n".join(lines + [""] + _description_lines(res))


def _metric_rows(res: dict, cols: tuple) -> list[str]:
    """The table's rows, one per metric of ``res["metrics"]`` (FID: one more per class), a value per column."""
    ext = res.get("extractor")
    lines = []
    for m in res["metrics"]:
        if m == "fid":
            lines.append(_fid_row(res["generated"].get("fid_label", "FID"), ext, [res[key] for key in cols]))
            for pc in res.get("per_class", {}).values():
                if "generated" in pc:
                    lines.append(_fid_row(pc["generated"]["label"], ext, [pc.get(key) for key in cols]))
            continue
        if m == "kid":
            label = f"KID [{ext}] (x1000)"
            vals = []
            for key in cols:
                v = res[key].get(m)
                if v is not None:
                    v = {"mean": v["mean"] * 1000, "std": v["std"] * 1000}
                vals.append(_fmt(v, 3))
        elif m in LABELS:
            label = f"{LABELS[m]}, nearest pair"
            vals = [_fmt(res[key].get(m)) for key in cols]
        else:
            continue
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    return lines


def _memorisation_row(res: dict) -> str:
    """The memorisation check's row (the generated column only)."""
    memo = res["memorisation"]
    verdict = "FLAGGED" if memo["flagged"] else "ok"
    return (f"| memorisation ({memo['metric'].upper()} to nearest real {res['split_train']}) | "
            f"{verdict}: {memo['fraction_closer_than_real_median']:.2f} closer than the real median "
            f"({memo['reference_median']:.4f}); {memo['near_copies']}/{memo['n_generated']} near copies "
            f"(< {memo['near_copy_threshold']:.4f}) |")


def _description_lines(res: dict) -> list[str]:
    """Below the table: what was compared (classes, image counts), the extractor, the pairing, the notes."""
    n, split_real, ext, memo = res["n"], res["split_real"], res.get("extractor"), res.get("memorisation")
    desc = [f"classes: {', '.join(res.get('classes', []))}",
            f"generated: {n['generated']} images from {res['fake_dir']} ({', '.join(res['split_fake'])})"]
    if "real" in n:
        desc.append(f"real {split_real}: {n['real']}")
    if "baseline" in n:
        desc.append(f"baseline real {res['split_train']}: {n['baseline']}")
    if "train" in n:
        desc.append(f"real {res['split_train']} (memorisation pool): {n['train']}")
    lines = ["; ".join(desc)]
    if ext:
        lines.append(f"feature extractor: {ext} (FID via {res.get('fid_method', 'sqrtm')}); "
                     "FID/KID are only comparable between runs with the same extractor and image counts")
    if res.get("pairing"):
        lines.append(f"pairing: {res['pairing']}")
    if memo:
        lines.append(f"memorisation criterion: {memo['criterion']}")
    for note in res.get("notes", []):
        lines.append(f"note: {note}")
    return lines


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


def compare_and_summarise(json_path: str | os.PathLike | None = None, **kwargs) -> dict:
    """``compare_shards(**kwargs)``, its markdown table printed and, with ``json_path``, every number written
    there (atomically); returns compare_shards' result."""
    res = compare_shards(**kwargs)
    print(format_markdown(res))
    if json_path:
        write_json(json_path, res)
        print(f"wrote {json_path}")
    return res
