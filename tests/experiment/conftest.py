"""Fixtures of the experiment tests (prefix ``exp_``): real 32 px phantom shards and a finished small grid."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def exp_shards(tmp_path_factory):
    """32 px phantom shards (Clear, Opacity) written by the real preprocessing: train 16, val 4, test 4 per class."""
    from hpcgan.data.phantom import generate_phantoms
    from hpcgan.data.preprocess import PreprocessConfig, run_preprocess

    root = tmp_path_factory.mktemp("exp_phantoms")
    generate_phantoms(root, 24, seed=5, size=64, mask_size=64)
    out = tmp_path_factory.mktemp("exp_shards")
    run_preprocess(PreprocessConfig(str(root), str(out), classes=["Clear", "Opacity"], resolution=32,
                                    test_per_class=4, val_fraction=0.2, workers=1, progress=False))
    return out


def small_grid(data, outdir, **over) -> dict:
    """Settings of a tiny grid: small_cnn at 32 px, none + classic, 2 runs, 1 epoch."""
    d = dict(name="g", data=str(data), outdir=str(outdir), models=["small_cnn"], augs=["none", "classic"], runs=2,
             epochs=1, batch=8, lr=1e-3, image_size=32, pretrained="no", image_metrics=False, progress=False,
             device="cpu")
    d.update(over)
    return d


@pytest.fixture(scope="session")
def exp_demo_quick(tmp_path_factory) -> dict:
    """`hpcgan demo --quick` run once through the CLI with its output piped, as into a SLURM log.

    No --progress flag: the default (auto) must see the pipe and print plain lines. Shared by the
    demo test and the browser test of report.html. Returns {"out", "proc", "cmd", "env", "report"}.
    """
    import subprocess
    import sys
    from pathlib import Path

    tmp = tmp_path_factory.mktemp("exp_demo")
    out = tmp / "demo"
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp)}
    cmd = [sys.executable, "-m", "hpcgan.cli", "demo", "--quick", "--out", str(out)]
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"out": out, "proc": proc, "cmd": cmd, "env": env, "repo": repo,
            "report": out / "experiments" / "demo" / "report" / "report.md"}
