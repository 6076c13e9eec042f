import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hpcgan.data import sources
from hpcgan.data.sources import ImageLoadError, discover, load_image, load_mask
from hpcgan.errors import HpcganError

from .helpers import link_subset


def test_kaggle_layout_pairs_masks(data_phantom_root):
    listing = discover(data_phantom_root, ["Opacity", "Clear"])
    assert listing.layout == "kaggle"
    assert [r.label for r in listing.records if r.class_name == "Opacity"] == [0] * 12
    assert {r.label for r in listing.records if r.class_name == "Clear"} == {1}
    assert all(r.mask_path and os.path.basename(r.mask_path) == os.path.basename(r.path) for r in listing.records)
    # natural order: Clear-2 before Clear-10
    stems = [r.stem for r in listing.records if r.class_name == "Clear"]
    assert stems.index("Clear-2") < stems.index("Clear-10")


def test_flat_layout_on_real_kaggle224(data_cxr_root):
    listing = discover(data_cxr_root / "kaggle224", ["COVID", "Normal"])
    assert listing.layout == "flat"
    n_covid = len(list((data_cxr_root / "kaggle224" / "COVID").glob("*.png")))
    assert sum(r.class_name == "COVID" for r in listing.records) == n_covid
    assert all(r.mask_path is None for r in listing.records)


def test_plain_layout_with_parallel_mask_folder(data_cxr_root, tmp_path):
    stems = link_subset(data_cxr_root / "hannover" / "png", tmp_path / "COVID", 40)
    listing = discover(tmp_path, ["COVID"], layout="plain", mask_root=data_cxr_root / "hannover" / "masks_v7labs")
    have = {p.stem for p in (data_cxr_root / "hannover" / "masks_v7labs").glob("*.png")}
    assert len(listing.records) == 40
    for r in listing.records:
        assert (r.mask_path is not None) == (r.stem in have)
    assert any(r.mask_path for r in listing.records) and any(r.mask_path is None for r in listing.records)
    assert sorted(r.stem for r in listing.records) == sorted(stems)


def test_metadata_gives_patient_ids(data_cxr_root, tmp_path):
    link_subset(data_cxr_root / "hannover" / "png", tmp_path / "COVID", 10)
    listing = discover(tmp_path, ["COVID"], metadata=data_cxr_root / "hannover" / "data.csv")
    assert all(r.patient for r in listing.records)


def test_image_modes_load_as_one_8bit_channel(data_cxr_root, tmp_path):
    ref = np.asarray(Image.open(data_cxr_root / "hannover" / "png" / "0a7faa2a.png").convert("L"))
    variants = {
        "gray": Image.fromarray(ref),
        "rgb": Image.fromarray(np.stack([ref] * 3, -1)),
        "rgba": Image.fromarray(np.dstack([ref, ref, ref, np.full_like(ref, 200)])),
        "la": Image.fromarray(np.dstack([ref, np.full_like(ref, 255)]), "LA"),
    }
    for name, im in variants.items():
        im.save(tmp_path / f"{name}.png")
        got, flags = load_image(str(tmp_path / f"{name}.png"))
        assert got.dtype == np.uint8 and got.shape == ref.shape, name
        assert np.array_equal(got, ref), name
    assert load_image(str(tmp_path / "rgba.png"))[1] & sources.FLAG_ALPHA
    # 16 bit, full range: scaled, not clipped
    Image.fromarray(ref.astype(np.uint16) * 257).save(tmp_path / "i16.png")
    got, flags = load_image(str(tmp_path / "i16.png"))
    assert flags & sources.FLAG_16BIT
    assert np.abs(got.astype(int) - ref).max() <= 1
    # 12-bit data stored in 16 bits keeps its contrast (no clipping to 255, no darkening)
    twelve = (ref.astype(np.int64) * 4095 // 255).astype(np.uint16)
    Image.fromarray(twelve).save(tmp_path / "i12.png")
    got, _ = load_image(str(tmp_path / "i12.png"))
    assert np.abs(got.astype(int) - ref).max() <= 1
    # RGB with unequal channels: luminance, flagged
    col = np.stack([ref, ref // 2, ref], -1)
    Image.fromarray(col).save(tmp_path / "col.png")
    got, flags = load_image(str(tmp_path / "col.png"))
    assert flags & sources.FLAG_RGB_UNEQUAL and got.shape == ref.shape


def test_real_kaggle_rgb_is_equal_channels(data_cxr_root):
    f = sorted((data_cxr_root / "kaggle224" / "COVID").glob("*.png"))[0]
    got, flags = load_image(str(f))
    assert got.shape == (224, 224) and flags & sources.FLAG_RGB and not flags & sources.FLAG_RGB_UNEQUAL


def test_corrupt_and_truncated_png_name_the_file(data_cxr_root, tmp_path):
    good = (data_cxr_root / "hannover" / "png" / "0a7faa2a.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    for name in ("trunc.png", "junk.png"):
        with pytest.raises(ImageLoadError, match=name):
            load_image(str(tmp_path / name))


def test_mask_of_another_size_is_resized(data_cxr_root):
    mask, flags = load_mask(str(data_cxr_root / "hannover" / "masks_v7labs" / "0a7faa2a.png"), (524, 640))
    assert mask.shape == (524, 640) and mask.dtype == bool and flags & sources.FLAG_MASK_RESIZED
    assert 0.1 < mask.mean() < 0.7


def test_bad_folders_stop_with_a_message(tmp_path, data_phantom_root):
    with pytest.raises(HpcganError, match="nowhere is not a folder"):
        discover(tmp_path / "nowhere", ["A"])
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "A" / "x.png")
    with pytest.raises(HpcganError, match="class 'B' has no images"):
        discover(tmp_path, ["A", "B"])
    with pytest.raises(HpcganError, match="C"):
        discover(tmp_path, ["A", "C"])
    (tmp_path / "D").write_text("not a folder")
    with pytest.raises(HpcganError, match="not a folder"):
        discover(tmp_path, ["A", "D"], layout="flat")
    (tmp_path / "E").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "E" / "x.png")
    with pytest.raises(HpcganError, match="share the file stem"):
        discover(tmp_path, ["A", "E"])


def test_unreadable_folder_names_it(tmp_path):
    """A class folder without read permission is an error that names it.

    Root reads every folder, so as root the check runs in a child process that
    has dropped to the unprivileged user 'nobody' (uid 65534)."""
    if os.geteuid() != 0:
        (tmp_path / "A").mkdir()
        os.chmod(tmp_path / "A", 0)
        try:
            with pytest.raises(HpcganError, match="permission denied"):
                discover(tmp_path, ["A"], layout="flat")
        finally:
            os.chmod(tmp_path / "A", 0o755)
        return
    import subprocess
    import sys
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="hpcgan-perm-"))
    try:
        os.chmod(root, 0o755)
        (root / "A").mkdir()
        os.chmod(root / "A", 0)
        code = (
            "import os, sys\n"
            "from hpcgan.data.sources import discover\n"
            "from hpcgan.errors import HpcganError\n"
            "os.setgid(65534); os.setuid(65534)  # after the imports: /root is closed to nobody\n"
            "try:\n"
            f"    discover({str(root)!r}, ['A'], layout='flat')\n"
            "except HpcganError as e:\n"
            "    print('ERR', e)\n"
        )
        repo = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=repo)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd="/")
        assert out.stdout.startswith("ERR"), out.stdout + out.stderr
        assert "permission denied" in out.stdout and str(root / "A") in out.stdout
    finally:
        os.chmod(root / "A", 0o755)
        import shutil

        shutil.rmtree(root)


def test_folder_nobody_can_read_is_reported(tmp_path):
    """A symlink loop cannot be listed by any user, root included."""
    (tmp_path / "A").symlink_to(tmp_path / "A")
    with pytest.raises(HpcganError, match=str(tmp_path / "A")):
        discover(tmp_path, ["A"], layout="flat")
    from hpcgan.data.sources import _list_images

    with pytest.raises(HpcganError, match="cannot read folder"):
        _list_images(tmp_path / "A")


def test_dangling_class_folder_link_is_reported(tmp_path):
    (tmp_path / "A").symlink_to(tmp_path / "gone")
    with pytest.raises(HpcganError, match="A"):
        discover(tmp_path, ["A"], layout="flat")
