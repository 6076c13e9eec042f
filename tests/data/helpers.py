"""Small helpers shared by the data tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from hpcgan.data.shards import read_manifest, read_split

REPO = Path(__file__).resolve().parents[2]


def phantom_shards(tmp_path_factory, name: str, n: int, seed: int, test_per_class: int, val_fraction: float,
                   resolution: int = 32) -> Path:
    """``n`` phantoms per class (Clear, Opacity) through the real preprocessing into 32 px shards; their folder."""
    from hpcgan.data.phantom import generate_phantoms
    from hpcgan.data.preprocess import PreprocessConfig, run_preprocess

    root = tmp_path_factory.mktemp(f"{name}_phantoms")
    generate_phantoms(root, n, seed=seed)
    out = tmp_path_factory.mktemp(f"{name}_shards")
    run_preprocess(PreprocessConfig(str(root), str(out), classes=["Clear", "Opacity"], resolution=resolution,
                                    test_per_class=test_per_class, val_fraction=val_fraction, workers=1,
                                    progress=False))
    return out


def link_subset(src_dir: Path, dst_dir: Path, n: int, step: int = 1) -> list[str]:
    """Symlink ``n`` images of ``src_dir`` (every ``step``-th, sorted) into ``dst_dir``; returns the stems."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    files = sorted(src_dir.glob("*.png"))[::step][:n]
    for f in files:
        (dst_dir / f.name).symlink_to(f)
    return [f.stem for f in files]


def split_contents(out) -> dict:
    """Decoded contents of every split: images, labels and sources in manifest order."""
    return {s: read_split(out, s) for s in ("train", "val", "test")}


def assert_same_output(a, b) -> None:
    ca, cb = split_contents(a), split_contents(b)
    for split in ("train", "val", "test"):
        assert list(ca[split]["source"]) == list(cb[split]["source"]), split
        assert np.array_equal(ca[split]["labels"], cb[split]["labels"]), split
        assert np.array_equal(ca[split]["images"], cb[split]["images"]), split
        assert np.array_equal(ca[split]["mask_bbox"], cb[split]["mask_bbox"]), split
        assert np.array_equal(ca[split]["flags"], cb[split]["flags"]), split
    ma, mb = read_manifest(a), read_manifest(b)
    assert ma["counts"] == mb["counts"]
    assert [e["stem"] for e in ma["excluded"]] == [e["stem"] for e in mb["excluded"]]


def run_cli(*args, mpirun: list[str] | None = None, np_: int = 2, check: bool = True, timeout: float = 120):
    cmd = [sys.executable, "-m", "hpcgan.cli", *map(str, args)]
    if mpirun:
        cmd = [*mpirun, "-np", str(np_), *cmd]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
