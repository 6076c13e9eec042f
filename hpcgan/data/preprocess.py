"""Preprocessing: lung crop, resize, annotation detector, and the parallel stage driver.

The crop follows the source study: the bounding box of the lung mask (mask resized
to the image, threshold >127), widened by a margin (default 5 % of the box's size
on each side), expanded to a square around its centre so anatomy is not distorted,
then resized (antialiased, Lanczos) to the output resolution and stored as uint8.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from hpcgan import dist
from hpcgan.config import csv_list, progress_setting, setting, write_resolved
from hpcgan.data import DEFAULT_CLASSES
from hpcgan.data.shards import COMPRESSIONS, FORMAT_VERSION, MANIFEST, atomic_write_text, sha256_file, write_shard
from hpcgan.data.sources import (FLAG_ANNOTATION, FLAG_NAMES, FLAG_NO_MASK, FLAG_PADDED, IMAGE_SUFFIXES, LAYOUTS,
                                 ImageLoadError, NotAnXrayError, discover, load_image, load_mask)
from hpcgan.data.splits import SPLITS, assign_splits
from hpcgan.errors import HpcganError


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1) of the True pixels (half open), or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def square_box(bbox: tuple[int, int, int, int], shape: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """The square crop around ``bbox``: widened by ``margin`` of its size, squared, kept inside the image when it fits."""
    H, W = shape
    y0, x0, y1, x1 = bbox
    h, w = y1 - y0, x1 - x0
    y0f, y1f = y0 - margin * h, y1 + margin * h
    x0f, x1f = x0 - margin * w, x1 + margin * w
    side = int(np.ceil(max(y1f - y0f, x1f - x0f)))
    cy, cx = (y0f + y1f) / 2.0, (x0f + x1f) / 2.0
    top = int(np.floor(cy - side / 2.0 + 0.5))
    left = int(np.floor(cx - side / 2.0 + 0.5))
    # shift the square inside the image along each axis where it fits
    if side <= H:
        top = min(max(top, 0), H - side)
    if side <= W:
        left = min(max(left, 0), W - side)
    return top, left, top + side, left + side


def center_box(shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred square of an image of ``shape``."""
    H, W = shape
    side = min(H, W)
    top, left = (H - side) // 2, (W - side) // 2
    return top, left, top + side, left + side


def crop_square(img: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, int]:
    """``img[box]`` with zero padding where the box reaches past the border, plus FLAG_PADDED if so."""
    H, W = img.shape
    y0, x0, y1, x1 = box
    if y0 >= 0 and x0 >= 0 and y1 <= H and x1 <= W:
        return img[y0:y1, x0:x1], 0
    out = np.zeros((y1 - y0, x1 - x0), dtype=img.dtype)
    sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y1, H), min(x1, W)
    out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return out, FLAG_PADDED


def resize(img: np.ndarray, resolution: int) -> np.ndarray:
    """Antialiased (Lanczos) resize of a square uint8 image to ``resolution`` x ``resolution``."""
    if img.shape == (resolution, resolution):
        return img.copy()
    return np.asarray(Image.fromarray(img).resize((resolution, resolution), Image.LANCZOS), dtype=np.uint8)


# --------------------------------------------------------------------------- annotations


def detect_annotations(crop: np.ndarray, max_size: int = 1024, sensitivity: float = 1.0) -> dict:
    """Find likely burnt-in annotations (side markers, text, scanner marks) in a lung crop.

    Burnt-in marks are drawn, not imaged: a glyph of nearly constant grey level whose
    edge is a step of many grey levels within one pixel, on a smooth background. The
    detector isolates small bright structures with a white top-hat (the image minus
    its grey opening over a window of ~3 % of the side), labels the connected
    components of the thresholded top-hat, and keeps a component when it is small and
    compact (a glyph, not a long wire or a bone), lies in the border band outside the
    central lung field, is uniform inside, and its contrast to the one-pixel ring
    around it is almost its contrast to a ring three pixels away (a step edge; imaged
    structures fall off over several pixels). Crops larger than ``max_size`` are
    reduced first. Returns ``{"flagged", "score", "components": [(y, x, h, w, contrast)]}``
    with boxes in crop coordinates.
    """
    # reduce large crops first: the windows below are fractions of the side
    g, scale = _reduced(crop, max_size)  # [h, w] float32
    h, w = g.shape
    side = max(h, w)
    # small bright structures: white top-hat over ~3 % of the side, thresholded, connected components
    k = max(5, int(round(0.03 * side)) | 1)
    tophat = g - ndimage.grey_opening(g, size=(k, k))
    min_contrast = 35.0 / sensitivity
    lab, n = ndimage.label(tophat > min_contrast, structure=np.ones((3, 3), bool))
    # keep the components that look drawn: glyph-sized, in the border band, uniform, with a step edge
    comps = []
    score = 0.0
    max_ext = max(4, int(0.06 * side))
    for i, sl in enumerate(ndimage.find_objects(lab)):
        if sl is None or not _glyph_placed(sl, (h, w), max_ext):
            continue
        edge = _step_edge(g, lab, sl, i + 1, min_contrast)
        if edge is None:
            continue
        c1, sharp = edge
        ys, xs = sl
        ch, cw = ys.stop - ys.start, xs.stop - xs.start
        comps.append((int(ys.start / scale), int(xs.start / scale), int(ch / scale) + 1, int(cw / scale) + 1, round(c1, 1)))
        score = max(score, c1 * sharp)
    return {"flagged": bool(comps), "score": round(score, 2), "components": comps}


def _reduced(crop: np.ndarray, max_size: int) -> tuple[np.ndarray, float]:
    """``crop`` as float32, box-filtered down when its longer side exceeds ``max_size``; and the scale."""
    H, W = crop.shape
    scale = min(1.0, max_size / max(H, W))
    if scale < 1.0:
        g = np.asarray(
            Image.fromarray(crop).resize((max(1, round(W * scale)), max(1, round(H * scale))), Image.BOX),
            dtype=np.float32,
        )
    else:
        g = crop.astype(np.float32)
    return g, scale


def _glyph_placed(sl: tuple[slice, slice], shape: tuple[int, int], max_ext: int, band: float = 0.25) -> bool:
    """A component of glyph size (3 to ``max_ext`` px) whose centre lies in the border band, outside the lung field."""
    h, w = shape
    ys, xs = sl
    ch, cw = ys.stop - ys.start, xs.stop - xs.start
    if max(ch, cw) > max_ext or max(ch, cw) < 3:
        return False
    cy, cx = (ys.start + ys.stop) / 2.0 / h, (xs.start + xs.stop) / 2.0 / w
    return not (band < cy < 1 - band and band < cx < 1 - band)


_CROSS = ndimage.generate_binary_structure(2, 1)


def _step_edge(g: np.ndarray, lab: np.ndarray, sl: tuple[slice, slice], label: int,
               min_contrast: float) -> tuple[float, float] | None:
    """(contrast, sharpness) of component ``label`` when it is drawn, else None.

    Drawn: uniform inside (grey-level spread under 0.35 of the contrast), and its contrast to the
    one-pixel ring around it (``c1``) is at least ``min_contrast`` and at least 0.8 of its contrast to the
    ring three pixels away (``c3``): a step edge. ``sharpness`` is ``c1 / c3``.
    """
    h, w = g.shape
    ys, xs = sl
    pad = 4
    y0, y1 = max(ys.start - pad, 0), min(ys.stop + pad, h)
    x0, x1 = max(xs.start - pad, 0), min(xs.stop + pad, w)
    comp = lab[y0:y1, x0:x1] == label
    if comp.sum() < 4:
        return None
    region = g[y0:y1, x0:x1]
    d1 = ndimage.binary_dilation(comp, _CROSS)
    d3 = ndimage.binary_dilation(comp, _CROSS, iterations=3)
    ring1 = d1 & ~comp
    ring3 = d3 & ~ndimage.binary_dilation(comp, _CROSS, iterations=2)
    if not ring1.any() or not ring3.any():
        return None
    inside = region[comp]
    c1 = float(np.median(inside) - np.median(region[ring1]))
    c3 = float(np.median(inside) - np.median(region[ring3]))
    if c1 < min_contrast or c3 <= 0:
        return None
    sharp = c1 / c3
    uniform = float(inside.std()) / c1
    if sharp < 0.8 or uniform > 0.35:
        return None
    return c1, sharp


# --------------------------------------------------------------------------- one image

NO_MASK_POLICIES = ("center", "skip", "error")
ANNOTATION_POLICIES = ("exclude", "keep", "off")


def not_an_xray(img: np.ndarray, min_size: int) -> tuple[str, str] | None:
    """(reason, detail) when a decoded image cannot be a radiograph: too small, or one constant value."""
    H, W = img.shape
    if min(H, W) < min_size:
        return "too_small", f"the image is {W}x{H} px, smaller than --min-size {min_size}: not a radiograph"
    lo, hi = int(img.min()), int(img.max())
    if lo == hi:
        return "constant", f"every pixel has the value {lo}: a blank image, not a radiograph"
    return None


class _StatusError(Exception):
    """Raised by a step of :func:`process_image` for an image that is not written: its status fields."""

    def __init__(self, **fields):
        super().__init__(fields.get("reason", ""))
        self.fields = fields


def process_image(rec, resolution: int, margin: float, no_mask_policy: str, annotations: str, sensitivity: float,
                  min_size: int = 64) -> dict:
    """Load, crop, check and resize one image. Never raises for bad input: returns a status.

    ``status`` is ``ok`` (with ``image``), ``excluded`` (not an X-ray: a DICOM
    without one image, smaller than ``min_size`` px or of one constant value;
    policy: annotation, no mask with skip, empty mask), ``failed`` (undecodable
    image or mask) or ``fatal`` (a missing mask under ``--no-mask-policy error``;
    the driver stops the run).
    """
    meta = {"stem": rec.stem, "status": "ok", "reason": "", "detail": "", "bbox": [0, 0, 0, 0], "flags": 0}
    try:
        img, flags = _load_radiograph(rec, min_size)
        box, bflags = _lung_box(rec, img.shape, margin, no_mask_policy)
        crop, pflags = crop_square(img, box)
        flags |= bflags | pflags
        meta["bbox"] = [int(v) for v in box]
        flags |= _annotation_flag(crop, annotations, sensitivity, flags)
    except _StatusError as v:
        return {**meta, **v.fields}
    meta["flags"] = int(flags)
    meta["image"] = resize(crop, resolution)
    return meta


def _load_radiograph(rec, min_size: int) -> tuple[np.ndarray, int]:
    """The decoded image (H, W) uint8 and its flags; _StatusError when it is unreadable or not a radiograph."""
    try:
        img, flags = load_image(rec.path)
    except ImageLoadError as exc:
        raise _StatusError(status="failed", reason="unreadable_image", detail=str(exc)) from None
    except NotAnXrayError as exc:
        raise _StatusError(status="excluded", reason=exc.reason, detail=str(exc)) from None
    bad = not_an_xray(img, min_size)
    if bad is not None:
        raise _StatusError(flags=int(flags), status="excluded", reason=bad[0], detail=f"{rec.path}: {bad[1]}")
    return img, flags


def _lung_box(rec, shape: tuple[int, int], margin: float, no_mask_policy: str) -> tuple[tuple[int, int, int, int], int]:
    """The crop box (lung mask's square, or the centre square without a mask) and the mask's flags."""
    if rec.mask_path is None:
        if no_mask_policy == "error":
            raise _StatusError(status="fatal", reason="missing_mask",
                           detail=f"no lung mask for {rec.path}; add one, or pass --no-mask-policy center|skip")
        if no_mask_policy == "skip":
            raise _StatusError(status="excluded", reason="missing_mask", detail="no lung mask (--no-mask-policy skip)")
        return center_box(shape), FLAG_NO_MASK
    try:
        mask, mflags = load_mask(rec.mask_path, shape)
    except ImageLoadError as exc:
        raise _StatusError(status="failed", reason="unreadable_mask", detail=str(exc)) from None
    bb = mask_bbox(mask)
    if bb is None:
        raise _StatusError(status="excluded", reason="empty_mask",
                       detail=f"lung mask {rec.mask_path} has no pixel > 127; fix or delete the mask")
    return square_box(bb, shape, margin), mflags


def _annotation_flag(crop: np.ndarray, annotations: str, sensitivity: float, flags: int) -> int:
    """FLAG_ANNOTATION when the detector flags ``crop`` under policy ``keep``; _StatusError under ``exclude``."""
    if annotations == "off":
        return 0
    det = detect_annotations(crop, sensitivity=sensitivity)
    if not det["flagged"]:
        return 0
    if annotations == "exclude":
        raise _StatusError(flags=flags | FLAG_ANNOTATION, status="excluded", reason="annotation",
                       detail=f"detector score {det['score']}, marks (y, x, h, w, contrast) {det['components'][:4]}")
    return FLAG_ANNOTATION


def _work(args):
    rec, kw = args
    return process_image(rec, **kw)


# --------------------------------------------------------------------------- the stage


@dataclass
class PreprocessConfig:
    """Settings of ``hpcgan preprocess`` (each field is a CLI flag of the same name; source and out positional)."""

    source: str = setting(positional=True, help="dataset root that holds the class folders (e.g. "
                          "COVID-19_Radiography_Dataset)")
    out: str = setting(positional=True, help="output folder for manifest.json and the shards")
    classes: list = setting(list(DEFAULT_CLASSES), type=csv_list,
                            help="comma-separated class folders, in label order (default {default}; labels are 0, 1, "
                            "... in this order)")
    layout: str = setting("auto", choices=LAYOUTS,
                          help="kaggle: <Class>/images + <Class>/masks; flat: <Class>/*.png; plain: class folders "
                          "with an optional --masks folder; dicom: class folders of DICOM files under any name; "
                          "auto picks kaggle when images/ folders exist (default {default}). .dcm files are read as DICOM in "
                          "every layout (MONOCHROME1 inverted, rescale and VOI window applied, PatientID as patient)")
    masks: str | None = setting(None, help="mask folder parallel to the class folders (MASKS/<Class>/<stem>.png or "
                                "MASKS/<stem>.png), for the flat/plain layouts")
    metadata: str | None = setting(None, help="CSV with image_id (or stem) and patient_id columns: splits keep each "
                                   "patient in one split")
    resolution: int = setting(256, help="output side in pixels")
    margin: float = setting(0.05, help="margin around the lung box, as a fraction of its size on each side")
    no_mask_policy: str = setting("center", choices=NO_MASK_POLICIES,
                                  help="images without a mask: centre square crop (center), exclude (skip), or stop "
                                  "the run (error)")
    annotations: str = setting("exclude", choices=ANNOTATION_POLICIES,
                               help="images the annotation detector flags: exclude, keep with a flag, or off (do not "
                               "run the detector)")
    annotation_sensitivity: float = setting(1.0, help="scales the detector's contrast thresholds: >1 flags more, <1 "
                                            "fewer")
    min_size: int = setting(64, help="exclude images whose shorter side is below this many pixels, as not X-rays; "
                            "images of one constant value are always excluded")
    exclude: str | None = setting(None, help="file of image stems to exclude, one per line (# comments)")
    test_per_class: int = setting(200, help="held-out test images per class")
    val_fraction: float = setting(0.1, help="fraction of the non-test images used for validation")
    seed: int = setting(0, help="seed of the splits")
    shard_size: int = setting(1024, help="most images per shard file")
    compression: str = setting("lzf", choices=COMPRESSIONS, help="HDF5 compression of the images")
    workers: int = setting(0, default_text="0 = this node's cores divided by the ranks on the node",
                           help="worker processes per rank")
    progress: str | bool = progress_setting()  # true/false (older configs) = auto/off

    def validate(self) -> None:
        if self.resolution < 8:
            raise HpcganError(f"--resolution must be >= 8, got {self.resolution}")
        if not 0 <= self.margin < 1:
            raise HpcganError(f"--margin must be in [0, 1), got {self.margin}")
        if self.no_mask_policy not in NO_MASK_POLICIES:
            raise HpcganError(f"--no-mask-policy must be one of {NO_MASK_POLICIES}, got {self.no_mask_policy!r}")
        if self.annotations not in ANNOTATION_POLICIES:
            raise HpcganError(f"--annotations must be one of {ANNOTATION_POLICIES}, got {self.annotations!r}")
        if self.shard_size < 1:
            raise HpcganError(f"--shard-size must be >= 1, got {self.shard_size}")
        if self.compression not in COMPRESSIONS:
            raise HpcganError(f"--compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        if self.workers < 0:
            raise HpcganError(f"--workers must be >= 0 (0 = all cores), got {self.workers}")
        if self.annotation_sensitivity <= 0:
            raise HpcganError("--annotation-sensitivity must be > 0")
        if self.min_size < 1:
            raise HpcganError(f"--min-size must be >= 1 pixel, got {self.min_size}")

    def fingerprint(self) -> str:
        keys = ("classes", "layout", "masks", "metadata", "resolution", "margin", "no_mask_policy", "annotations",
                "annotation_sensitivity", "min_size", "test_per_class", "val_fraction", "seed", "shard_size",
                "compression")
        d = {k: getattr(self, k) for k in keys}
        d["source"] = str(Path(self.source).resolve())
        d["exclude_stems"] = sorted(read_exclude_file(self.exclude)) if self.exclude else []
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def read_exclude_file(path: str | None) -> set[str]:
    """File stems listed one per line (``#`` starts a comment; a path or extension is stripped)."""
    if not path:
        return set()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise HpcganError(f"cannot read exclusion list {path}: {exc}") from exc
    stems = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            stems.add(Path(line).stem if line.lower().endswith(IMAGE_SUFFIXES) else Path(line).name)
    return stems


def default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    return max(1, cores // dist.local_world_size())


def _read_jsonl(paths) -> list[dict]:
    rows = []
    for p in sorted(paths):
        with open(p) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a kill: that image is simply processed again
    return rows


def run_preprocess(cfg: PreprocessConfig, comm=None) -> dict:
    """The data stage: raw images to ``cfg.out`` (manifest + shards). Returns the summary.

    Runs on every rank of an MPI job (``comm``: an mpi4py communicator or an
    :class:`hpcgan.dist.Comm`; default hpcgan.dist.mpi_comm()):
    the images are split into contiguous blocks, one per rank; each rank processes
    its block with ``cfg.workers`` processes and writes the shards of its block;
    rank 0 writes the manifest after a gather. Image order within a split is the
    canonical source order (class, then natural file order), so the output is the
    same image for image for any number of workers and ranks. A re-run resumes:
    images already scanned (``OUT/.work``) are not re-examined and complete shards
    with matching checksums are kept.
    """
    cfg.validate()
    c = comm if isinstance(comm, dist.Comm) else dist.Comm.over(comm if comm is not None else dist.mpi_comm())
    out = Path(cfg.out)
    fp = cfg.fingerprint()
    t0 = time.perf_counter()
    # list the source; rank 0 keeps OUT/.work from a run with the same settings, or clears it
    listing = _list_and_open_workdir(cfg, c, out, fp)
    records = listing.records
    # contiguous blocks of the canonical order, one per rank
    bounds = _rank_blocks(len(records), c.size)
    # examine this rank's block, then every rank learns every image's status
    manual = read_exclude_file(cfg.exclude)
    metas, arrays = _examine_block(cfg, c, out / ".work", records, bounds, manual)
    # splits over the kept images (identical on every rank)
    kept = [r for r, m in zip(records, metas) if m["status"] == "ok"]
    split_of = assign_splits(
        [r.stem for r in kept], [r.label for r in kept], listing.classes,
        cfg.test_per_class, cfg.val_fraction, cfg.seed, [r.patient for r in kept],
    )
    # shard plan: per split, rank blocks in rank order, each block cut into shards
    plan = _plan_shards(records, metas, split_of, bounds, cfg.shard_size)
    # write this rank's shards, keeping complete ones from an earlier run
    gathered = c.allgather(_write_rank_shards(cfg, c, out, fp, listing, metas, plan, arrays))
    # rank 0: the manifest (what was written, excluded and why), then every rank returns its summary
    summary = None
    if c.rank == 0:
        unmatched = sorted(manual - {r.stem for r in records})
        summary = _write_manifest(cfg, out, fp, t0, listing, metas, split_of, plan, gathered, unmatched)
    summary = c.bcast(summary)
    c.barrier()
    return summary


def _image_kwargs(cfg: PreprocessConfig) -> dict:
    """The keyword arguments of :func:`process_image` that ``cfg`` sets."""
    return dict(resolution=cfg.resolution, margin=cfg.margin, no_mask_policy=cfg.no_mask_policy,
                annotations=cfg.annotations, sensitivity=cfg.annotation_sensitivity, min_size=cfg.min_size)


def _rank_blocks(n: int, ranks: int) -> np.ndarray:
    """Block bounds of ``n`` images over ``ranks``: rank k takes ``[bounds[k], bounds[k + 1])``."""
    return np.linspace(0, n, ranks + 1).astype(int)  # [ranks + 1]


def _list_and_open_workdir(cfg: PreprocessConfig, c: dist.Comm, out: Path, fp: str):
    """The source listing (every rank); on rank 0, ``OUT/.work`` kept for fingerprint ``fp`` or cleared."""
    work = out / ".work"
    error = None
    listing = None
    try:
        listing = discover(cfg.source, list(cfg.classes), cfg.layout, cfg.masks, cfg.metadata)
        if c.rank == 0:
            work.mkdir(parents=True, exist_ok=True)
            prev = work / "settings.json"
            if prev.is_file():
                old = json.loads(prev.read_text()).get("fingerprint")
                if old != fp:
                    _reset_output(out)
                    work.mkdir(parents=True, exist_ok=True)
            atomic_write_text(prev, json.dumps({"fingerprint": fp, "settings": asdict(cfg)}, indent=1))
    except HpcganError as exc:
        error = str(exc)
    except OSError as exc:
        error = f"cannot write to {out}: {exc}"
    c.check(error)
    c.barrier()
    return listing


def _examine_block(cfg: PreprocessConfig, c: dist.Comm, work: Path, records: list, bounds: np.ndarray,
                   manual: set[str]) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Every image's status in canonical order (gathered from all ranks), and this rank's decoded images.

    This rank examines the images of its block not listed in ``manual`` and not in a scan journal
    of an earlier run; a fatal status on any rank stops every rank.
    """
    lo, hi = int(bounds[c.rank]), int(bounds[c.rank + 1])
    block = records[lo:hi]
    cache = {row["stem"]: row for row in _read_jsonl(work.glob("scan-*.jsonl"))}
    todo = [r for r in block if r.stem not in manual and r.stem not in cache]
    arrays: dict[str, np.ndarray] = {}
    error = None
    try:
        new = _scan(todo, _image_kwargs(cfg), cfg, c, work, arrays, len(block))
    except OSError as exc:
        new, error = {}, f"cannot write the scan journal in {work}: {exc}"
    metas = []
    if error is not None:  # no journal, so no statuses for this block: stop every rank with the reason
        c.check(error)
    for r in block:
        if r.stem in manual:
            metas.append({"stem": r.stem, "status": "excluded", "reason": "manual_exclusion",
                          "detail": f"listed in {cfg.exclude}", "bbox": [0, 0, 0, 0], "flags": 0})
        else:
            metas.append(new.get(r.stem) or cache[r.stem])
    fatal = next((m for m in metas if m["status"] == "fatal"), None)
    if fatal and error is None:
        error = fatal["detail"]
    c.check(error)
    all_metas = [m for part in c.allgather(metas) for m in part]
    assert len(all_metas) == len(records)
    return all_metas, arrays


def _plan_shards(records: list, metas: list[dict], split_of: dict[str, str], bounds: np.ndarray,
                shard_size: int) -> list[dict]:
    """The shards to write: per split, the kept images of each rank's block, cut into ``shard_size`` pieces.

    Each entry is ``{"split", "rank" (its writer), "path" (relative to OUT), "members" (record indices)}``;
    shard numbers run on across the ranks of a split.
    """
    plan = []
    for split in SPLITS:
        idx = 0
        for rk in range(len(bounds) - 1):
            a, b = int(bounds[rk]), int(bounds[rk + 1])
            members = [i for i in range(a, b) if metas[i]["status"] == "ok" and split_of[records[i].stem] == split]
            for s in range(0, len(members), shard_size):
                plan.append({"split": split, "rank": rk, "path": f"{split}/shard-{idx:05d}.h5",
                             "members": members[s : s + shard_size]})
                idx += 1
    return plan


def _write_rank_shards(cfg: PreprocessConfig, c: dist.Comm, out: Path, fp: str, listing, metas: list[dict],
                       plan: list[dict], arrays: dict[str, np.ndarray]) -> tuple[list[dict], int, int]:
    """Write this rank's shards of ``plan``: (manifest entries, shards written, shards kept).

    A shard is kept when the journal of an earlier run (``OUT/.work/shards-*.jsonl``) has it for the same
    settings and members and the file's sha256 still matches; each shard written is journalled at once.
    """
    records = listing.records
    work = out / ".work"
    journal = {row["path"]: row for row in _read_jsonl(work.glob("shards-*.jsonl"))}
    written = resumed = 0
    entries = []
    error = None
    try:
        with open(work / f"shards-r{c.rank:05d}.jsonl", "a") as jfh:
            for sh in plan:
                if sh["rank"] != c.rank:
                    continue
                stems = [records[i].stem for i in sh["members"]]
                key = hashlib.sha256(json.dumps([fp, stems]).encode()).hexdigest()
                path = out / sh["path"]
                old = journal.get(sh["path"])
                if old and old.get("key") == key and path.is_file() and sha256_file(path) == old["sha256"]:
                    entries.append({"path": sh["path"], "split": sh["split"], "n": len(stems), "sha256": old["sha256"]})
                    resumed += 1
                    continue
                digest = _write_planned_shard(cfg, path, sh, listing, metas, arrays)
                jfh.write(json.dumps({"path": sh["path"], "key": key, "sha256": digest}) + "\n")
                jfh.flush()
                entries.append({"path": sh["path"], "split": sh["split"], "n": len(stems), "sha256": digest})
                written += 1
    except HpcganError as exc:
        error = str(exc)
    except OSError as exc:
        error = f"cannot write shards under {out}: {exc}"
    c.check(error)
    return entries, written, resumed


def _write_planned_shard(cfg: PreprocessConfig, path: Path, sh: dict, listing, metas: list[dict],
                         arrays: dict[str, np.ndarray]) -> str:
    """Write the shard ``sh`` of the plan at ``path``; returns its sha256.

    The images come from this run's scan (``arrays``, released as used), or are processed again when an
    earlier run scanned them; an image that no longer processes to ``ok`` stops the run.
    """
    records = listing.records
    imgs = []
    for i in sh["members"]:
        rec = records[i]
        arr = arrays.pop(rec.stem, None)
        if arr is None:
            m = process_image(rec, **_image_kwargs(cfg))
            if m["status"] != "ok":
                raise HpcganError(f"{rec.path} changed since it was scanned ({m['reason']}); re-run")
            arr = m["image"]
        imgs.append(arr)  # [R, R] uint8
    members = sh["members"]
    return write_shard(
        path, np.stack(imgs) if imgs else np.zeros((0, cfg.resolution, cfg.resolution), np.uint8),  # [N, R, R]
        np.array([records[i].label for i in members], np.int64), [records[i].stem for i in members],
        np.array([metas[i]["bbox"] for i in members], np.int32).reshape(-1, 4),  # [N, 4]: y0, x0, y1, x1
        np.array([metas[i]["flags"] for i in members], np.uint32),
        cfg.compression,
        attrs={"split": sh["split"], "class_names": list(listing.classes), "resolution": cfg.resolution},
    )


def _outcomes(records: list, metas: list[dict], split_of: dict[str, str], classes: list[str]):
    """What became of every input image: (counts per split and class, excluded rows, failed rows,
    stems kept despite an annotation flag)."""
    counts = {s: {n: 0 for n in classes} for s in SPLITS}
    for r, m in zip(records, metas):
        if m["status"] == "ok":
            counts[split_of[r.stem]][r.class_name] += 1
    excluded, failed = [], []
    for r, m in zip(records, metas):
        if m["status"] in ("excluded", "failed"):
            row = {"stem": r.stem, "class": r.class_name, "path": r.path, "reason": m["reason"], "detail": m["detail"]}
            (excluded if m["status"] == "excluded" else failed).append(row)
    flagged_kept = [r.stem for r, m in zip(records, metas) if m["status"] == "ok" and m["flags"] & FLAG_ANNOTATION]
    return counts, excluded, failed, flagged_kept


def _write_manifest(cfg: PreprocessConfig, out: Path, fp: str, t0: float, listing, metas: list[dict],
                    split_of: dict[str, str], plan: list[dict], gathered: list, unmatched: list[str]) -> dict:
    """Rank 0's last step: remove shards outside the plan, write the resolved config and the manifest.

    ``gathered`` holds each rank's (entries, written, kept). Returns the run's summary.
    """
    records = listing.records
    shard_entries = [e for part in gathered for e in part[0]]
    order = {sh["path"]: k for k, sh in enumerate(plan)}
    shard_entries.sort(key=lambda e: order[e["path"]])
    counts, excluded, failed, flagged_kept = _outcomes(records, metas, split_of, listing.classes)
    summary = {
        "inputs": len(records),
        "written": sum(m["status"] == "ok" for m in metas),
        "excluded": len(excluded),
        "failed": len(failed),
        "shards_written": sum(p[1] for p in gathered),
        "shards_resumed": sum(p[2] for p in gathered),
        "ranks": len(gathered),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    manifest = {
        "format_version": FORMAT_VERSION,
        "hpcgan_version": _version(),
        "fingerprint": fp,
        "source_root": str(Path(cfg.source).resolve()),
        "layout": listing.layout,
        "settings": asdict(cfg),
        "class_names": list(listing.classes),
        "labels": {n: i for i, n in enumerate(listing.classes)},
        "counts": counts,
        "shards": shard_entries,
        "excluded": excluded,
        "failed": failed,
        "annotation_flagged_kept": flagged_kept,
        "exclude_list_unmatched": unmatched,
        "flag_bits": {str(k): v for k, v in FLAG_NAMES.items()},
        "summary": summary,
    }
    # shard files the plan does not name (an earlier run's, a killed write's temporaries) go
    planned = {out / sh["path"] for sh in plan}
    for split in SPLITS:
        for p in list((out / split).glob("shard-*.h5")) + list((out / split).glob(".shard-*.tmp-*")):
            if p not in planned:
                p.unlink()
    write_resolved(cfg, out)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    return summary


def _version() -> str:
    try:
        from hpcgan import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


def _reset_output(out: Path) -> None:
    """Remove what an earlier run with other settings left (journals, shards, manifest)."""
    for p in list((out / ".work").glob("*")):
        p.unlink()
    for split in SPLITS:
        for p in list((out / split).glob("shard-*.h5")) + list((out / split).glob(".shard-*.tmp-*")):
            p.unlink()
    for name in (MANIFEST,):
        if (out / name).exists():
            (out / name).unlink()


def _scan(todo, kw, cfg, c: dist.Comm, work: Path, arrays: dict, block_len: int) -> dict:
    """Process ``todo`` with the worker pool; journal each result; keep arrays in ``arrays``."""
    from hpcgan.progress import Progress

    workers = cfg.workers or default_workers()
    results: dict[str, dict] = {}
    bar = Progress(total=block_len, initial=block_len - len(todo), desc="preprocess", unit="img", mode=cfg.progress,
                   rank0=c.rank == 0)
    with open(work / f"scan-r{c.rank:05d}.jsonl", "a") as jfh:
        def record(m):
            img = m.pop("image", None)
            if img is not None:
                arrays[m["stem"]] = img
            results[m["stem"]] = m
            if m["status"] != "fatal":
                jfh.write(json.dumps(m) + "\n")
            bar.update(1)

        if workers <= 1 or len(todo) < 2:
            for rec in todo:
                record(process_image(rec, **kw))
        else:
            ctx = mp.get_context("fork" if c.size == 1 else "spawn")
            with ctx.Pool(min(workers, len(todo))) as pool:
                chunk = max(1, min(16, len(todo) // (4 * workers)))
                for m in pool.imap(_work, [(r, kw) for r in todo], chunksize=chunk):
                    record(m)
        jfh.flush()
    bar.close()
    return results


def format_summary(summary: dict, out: str) -> str:
    """One line per fact: what the run did with every input image."""
    return (
        f"{out}: {summary['inputs']} inputs = {summary['written']} written + {summary['excluded']} excluded + "
        f"{summary['failed']} failed (reasons in {Path(out) / MANIFEST}); shards: {summary['shards_written']} "
        f"written, {summary['shards_resumed']} kept from an earlier run; {summary['ranks']} rank(s), "
        f"{summary['seconds']} s"
    )


def resolve_config(overrides: dict, config_file: str | None = None) -> PreprocessConfig:
    """The PreprocessConfig of YAML ``config_file`` and the flags' ``overrides`` (a YAML ``classes: A,B`` string
    becomes a list), as ``hpcgan preprocess`` and its job both use it."""
    from hpcgan.config import csv_list, load

    cfg = load(PreprocessConfig, config_file, overrides)
    if isinstance(cfg.classes, str):
        cfg.classes = csv_list(cfg.classes)
    return cfg


def preprocess_main(overrides: dict, config_file: str | None = None) -> dict:
    """Entry point of ``hpcgan preprocess``: config from YAML + flags, run, print the summary on rank 0."""
    return preprocess_and_summarise(resolve_config(overrides, config_file))


def preprocess_and_summarise(cfg: PreprocessConfig) -> dict:
    """:func:`run_preprocess` and, on rank 0, its summary printed; returns the summary."""
    summary = run_preprocess(cfg)
    if dist.is_rank0():
        print(format_summary(summary, cfg.out))
    return summary


def verify_and_summarise(out: str, checksums: bool = True) -> dict:
    """Re-check the shards of ``out``, print each problem and a count; returns {"out", "shards", "problems"}."""
    from hpcgan.data.shards import read_manifest, verify

    problems = verify(out, checksums=checksums)
    for p in problems:
        print(f"MISMATCH {p}")
    n = len(read_manifest(out)["shards"])
    print(f"{out}: {n} shards checked, {len(problems)} problem(s)")
    return {"out": out, "shards": n, "problems": problems}


def verify_main(out: str, checksums: bool = True) -> int:
    """Entry point of ``hpcgan data verify``: prints problems, returns 0 when none, 1 otherwise."""
    return 1 if verify_and_summarise(out, checksums)["problems"] else 0
