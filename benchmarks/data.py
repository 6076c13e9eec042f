"""Data-stage benchmark on the real X-rays: preprocessing and training-read throughput.

    python benchmarks/data.py [--per-class 400] [--resolution 256] [--json out.json]

Preprocessing (images/s over every input image, timed inside the stage, from the
listing to the manifest): 1 worker, 2 workers, and ``mpirun -np 2`` (one worker per
rank). Reading (images/s, batch 32, shuffled, one epoch after a warm-up epoch so
both sides read from the page cache): the train split from the HDF5 shards against
the same preprocessed images decoded from a folder of PNGs, DataLoader with 0 and 2
workers; the shards are read with and without the dataset's in-memory cache of decoded
images (on by default for splits up to 1 GiB). Prints a markdown table; ``--json`` also
writes the numbers.
Real data: ``$HPCGAN_CXR_ROOT/kaggle224`` (default ``<repo>/../shared/data/cxr``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpcgan.data.dataset import ShardDataset  # noqa: E402
from hpcgan.data.preprocess import PreprocessConfig, run_preprocess  # noqa: E402
from hpcgan.data.shards import read_manifest, read_split  # noqa: E402


class PngFolder(Dataset):
    """The baseline: one PNG per image, decoded on every access."""

    def __init__(self, files, labels):
        self.files, self.labels = files, labels

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        a = np.array(Image.open(self.files[i]).convert("L"), dtype=np.uint8)
        return torch.from_numpy(a)[None].float().div_(255.0), int(self.labels[i])


def _epoch_rate(ds, workers: int, epochs: int = 1) -> float:
    loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    for _ in loader:  # warm-up: page cache, worker start-up
        pass
    n = 0
    t = time.perf_counter()
    for _ in range(epochs):
        for x, _y in loader:
            n += x.shape[0]
    return n / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=400, help="real images per class (COVID, Normal)")
    ap.add_argument("--resolution", type=int, default=256, help="output side in pixels")
    ap.add_argument("--compression", default="lzf", choices=("none", "lzf", "gzip"), help="shard compression")
    ap.add_argument("--read-epochs", type=int, default=3, help="timed read epochs")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed)")
    args = ap.parse_args(argv)

    cxr = Path(os.environ.get("HPCGAN_CXR_ROOT", REPO.parent / "shared" / "data" / "cxr"))
    if not (cxr / "kaggle224").is_dir():
        sys.exit(f"real data not found in {cxr}; set HPCGAN_CXR_ROOT")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="hpcgan-bench-"))
    src = work / "src"
    for c in ("COVID", "Normal"):
        (src / c).mkdir(parents=True, exist_ok=True)
        for f in sorted((cxr / "kaggle224" / c).glob("*.png"))[: args.per_class]:
            if not (src / c / f.name).exists():
                (src / c / f.name).symlink_to(f)
    load0 = os.getloadavg()[0]
    common = dict(resolution=args.resolution, test_per_class=50, shard_size=256, compression=args.compression,
                  progress=False)
    rows = []
    results: dict = {"per_class": args.per_class, "resolution": args.resolution, "compression": args.compression,
                     "cores": os.cpu_count()}

    def prep_rate(out: Path) -> float:
        s = read_manifest(out)["summary"]
        return s["inputs"] / s["seconds"]

    for workers in (1, 2):
        out = work / f"out-w{workers}"
        shutil.rmtree(out, ignore_errors=True)
        run_preprocess(PreprocessConfig(str(src), str(out), workers=workers, **common))
        results[f"preprocess_w{workers}"] = prep_rate(out)
    mpirun = shutil.which("mpirun")
    if mpirun:
        out = work / "out-np2"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "2", sys.executable, "-m", "hpcgan.cli",
               "preprocess", str(src), str(out), "--resolution", str(args.resolution), "--test-per-class", "50",
               "--shard-size", "256", "--compression", args.compression, "--workers", "1", "--no-progress"]
        subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
        results["preprocess_mpi_np2"] = prep_rate(out)
    m = read_manifest(work / "out-w1")
    results["inputs"] = m["summary"]["inputs"]
    results["written"] = m["summary"]["written"]
    results["excluded"] = m["summary"]["excluded"]

    # reading: the train split, HDF5 against a PNG folder of the same images
    shards = work / "out-w1"
    train = read_split(shards, "train")
    png = work / "png"
    png.mkdir(exist_ok=True)
    files = []
    for img, src_name in zip(train["images"], train["source"]):
        p = png / f"{src_name}.png"
        if not p.exists():
            Image.fromarray(img[0]).save(p)
        files.append(str(p))
    h5 = ShardDataset(shards, "train", cache=False)  # every image read and decompressed from the file
    h5c = ShardDataset(shards, "train", cache=True)  # the default for splits up to 1 GiB: decoded once per process
    pngds = PngFolder(files, train["labels"])
    results["train_images"] = len(h5)
    h5raw = ShardDataset(shards, "train", raw=True, cache=False)
    torch.set_num_threads(1)  # as in DataLoader workers; small per-image ops suffer from idle OpenMP threads
    for workers in (0, 2):
        results[f"read_hdf5_w{workers}"] = _epoch_rate(h5, workers, args.read_epochs)
        results[f"read_hdf5_cached_w{workers}"] = _epoch_rate(h5c, workers, args.read_epochs)
        results[f"read_hdf5_raw_w{workers}"] = _epoch_rate(h5raw, workers, args.read_epochs)
        results[f"read_png_w{workers}"] = _epoch_rate(pngds, workers, args.read_epochs)

    w1, w2 = results["preprocess_w1"], results["preprocess_w2"]
    rows.append(("preprocess, 1 worker", w1, "1.00x"))
    rows.append(("preprocess, 2 workers", w2, f"{w2 / w1:.2f}x vs 1 worker (target >= 1.8x)"))
    if "preprocess_mpi_np2" in results:
        r = results["preprocess_mpi_np2"]
        rows.append(("preprocess, mpirun -np 2 (1 worker each)", r, f"{r / w1:.2f}x vs 1 worker"))
    for workers in (0, 2):
        h, p = results[f"read_hdf5_w{workers}"], results[f"read_png_w{workers}"]
        rows.append((f"read PNG folder, DataLoader workers={workers}", p, "1.00x"))
        rows.append((f"read HDF5 shards, no cache, DataLoader workers={workers}", h, f"{h / p:.1f}x vs PNG (target >= 10x)"))
        c = results[f"read_hdf5_cached_w{workers}"]
        rows.append((f"read HDF5 shards, cache (default), workers={workers}", c, f"{c / p:.1f}x vs PNG (target >= 10x)"))
        r = results[f"read_hdf5_raw_w{workers}"]
        rows.append((f"read HDF5 shards, uint8 (raw=True), no cache, workers={workers}", r, f"{r / p:.1f}x vs PNG"))
    results["loadavg_start"], results["loadavg_end"] = load0, os.getloadavg()[0]
    print(f"Data stage on {results['inputs']} real kaggle224 images ({args.per_class}/class; "
          f"{results['written']} written, {results['excluded']} excluded), resolution {args.resolution}, "
          f"{args.compression}; reading {results['train_images']} train images, batch 32, shuffled; "
          f"{os.cpu_count()} cores, load average {load0:.1f} at start, {results['loadavg_end']:.1f} at end\n")
    print("| measurement | images/s | relative |")
    print("| --- | ---: | --- |")
    for name, rate, rel in rows:
        print(f"| {name} | {rate:,.0f} | {rel} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
