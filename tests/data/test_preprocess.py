import json
import shutil

import numpy as np
import pytest
from PIL import Image

from hpcgan.data import sources
from hpcgan.data.phantom import _burn_marker, generate_phantoms
from hpcgan.data.preprocess import (
    PreprocessConfig,
    center_box,
    crop_square,
    detect_annotations,
    mask_bbox,
    resize,
    run_preprocess,
    square_box,
)
from hpcgan.data.shards import read_manifest, read_split
from hpcgan.data.sources import load_image, load_mask
from hpcgan.errors import HpcganError


def _hannover_with_masks(root, n):
    masks = sorted((root / "hannover" / "masks_v7labs").glob("*.png"))[:n]
    return [(root / "hannover" / "png" / m.name, m) for m in masks]


def test_crop_on_real_hannover_masks(data_cxr_root):
    margin = 0.05
    for img_path, mask_path in _hannover_with_masks(data_cxr_root, 12):
        img, _ = load_image(str(img_path))
        mask, flags = load_mask(str(mask_path), img.shape)
        assert flags & sources.FLAG_MASK_RESIZED  # 2000x2000 masks on ~640x524 images
        bb = mask_bbox(mask)
        y0, x0, y1, x1 = box = square_box(bb, img.shape, margin)
        assert y1 - y0 == x1 - x0, "crop must be square"
        # the whole lung plus the margin lies inside the crop
        h, w = bb[2] - bb[0], bb[3] - bb[1]
        H, W = img.shape  # (where the margin would leave the image, the square is shifted inside it)
        assert y0 <= max(0, bb[0] - int(margin * h) + 1) and y1 >= min(H, bb[2] + int(margin * h) - 1)
        assert x0 <= max(0, bb[1] - int(margin * w) + 1) and x1 >= min(W, bb[3] + int(margin * w) - 1)
        # the square is no larger than the margined lung box requires
        assert (y1 - y0) <= max(h, w) * (1 + 2 * margin) + 2
        crop, pflags = crop_square(img, box)
        mcrop, _ = crop_square(mask.astype(np.uint8), box)
        assert crop.shape == (y1 - y0, x1 - x0)
        # the lung touches the crop's margin band on its longer side, and never its edge rows
        side = crop.shape[0]
        mb = mask_bbox(mcrop.astype(bool))
        assert (mb[0] > 0 and mb[1] > 0 and mb[2] < side and mb[3] < side) or pflags
        out = resize(crop, 64)
        assert out.shape == (64, 64) and out.dtype == np.uint8
        # antialiased: the resized image's mean stays close to the crop's
        assert abs(float(out.mean()) - float(crop.mean())) < 3.0


def test_square_box_pads_when_the_square_leaves_the_image():
    img = np.full((50, 200), 7, np.uint8)
    box = square_box((5, 10, 45, 190), img.shape, 0.05)
    crop, flags = crop_square(img, box)
    assert crop.shape[0] == crop.shape[1] > 50 and flags & sources.FLAG_PADDED
    assert (crop == 0).any() and (crop == 7).any()
    assert center_box((50, 200)) == (0, 75, 50, 125)


def test_detector_on_phantoms_finds_burnt_in_markers(tmp_path):
    rep = generate_phantoms(tmp_path, 15, seed=11, annotation_fraction=0.5)
    marked = set(rep["annotated"])
    assert 5 < len(marked) < 25
    hits = 0
    for c in ("Clear", "Opacity"):
        for f in sorted((tmp_path / c / "images").glob("*.png")):
            img, _ = load_image(str(f))
            mask, _ = load_mask(str(tmp_path / c / "masks" / f.name), img.shape)
            crop, _ = crop_square(img, square_box(mask_bbox(mask), img.shape, 0.05))
            hits += detect_annotations(crop)["flagged"] == (f.stem in marked)
    assert hits >= 0.9 * 30


def test_detector_flags_a_marker_burnt_into_real_images(data_cxr_root):
    files = sorted((data_cxr_root / "kaggle224" / "Normal").glob("*.png"))[:40:4]
    rng = np.random.default_rng(0)
    caught = 0
    for f in files:
        img, _ = load_image(str(f))
        crop, _ = crop_square(img, center_box(img.shape))
        marked = crop.copy()
        lungs = np.zeros_like(crop, bool)
        lungs[40:180, 30:190] = True
        _burn_marker(marked, rng, lungs)
        caught += detect_annotations(marked)["flagged"]
    assert caught >= 0.8 * len(files)


def test_detector_on_real_hannover_flags_some_not_all(data_cxr_root):
    flagged = 0
    n = 0
    for img_path, mask_path in _hannover_with_masks(data_cxr_root, 20):
        img, _ = load_image(str(img_path))
        mask, _ = load_mask(str(mask_path), img.shape)
        crop, _ = crop_square(img, square_box(mask_bbox(mask), img.shape, 0.05))
        res = detect_annotations(crop)
        n += 1
        flagged += res["flagged"]
        for (y, x, _h, _w, contrast) in res["components"]:
            assert 0 <= y < crop.shape[0] and 0 <= x < crop.shape[1] and contrast > 0
    assert 0 < flagged < n


def _bad_dataset(data_phantom_root, tmp_path, data_cxr_root):
    root = tmp_path / "bad"
    shutil.copytree(data_phantom_root, root)
    img_dir, mask_dir = root / "Clear" / "images", root / "Clear" / "masks"
    good = (img_dir / "Clear-1.png").read_bytes()
    (img_dir / "Clear-2.png").write_bytes(good[: len(good) // 3])  # truncated
    (img_dir / "Clear-3.png").write_bytes(b"this is not a png")  # corrupt
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(mask_dir / "Clear-4.png")  # all-black mask
    (mask_dir / "Clear-5.png").unlink()  # missing mask
    (root / "Opacity" / "masks" / "Opacity-6.png").write_bytes(b"garbage")  # corrupt mask
    return root


def test_bad_inputs_are_accounted_for(data_phantom_root, data_cxr_root, tmp_path):
    root = _bad_dataset(data_phantom_root, tmp_path, data_cxr_root)
    excl = tmp_path / "exclude.txt"
    excl.write_text("# hand-checked\nOpacity-7\nClear-9.png\nnot-in-dataset\n")
    out = tmp_path / "out"
    cfg = PreprocessConfig(str(root), str(out), classes=["Clear", "Opacity"], resolution=32, test_per_class=2,
                           shard_size=5, exclude=str(excl), workers=1, progress=False, annotations="keep")
    summary = run_preprocess(cfg)
    m = read_manifest(out)
    assert summary["inputs"] == 24 == summary["written"] + summary["excluded"] + summary["failed"]
    reasons = {e["stem"]: e["reason"] for e in m["excluded"]}
    failed = {e["stem"]: e for e in m["failed"]}
    assert failed["Clear-2"]["reason"] == "unreadable_image" and "Clear-2.png" in failed["Clear-2"]["detail"]
    assert failed["Clear-3"]["reason"] == "unreadable_image"
    assert failed["Opacity-6"]["reason"] == "unreadable_mask" and "Opacity-6.png" in failed["Opacity-6"]["detail"]
    assert reasons["Clear-4"] == "empty_mask"
    assert reasons["Opacity-7"] == reasons["Clear-9"] == "manual_exclusion"
    assert m["exclude_list_unmatched"] == ["not-in-dataset"]
    assert m["annotation_flagged_kept"], "the phantom set carries markers the detector should flag"
    # the missing mask was centre-cropped (default policy) and flagged
    written = {s: read_split(out, s) for s in ("train", "val", "test")}
    flags = {src: fl for d in written.values() for src, fl in zip(d["source"], d["flags"])}
    assert flags["Clear-5"] & sources.FLAG_NO_MASK
    assert all(fl & sources.FLAG_MASK_RESIZED for src, fl in flags.items() if src != "Clear-5")
    assert sum(len(d["labels"]) for d in written.values()) == summary["written"]
    assert not set(flags) & (set(reasons) | set(failed))


def test_missing_mask_policies(data_phantom_root, tmp_path):
    root = tmp_path / "ph"
    shutil.copytree(data_phantom_root, root)
    (root / "Clear" / "masks" / "Clear-5.png").unlink()
    base = dict(classes=["Clear", "Opacity"], resolution=32, test_per_class=2, workers=1, progress=False,
                annotations="keep")
    s = run_preprocess(PreprocessConfig(str(root), str(tmp_path / "skip"), no_mask_policy="skip", **base))
    m = read_manifest(tmp_path / "skip")
    assert [e["stem"] for e in m["excluded"]] == ["Clear-5"] and m["excluded"][0]["reason"] == "missing_mask"
    assert s["written"] == 23
    assert m["annotation_flagged_kept"]  # keep: flagged but written
    with pytest.raises(HpcganError, match=r"Clear-5.png"):
        run_preprocess(PreprocessConfig(str(root), str(tmp_path / "err"), no_mask_policy="error", **base))


def test_too_few_images_for_the_test_split(data_phantom_root, tmp_path):
    with pytest.raises(HpcganError, match="lower --test-per-class"):
        run_preprocess(PreprocessConfig(str(data_phantom_root), str(tmp_path / "o"), classes=["Clear", "Opacity"],
                                        resolution=32, workers=1, progress=False))


def test_resolved_config_is_written(data_phantom_root, tmp_path):
    import yaml

    run_preprocess(PreprocessConfig(str(data_phantom_root), str(tmp_path / "o"), classes=["Clear", "Opacity"],
                                    resolution=24, test_per_class=2, workers=1, progress=False))
    cfg = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())
    assert cfg["resolution"] == 24 and cfg["classes"] == ["Clear", "Opacity"]
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["labels"] == {"Clear": 0, "Opacity": 1}
    assert sum(sh["n"] for sh in m["shards"]) == m["summary"]["written"]


def test_an_unwritable_scan_journal_is_a_clear_error(data_phantom_root, tmp_path):
    """The journal cannot be opened for appending (here it is a link to a read-only kernel file): the run stops
    with an error naming the work folder, not a KeyError from the statuses it could not record."""
    out = tmp_path / "o"
    (out / ".work").mkdir(parents=True)
    (out / ".work" / "scan-r00000.jsonl").symlink_to("/proc/version")
    cfg = PreprocessConfig(str(data_phantom_root), str(out), classes=["Clear", "Opacity"], resolution=24,
                           test_per_class=2, workers=1, progress=False)
    with pytest.raises(HpcganError, match=r"cannot write the scan journal in .*\.work"):
        run_preprocess(cfg)
