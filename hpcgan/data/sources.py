"""Dataset layouts and image/mask loading.

Layouts (``layout=`` / ``--layout``):

``kaggle``  ``ROOT/<Class>/images/*.png`` with lung masks in ``ROOT/<Class>/masks/<stem>.png``
            (the COVID-19 Radiography Database as downloaded).
``flat``    ``ROOT/<Class>/*.png`` (the database's older release; no masks unless ``mask_root``).
``plain``   any class folders ``ROOT/<Class>/*`` (png, jpg, tif) with an optional parallel
            mask folder ``MASKS/<Class>/<stem>.png`` or ``MASKS/<stem>.png``.
``dicom``   class folders ``ROOT/<Class>/*`` of DICOM files under any file name (``.dcm``,
            UID names, no extension); a file that is not DICOM is excluded with a reason.
``auto``    kaggle when every selected class has an ``images`` folder, else flat/plain.

``.dcm`` / ``.dicom`` files are read as DICOM in every layout (pydicom, the
``[dicom]`` extra): see :func:`load_dicom`. The patient of a DICOM file is its
``PatientID`` (unless ``--metadata`` names one), so splits are patient-aware
without a CSV.

Every image loads as one 8-bit channel: grayscale as is, RGB with equal channels
as one channel (unequal channels are converted to luminance and flagged), alpha is
dropped, 16-bit images are scaled linearly from the bit depth they use (so 12-bit
data stored in 16 bits keeps its contrast) and never clipped.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from hpcgan.errors import HpcganError

DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp") + DICOM_SUFFIXES
LAYOUTS = ("auto", "kaggle", "flat", "plain", "dicom")

# Per-image flags (bit field, stored in the shards' ``flags`` dataset).
FLAG_NO_MASK = 1 << 0  # no lung mask: centre crop was used
FLAG_MASK_RESIZED = 1 << 1  # the mask had another size and was resized to the image
FLAG_PADDED = 1 << 2  # the square crop reached past the image border (zero padded)
FLAG_ANNOTATION = 1 << 3  # the annotation detector fired (image kept with --annotations keep)
FLAG_RGB = 1 << 4  # the file was RGB/RGBA with equal channels
FLAG_RGB_UNEQUAL = 1 << 5  # RGB with unequal channels: converted to luminance
FLAG_16BIT = 1 << 6  # the file was 16-bit: scaled to 8 bits
FLAG_ALPHA = 1 << 7  # the file had an alpha channel (dropped)
FLAG_SYNTHETIC = 1 << 8  # made by a generator (`hpcgan generate`), not a real X-ray
FLAG_DICOM = 1 << 9  # read from a DICOM file
FLAG_INVERTED = 1 << 10  # DICOM MONOCHROME1 (low values are white): inverted
FLAG_WINDOWED = 1 << 11  # DICOM scaled to 8 bits with the file's VOI window or VOI LUT

FLAG_NAMES = {
    FLAG_NO_MASK: "no_mask",
    FLAG_MASK_RESIZED: "mask_resized",
    FLAG_PADDED: "padded",
    FLAG_ANNOTATION: "annotation",
    FLAG_RGB: "rgb",
    FLAG_RGB_UNEQUAL: "rgb_unequal",
    FLAG_16BIT: "16bit",
    FLAG_ALPHA: "alpha",
    FLAG_SYNTHETIC: "synthetic",
    FLAG_DICOM: "dicom",
    FLAG_INVERTED: "monochrome1_inverted",
    FLAG_WINDOWED: "voi_windowed",
}


class ImageLoadError(HpcganError):
    """An image or mask file cannot be decoded (corrupt, truncated, unknown format)."""


class NotAnXrayError(HpcganError):
    """A readable file that holds no single grayscale radiograph (``reason``: a short key for the manifest)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class ImageRecord:
    """One input image: where it is, its class and label, its mask and patient (if known)."""

    path: str
    stem: str
    class_name: str
    label: int
    mask_path: str | None = None
    patient: str | None = None


@dataclass
class SourceListing:
    records: list[ImageRecord]
    layout: str
    classes: list[str]
    notes: list[str] = field(default_factory=list)


def _list_images(folder: Path, any_name: bool = False) -> list[Path]:
    """Image files of ``folder`` in natural order; ``any_name``: every regular, non-hidden file (DICOM layout)."""
    try:
        entries = list(os.scandir(folder))
    except NotADirectoryError as exc:
        raise HpcganError(f"{folder} is not a folder; class folders must be directories") from exc
    except PermissionError as exc:
        raise HpcganError(f"cannot read folder {folder} (permission denied); fix its permissions") from exc
    except FileNotFoundError as exc:
        raise HpcganError(f"folder {folder} does not exist") from exc
    except OSError as exc:
        raise HpcganError(f"cannot read folder {folder}: {exc}") from exc
    files = [Path(e.path) for e in entries if not e.name.startswith(".")
             and (e.name.lower().endswith(IMAGE_SUFFIXES) or (any_name and e.is_file()))]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _natural_key(name: str):
    """Sort 'COVID-2' before 'COVID-10' (stable, locale independent)."""
    out = []
    num = ""
    for ch in name:
        if ch.isdigit():
            num += ch
        else:
            if num:
                out.append((0, int(num), ""))
                num = ""
            out.append((1, 0, ch))
    if num:
        out.append((0, int(num), ""))
    return out


def _mask_index(folder: Path | None) -> dict[str, Path]:
    if folder is None or not folder.is_dir():
        return {}
    return {p.stem: p for p in _list_images(folder)}


def read_patient_ids(csv_path: str | os.PathLike) -> dict[str, str]:
    """``image stem -> patient id`` from a CSV with columns image_id (or stem) and patient_id."""
    path = Path(csv_path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            cols = reader.fieldnames or []
            key = "image_id" if "image_id" in cols else "stem" if "stem" in cols else None
            if key is None or "patient_id" not in cols:
                raise HpcganError(
                    f"metadata {path} needs the columns image_id (or stem) and patient_id; it has {cols}"
                )
            return {row[key]: row["patient_id"] for row in reader if row.get(key)}
    except OSError as exc:
        raise HpcganError(f"cannot read metadata {path}: {exc}") from exc


def discover(
    root: str | os.PathLike,
    classes: list[str] | tuple[str, ...],
    layout: str = "auto",
    mask_root: str | os.PathLike | None = None,
    metadata: str | os.PathLike | None = None,
) -> SourceListing:
    """List every input image of the selected classes, in a stable order (class, natural name).

    Labels are the classes' positions in ``classes``. Raises HpcganError for a
    missing or unreadable root or class folder, a class with no images, and two
    images with the same file stem (stems identify images in the manifest).
    """
    root = Path(root)
    _check_selection(root, classes, layout)
    layout = _resolve_layout(root, classes, layout, mask_root)
    patients = read_patient_ids(metadata) if metadata else {}
    records: list[ImageRecord] = []
    seen: dict[str, str] = {}
    for label, c in enumerate(classes):
        img_dir, masks = _class_folders(root, c, layout, mask_root)
        files = _list_images(img_dir, any_name=layout == "dicom")
        if not files:
            raise HpcganError(
                f"class {c!r} has no images in {img_dir} (looked for {', '.join(IMAGE_SUFFIXES)}); "
                "remove it from --classes or check the layout"
            )
        for f in files:
            if f.stem in seen:
                raise HpcganError(
                    f"two images share the file stem {f.stem!r}: {seen[f.stem]} and {f}; "
                    "stems identify images in the manifest, rename one"
                )
            seen[f.stem] = str(f)
            m = masks.get(f.stem)
            patient = patients.get(f.stem)
            if patient is None and (layout == "dicom" or is_dicom_name(f)):
                patient = dicom_patient_id(f)
            records.append(ImageRecord(str(f), f.stem, c, label, str(m) if m else None, patient))
    return SourceListing(records, layout, list(classes))


def _check_selection(root: Path, classes: list[str] | tuple[str, ...], layout: str) -> None:
    """HpcganError unless ``root`` is a folder holding a folder per class, the classes are distinct, the layout known."""
    if not root.is_dir():
        raise HpcganError(f"dataset root {root} is not a folder; pass the folder that holds the class folders")
    if not classes:
        raise HpcganError("no classes selected; pass --classes, e.g. COVID,Normal")
    if len(set(classes)) != len(classes):
        raise HpcganError(f"--classes lists a class twice: {list(classes)}")
    if layout not in LAYOUTS:
        raise HpcganError(f"unknown layout {layout!r}; use {', '.join(LAYOUTS)}")
    for c in classes:
        if not (root / c).exists():
            present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            raise HpcganError(f"class folder {root / c} does not exist; classes found in {root}: {present}")


def _resolve_layout(root: Path, classes, layout: str, mask_root) -> str:
    """``layout``, or for ``auto``: kaggle when every class has an images/ folder, else plain with masks, flat without."""
    if layout != "auto":
        return layout
    layout = "kaggle" if all((root / c / "images").is_dir() for c in classes) else "flat"
    if mask_root is not None and layout == "flat":
        layout = "plain"
    return layout


def _class_folders(root: Path, c: str, layout: str, mask_root) -> tuple[Path, dict[str, Path]]:
    """Class ``c``'s image folder and its masks by stem (kaggle: ``c/masks``; else under ``mask_root``, if any)."""
    if layout == "kaggle":
        img_dir, masks = root / c / "images", _mask_index(root / c / "masks")
        if not img_dir.is_dir():
            raise HpcganError(f"{img_dir} is missing: the kaggle layout needs ROOT/<Class>/images/*.png")
        return img_dir, masks
    masks = {}
    if mask_root is not None:
        mroot = Path(mask_root)
        if not mroot.is_dir():
            raise HpcganError(f"mask folder {mroot} is not a folder")
        masks = _mask_index(mroot / c) if (mroot / c).is_dir() else _mask_index(mroot)
    return root / c, masks


# --------------------------------------------------------------------------- DICOM


def is_dicom_name(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(DICOM_SUFFIXES)


def has_dicom_marker(path: str | os.PathLike) -> bool:
    """True when the file carries the DICOM Part 10 marker ``DICM`` after its 128-byte preamble."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _pydicom():
    try:
        import pydicom
    except ImportError as exc:
        raise HpcganError("reading DICOM files needs pydicom: pip install pydicom (or the hpcgan[dicom] extra)") from exc
    return pydicom


def dicom_patient_id(path: str | os.PathLike) -> str | None:
    """The file's ``PatientID`` (header only), or None when absent, empty or unreadable (loading reports why)."""
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
    except Exception:  # noqa: BLE001 - an unreadable file fails later, in load_dicom, with its reason
        return None
    pid = str(ds.get("PatientID", "") or "").strip()
    return pid or None


def _first(value) -> float:
    """A DICOM number that may be multi-valued (several windows): its first value."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _stored_range(ds) -> tuple[float, float]:
    """The smallest and largest value the stored bits can hold."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0 ** bits - 1


def _window(x: np.ndarray, center: float, width: float, function: str) -> np.ndarray | None:
    """The VOI window (DICOM PS3.3 C.11.2.1.2) of ``x`` onto [0, 255]; None for an unusable width."""
    if function == "SIGMOID":
        return None if width <= 0 else 255.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        return None if width <= 0 else np.clip(((x - center) / width + 0.5) * 255.0, 0.0, 255.0)
    if width < 1:  # LINEAR (the default)
        return None
    if width == 1:
        return np.where(x > center - 0.5, 255.0, 0.0)
    return np.clip(((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0, 0.0, 255.0)


def _voi_to_255(values: np.ndarray, ds) -> tuple[np.ndarray, bool]:
    """Modality values to [0, 255]: the VOI LUT or window when the file has one, else the stored range."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out = apply_voi_lut(np.rint(values).astype(np.int64), ds, index=0, prefer_lut=True).astype(np.float64)
        return np.clip(out * (255.0 / (2.0 ** bits - 1)), 0.0, 255.0), True
    if "WindowCenter" in ds and "WindowWidth" in ds:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        out = _window(values, _first(ds.WindowCenter), _first(ds.WindowWidth), function)
        if out is not None:
            return out, True
    lo, hi = sorted(float(v) for v in apply_modality_lut(np.array(_stored_range(ds)), ds))
    return (values - lo) * (255.0 / (hi - lo if hi > lo else 1.0)), False


def load_dicom(path: str) -> tuple[np.ndarray, int]:
    """A single-frame grayscale DICOM as (H, W) uint8 plus flags.

    The pixels go through the modality transform (RescaleSlope / RescaleIntercept,
    or the Modality LUT), then the file's first VOI LUT or window (WindowCenter /
    WindowWidth with its VOILUTFunction) onto 0-255; without one the range the
    stored bits can hold (after the modality transform) is scaled onto 0-255, so
    8-bit files keep their values. MONOCHROME1 is inverted so bone is bright.
    Raises ImageLoadError (corrupt, truncated, no decoder for its transfer syntax)
    or NotAnXrayError (no pixel data, several frames, colour).
    """
    ds = _read_dicom(path)
    photometric = _radiograph_photometric(ds, path)
    try:
        raw = ds.pixel_array
    except Exception as exc:  # truncated pixel data or a missing codec (re-raised)
        raise ImageLoadError(f"cannot decode the pixels of DICOM {path} ({type(exc).__name__}: {exc}); the pixel "
                             "data is truncated or its transfer syntax needs a decoder pydicom lacks here") from exc
    from pydicom.pixels import apply_modality_lut

    try:
        values = np.asarray(apply_modality_lut(raw, ds), dtype=np.float64)  # [H, W]
        out, windowed = _voi_to_255(values, ds)
    except Exception as exc:  # a malformed LUT or window element (re-raised)
        raise ImageLoadError(f"cannot apply the rescale / VOI LUT of DICOM {path} ({type(exc).__name__}: {exc}); "
                             "its grey-level elements (0028,xxxx) are damaged: export it again") from exc
    flags = FLAG_DICOM | (FLAG_WINDOWED if windowed else 0)
    if int(ds.get("BitsStored", 8)) > 8:
        flags |= FLAG_16BIT
    if photometric == "MONOCHROME1":
        out, flags = 255.0 - out, flags | FLAG_INVERTED
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), flags


def _read_dicom(path: str):
    """The parsed DICOM dataset at ``path``; ImageLoadError when it is missing or corrupt."""
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(path)
    except FileNotFoundError as exc:
        raise ImageLoadError(f"image {path} does not exist") from exc
    except Exception as exc:  # pydicom raises many types for a damaged file (re-raised)
        raise ImageLoadError(f"cannot decode DICOM {path} ({type(exc).__name__}: {exc}); the file is corrupt or "
                             "truncated: export it again or list its stem in --exclude") from exc
    if "PixelData" not in ds and "SOPClassUID" not in ds:  # every DICOM object names its SOP class
        raise ImageLoadError(f"cannot decode DICOM {path}: neither a SOP class nor pixel data could be read; the "
                             "file is corrupt or truncated: export it again or list its stem in --exclude")
    return ds


def _radiograph_photometric(ds, path: str) -> str:
    """The photometric interpretation of a single grayscale image; NotAnXrayError for any other DICOM object."""
    if "PixelData" not in ds:
        raise NotAnXrayError("not_an_image", f"DICOM {path} holds no pixel data (SOP class "
                        f"{ds.get('SOPClassUID', 'unknown')}, modality {ds.get('Modality', 'unknown')})")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise NotAnXrayError("multi_frame", f"DICOM {path} has {frames} frames; hpcgan reads single-frame "
                        "radiographs: export the frame you want as a file of its own")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise NotAnXrayError("not_grayscale", f"DICOM {path} is {photometric or 'without PhotometricInterpretation'}, "
                        "not MONOCHROME1/MONOCHROME2: not a radiograph")
    return photometric


def _open(path: str, what: str) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()
        return im
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{what} {path} does not exist") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(
            f"cannot decode {what} {path} ({exc}); the file is corrupt or truncated: "
            "re-download it or list its stem in --exclude"
        ) from exc


def to_gray8(im: Image.Image) -> tuple[np.ndarray, int]:
    """Any PIL image as a 2-D uint8 array and the flags describing the conversion."""
    flags = 0
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im)
        if a.ndim != 2:
            raise ImageLoadError(f"unexpected {mode} image shape {a.shape}")
        a = a.astype(np.float64)
        lo = min(0.0, float(a.min()))
        hi = float(a.max())
        if mode == "F":
            scale = hi - lo if hi > lo else 1.0
        else:
            bits = max(8, int(np.ceil(np.log2(hi - lo + 1))) if hi > lo else 8)
            scale = float(2**bits - 1)
        out = np.rint((a - lo) * (255.0 / scale))
        return np.clip(out, 0, 255).astype(np.uint8), flags | FLAG_16BIT
    if mode in ("LA", "RGBA", "PA"):
        flags |= FLAG_ALPHA
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode == "PA":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"), dtype=np.uint8), flags
    if mode == "LA":
        return np.asarray(im, dtype=np.uint8)[..., 0].copy(), flags
    if mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr"):
        a = np.asarray(im.convert("RGB"), dtype=np.uint8)
        if np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]):
            return a[..., 0].copy(), flags | FLAG_RGB
        return np.asarray(im.convert("RGB").convert("L"), dtype=np.uint8), flags | FLAG_RGB_UNEQUAL
    return np.asarray(im.convert("L"), dtype=np.uint8), flags


def load_image(path: str) -> tuple[np.ndarray, int]:
    """The image at ``path`` as (H, W) uint8 plus conversion flags.

    DICOM (a ``.dcm``/``.dicom`` name or the ``DICM`` marker) goes to :func:`load_dicom`.
    ImageLoadError if undecodable; NotAnXrayError for a file of the DICOM layout that is
    neither DICOM nor an image format, and for DICOM files without a radiograph.
    """
    if is_dicom_name(path):
        return load_dicom(path)
    if str(path).lower().endswith(IMAGE_SUFFIXES):
        return to_gray8(_open(path, "image"))
    if has_dicom_marker(path):
        return load_dicom(path)
    raise NotAnXrayError("not_an_image", f"{path} is not a DICOM file (no DICM marker at byte 128) and has no "
                    f"image suffix ({', '.join(IMAGE_SUFFIXES)})")


def load_mask(path: str, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """The lung mask at ``path`` resized to ``shape`` (H, W) and thresholded at >127, plus flags."""
    im = _open(path, "mask")
    a, _ = to_gray8(im)
    flags = 0
    if a.shape != tuple(shape):
        a = np.asarray(Image.fromarray(a).resize((shape[1], shape[0]), Image.BILINEAR))
        flags |= FLAG_MASK_RESIZED
    return a > 127, flags
