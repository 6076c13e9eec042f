"""Scaling of preprocessing (MPI ranks) and of the StyleGAN2-ADA step (DDP ranks), with the ring all-reduce model.

A thin wrapper over ``hpcgan bench scaling`` (hpcgan.bench) with this
machine's defaults: 1 and 2 ranks (a 2-core machine), one thread per rank, both
workloads, strong and weak, 3 repeats, the real Kaggle X-rays (``$HPCGAN_CXR_ROOT/kaggle224``,
default ``../shared/data/cxr``; phantoms when absent) for preprocessing and the
cpu-smoke networks at 32 px for the GAN step. Prints the markdown table, writes
``benchmarks/results/scaling-cpu-2core.json`` and ``.png``, then prints the model's
prediction for the paper-256 preset on 1-64 nodes of 4 A100s.

    python benchmarks/scaling.py                        # the committed results
    python benchmarks/scaling.py --ranks 1,2,4 --what gan-step --json /tmp/s.json --plot /tmp/s.png

Any flag of ``hpcgan bench scaling`` may be given; later flags override the defaults.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpcgan.cli import main  # noqa: E402


def _source() -> str:
    root = Path(os.environ.get("HPCGAN_CXR_ROOT", REPO.parent / "shared" / "data" / "cxr")) / "kaggle224"
    return str(root) if root.is_dir() else "phantom"


def run(argv: list[str]) -> int:
    src = _source()
    results = REPO / "benchmarks" / "results"
    defaults = ["bench", "scaling", "--what", "both", "--ranks", "1,2", "--modes", "both", "--repeats", "3",
                "--threads", "1", "--preset", str(REPO / "configs" / "gan" / "cpu-smoke.yaml"), "--resolution", "32",
                "--batch", "8", "--steps", "16", "--warmup", "2", "--source", src, "--images", "128",
                "--preprocess-resolution", "64", "--json", str(results / "scaling-cpu-2core.json"),
                "--plot", str(results / "scaling-cpu-2core.png")]
    if src != "phantom":
        defaults += ["--classes", "COVID,Normal"]
    rc = main(defaults + argv)
    if rc:
        return rc
    print()
    return main(["bench", "scaling", "--model-only", "--preset", str(REPO / "configs" / "gan" / "paper-256.yaml")])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
