"""DICOM input (pydicom): photometric, bit depths, rescale, VOI window, RLE, PatientID, bad files; not-X-ray checks.

Every DICOM here is written by the test with pydicom from a real PNG of ../shared/data/cxr.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom  # a pinned dependency (requirements.txt): a missing pydicom fails, never skips
import pytest
from PIL import Image

from hpcgan.data import sources
from hpcgan.data.preprocess import PreprocessConfig, run_preprocess
from hpcgan.data.shards import read_manifest, read_split
from hpcgan.data.sources import ImageLoadError, NotAnXrayError, discover, load_dicom, load_image

from .helpers import link_subset, run_cli

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def write_dicom(path: Path, stored: np.ndarray | None, *, photometric: str = "MONOCHROME2", bits: int = 8,
                rescale: tuple[float, float] | None = None, window: tuple[float, float] | None = None,
                voi_lut: np.ndarray | None = None, rle: bool = False, patient: str = "P0",
                sop_class: str = DX_STORAGE) -> Path:
    """A DICOM Part 10 file of ``stored`` values (``[H, W]`` or ``[frames, H, W]``; None: no pixel data)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = patient, "DX" if stored is not None else "SR"
    if stored is not None:
        ds.Rows, ds.Columns = stored.shape[-2:]
        if stored.ndim == 3:
            ds.NumberOfFrames = stored.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (8 if bits <= 8 else 16), bits, bits - 1, 0
        if rescale is not None:
            ds.RescaleSlope, ds.RescaleIntercept = rescale
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = window
        if voi_lut is not None:  # a 12-bit VOI LUT for the values 0 .. len - 1
            item = Dataset()
            item.LUTDescriptor = [len(voi_lut), 0, 12]
            item.add_new(0x00283006, "US", [int(v) for v in voi_lut])  # LUTData
            ds.VOILUTSequence = [item]
        ds.PixelData = stored.astype(np.uint8 if bits <= 8 else np.uint16).tobytes()
        if rle:
            ds.compress(RLELossless)
    ds.save_as(path, enforce_file_format=True)
    return path


# Stored values that decode to the 8-bit image ``a``: (name, kwargs, stored(a)).
# 16 bit: modality value x = 2 * stored - 1024 = 8 * a - 500; the window (520.5, 2041) maps x back to a;
# the VOI LUT maps stored = 262 + 4 a to a (in 12 bits).
VARIANTS = [
    ("m2_8bit", dict(), lambda a: a),
    ("m1_8bit", dict(photometric="MONOCHROME1"), lambda a: 255 - a),
    ("m2_12bit", dict(bits=12), lambda a: np.rint(a * (4095 / 255))),
    ("m2_16bit_window", dict(bits=16, rescale=(2, -1024), window=(520.5, 2041)), lambda a: 262 + 4 * a),
    ("m2_16bit_voi_lut", dict(bits=16, voi_lut=np.rint(np.clip((np.arange(1400) - 262) / 4, 0, 255) * (4095 / 255))),
     lambda a: 262 + 4 * a),
    ("m1_16bit_window_rle", dict(photometric="MONOCHROME1", bits=16, rescale=(2, -1024), window=(520.5, 2041),
                                 rle=True), lambda a: 262 + 4 * (255 - a)),
]


def _gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")).astype(np.int64)


def test_every_variant_decodes_to_the_png_pixels(data_cxr_root, tmp_path):
    png = data_cxr_root / "kaggle224" / "COVID" / "COVID-1.png"
    a = _gray(png)
    assert np.array_equal(load_image(str(png))[0], a)
    for name, kw, stored in VARIANTS:
        path = write_dicom(tmp_path / f"{name}.dcm", stored(a), **kw)
        got, flags = load_image(str(path))
        assert got.dtype == np.uint8 and got.shape == a.shape, name
        assert np.abs(got.astype(np.int64) - a).max() <= 1, name  # within rounding (these are exact)
        assert flags & sources.FLAG_DICOM
        assert bool(flags & sources.FLAG_INVERTED) == (kw.get("photometric") == "MONOCHROME1"), name
        assert bool(flags & sources.FLAG_WINDOWED) == ("window" in kw or "voi_lut" in kw), name
        assert bool(flags & sources.FLAG_16BIT) == (kw.get("bits", 8) > 8), name
    assert pydicom.dcmread(tmp_path / "m1_16bit_window_rle.dcm").file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    # The window and the rescale matter: without them the same 16-bit values give another image.
    plain = write_dicom(tmp_path / "no_window.dcm", 262 + 4 * a, bits=16)
    assert np.abs(load_dicom(str(plain))[0].astype(np.int64) - a).max() > 100
    # No window: the stored range after the rescale is scaled onto 0-255 (here 12 bits, intercept -2048).
    shifted = write_dicom(tmp_path / "rescaled.dcm", np.rint(a * (4095 / 255)), bits=12, rescale=(1, -2048))
    assert np.abs(load_dicom(str(shifted))[0].astype(np.int64) - a).max() <= 1


def test_non_images_corrupt_and_truncated_files(data_cxr_root, tmp_path):
    a = _gray(data_cxr_root / "kaggle224" / "Normal" / "Normal-1342.png")
    with pytest.raises(NotAnXrayError, match="2 frames") as exc:
        load_dicom(str(write_dicom(tmp_path / "cine.dcm", np.stack([a, a]))))
    assert exc.value.reason == "multi_frame"
    with pytest.raises(NotAnXrayError, match="no pixel data") as exc:
        load_dicom(str(write_dicom(tmp_path / "report.dcm", None, sop_class=BASIC_TEXT_SR)))
    assert exc.value.reason == "not_an_image"
    with pytest.raises(NotAnXrayError, match="PALETTE COLOR") as exc:
        load_dicom(str(write_dicom(tmp_path / "screenshot.dcm", a, photometric="PALETTE COLOR")))
    assert exc.value.reason == "not_grayscale"
    good = write_dicom(tmp_path / "good.dcm", a).read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(good[: len(good) // 2])
    rng = np.random.default_rng(0)
    (tmp_path / "corrupt.dcm").write_bytes(good[:140] + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (tmp_path / "text.dcm").write_text("not a DICOM file\n")
    for name in ("truncated.dcm", "corrupt.dcm", "text.dcm"):
        with pytest.raises(ImageLoadError, match=name):
            load_image(str(tmp_path / name))


def test_preprocess_dicom_folder_matches_png_route(data_cxr_root, tmp_path):
    """`hpcgan preprocess --layout dicom` on DICOMs made from real PNGs == the PNG route, pixel for pixel (within 1);
    bad files are accounted for; PatientID keeps a patient's images in one split."""
    png_root, dcm_root = tmp_path / "png", tmp_path / "dcm"
    stems = {c: link_subset(data_cxr_root / "kaggle224" / c, png_root / c, 5, step=11) for c in ("COVID", "Normal")}
    k = 0
    for c, names in stems.items():
        (dcm_root / c).mkdir(parents=True)
        for i, stem in enumerate(names):
            name, kw, stored = VARIANTS[k % len(VARIANTS)]
            k += 1
            # two images per patient; the first of each class has no suffix at all (read by its DICM marker)
            fname = f"{stem}.dcm" if i else f"{stem}"
            write_dicom(dcm_root / c / fname, stored(_gray(png_root / c / f"{stem}.png")), patient=f"{c}-{i // 2}", **kw)
    a = _gray(png_root / "COVID" / f"{stems['COVID'][0]}.png")
    write_dicom(dcm_root / "COVID" / "cine.dcm", np.stack([a, a]))
    write_dicom(dcm_root / "COVID" / "report.dcm", None, sop_class=BASIC_TEXT_SR)
    good = (dcm_root / "COVID" / f"{stems['COVID'][1]}.dcm").read_bytes()
    (dcm_root / "Normal" / "truncated.dcm").write_bytes(good[: len(good) // 2])
    (dcm_root / "Normal" / "corrupt.dcm").write_bytes(good[:140] + bytes(range(256)) * 8)
    (dcm_root / "Normal" / "notes.txt").write_text("exported by the PACS\n")

    listing = discover(dcm_root, ["COVID", "Normal"], layout="dicom")
    patients = {r.stem: r.patient for r in listing.records}
    assert patients[stems["COVID"][2]] == patients[stems["COVID"][3]] == "COVID-1"
    args = ["--classes", "COVID,Normal", "--resolution", "64", "--annotations", "off", "--test-per-class", "1",
            "--val-fraction", "0.25", "--workers", "1", "--no-progress"]
    proc = run_cli("preprocess", dcm_root, tmp_path / "out_dcm", "--layout", "dicom", *args)
    assert "10 written + 3 excluded + 2 failed" in proc.stdout, proc.stdout
    run_preprocess(PreprocessConfig(str(png_root), str(tmp_path / "out_png"), resolution=64, annotations="off",
                                    test_per_class=1, val_fraction=0.25, workers=1, progress=False))

    def by_stem(out):
        got = {}
        for split in ("train", "val", "test"):
            d = read_split(out, split)
            for src, img, lab, fl in zip(d["source"], d["images"], d["labels"], d["flags"]):
                got[str(src)] = (img.astype(np.int64), int(lab), int(fl), split)
        return got

    dcm, png = by_stem(tmp_path / "out_dcm"), by_stem(tmp_path / "out_png")
    assert sorted(dcm) == sorted(png) == sorted(stems["COVID"] + stems["Normal"])
    worst = max(int(np.abs(dcm[s][0] - png[s][0]).max()) for s in png)
    print(f"DICOM vs PNG route: largest pixel difference {worst} over {len(png)} images")
    assert worst <= 1
    assert all(dcm[s][1] == png[s][1] and dcm[s][2] & sources.FLAG_DICOM for s in png)
    for c in ("COVID", "Normal"):  # each patient's two images share a split
        for j in (0, 1):
            assert dcm[stems[c][2 * j]][3] == dcm[stems[c][2 * j + 1]][3]
    m = read_manifest(tmp_path / "out_dcm")
    excluded = {e["stem"]: e["reason"] for e in m["excluded"]}
    assert excluded == {"cine": "multi_frame", "report": "not_an_image", "notes": "not_an_image"}
    failed = {e["stem"]: e["detail"] for e in m["failed"]}
    assert set(failed) == {"truncated", "corrupt"}
    assert "truncated.dcm" in failed["truncated"] and "corrupt.dcm" in failed["corrupt"]


def test_tiny_and_constant_images_are_not_xrays(data_cxr_root, tmp_path):
    root = tmp_path / "src"
    link_subset(data_cxr_root / "kaggle224" / "COVID", root / "COVID", 3)
    Image.fromarray(np.full((1, 1), 200, np.uint8)).save(root / "COVID" / "dot.png")
    Image.fromarray(_gray(data_cxr_root / "kaggle224" / "COVID" / "COVID-1.png")[:40].astype(np.uint8)).save(
        root / "COVID" / "strip.png")  # 224 x 40
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(root / "COVID" / "black.png")
    write_dicom(root / "COVID" / "flat.dcm", np.full((96, 96), 700), bits=12)
    base = dict(classes=["COVID"], resolution=32, annotations="off", test_per_class=1, val_fraction=0.0, workers=1,
                progress=False)
    s = run_preprocess(PreprocessConfig(str(root), str(tmp_path / "out"), **base))
    m = read_manifest(tmp_path / "out")
    reasons = {e["stem"]: e["reason"] for e in m["excluded"]}
    assert reasons == {"dot": "too_small", "strip": "too_small", "black": "constant", "flat": "constant"}
    assert "1x1 px" in next(e["detail"] for e in m["excluded"] if e["stem"] == "dot")
    assert s["written"] == 3
    s = run_preprocess(PreprocessConfig(str(root), str(tmp_path / "out32"), min_size=32, **base))
    assert s["written"] == 4 and "strip" not in {e["stem"] for e in read_manifest(tmp_path / "out32")["excluded"]}
    with pytest.raises(Exception, match="--min-size"):
        run_preprocess(PreprocessConfig(str(root), str(tmp_path / "bad"), min_size=0, **base))
