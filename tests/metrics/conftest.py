"""Fixtures of the metrics tests (prefix ``metrics_``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hpcgan.data.preprocess import PreprocessConfig, run_preprocess
from hpcgan.data.shards import FORMAT_VERSION, MANIFEST, atomic_write_text, write_shard

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m hpcgan.cli ARGS`` in a subprocess (real exit codes and stderr)."""
    cmd = [sys.executable, "-m", "hpcgan.cli", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_shard_set(out: Path, images: np.ndarray, labels, class_names=("Clear", "Opacity"), split: str = "train",
                    shard_size: int = 8) -> Path:
    """A folder in the shard format (manifest.json + <split>/shard-NNNNN.h5) holding ``images`` uint8 [N, 1, R, R]."""
    return write_splits(out, {split: (images, labels)}, class_names, shard_size)


def write_splits(out: Path, splits: dict, class_names=("Clear", "Opacity"), shard_size: int = 8) -> Path:
    """A shard folder with several splits: ``{split: (images uint8 [N, 1, R, R], labels [N])}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries, counts, res = [], {}, None
    for split, (images, labels) in splits.items():
        images = np.asarray(images, dtype=np.uint8)
        labels = np.asarray(labels, dtype=np.int64)
        res = int(images.shape[-1])
        for k, s in enumerate(range(0, len(images), shard_size)):
            rel = f"{split}/shard-{k:05d}.h5"
            n = len(images[s:s + shard_size])
            digest = write_shard(out / rel, images[s:s + shard_size], labels[s:s + shard_size],
                                 [f"{split}-{s + i}" for i in range(n)], np.zeros((n, 4)), np.zeros(n),
                                 compression="none")
            entries.append({"path": rel, "split": split, "n": n, "sha256": digest})
        counts[split] = {c: int((labels == i).sum()) for i, c in enumerate(class_names)}
    manifest = {"format_version": FORMAT_VERSION, "settings": {"resolution": res},
                "class_names": list(class_names), "counts": counts, "shards": entries, "excluded": [], "failed": []}
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    return out


def load_pngs(paths, size: int | None = None) -> np.ndarray:
    """Grayscale uint8 ``[N, 1, R, R]`` of PNG files (the Kaggle PNGs have 3 equal channels), resized to ``size``."""
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(p) as im:
            g = im.convert("L")
            if size is not None and g.size != (size, size):
                g = g.resize((size, size), Image.BILINEAR)
            out.append(np.asarray(g, dtype=np.uint8)[None])
    return np.stack(out)


class TinyFeatures(torch.nn.Module):
    """A cheap stand-in feature extractor: strided conv, ReLU, 2x2 average pool -> 32 features."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 8, stride=8)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.1)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 2).flatten(1)


@pytest.fixture(scope="session")
def metrics_tiny_net(tmp_path_factory) -> Path:
    """A TorchScript file of TinyFeatures, for --feature-net PATH (fast stand-in for Inception)."""
    path = tmp_path_factory.mktemp("featnet") / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; TorchScript files are what we load
        torch.jit.save(torch.jit.script(TinyFeatures().eval()), str(path))
    return path


@pytest.fixture(scope="session")
def metrics_real_shards(data_phantom_root, tmp_path_factory) -> Path:
    """Phantoms preprocessed to 32x32 shards: train, val and test splits."""
    out = tmp_path_factory.mktemp("metrics_real") / "out"
    run_preprocess(PreprocessConfig(str(data_phantom_root), str(out), classes=["Clear", "Opacity"], resolution=32,
                                    test_per_class=3, val_fraction=0.1, shard_size=4, annotations="keep",
                                    workers=1, progress=False))
    return out
