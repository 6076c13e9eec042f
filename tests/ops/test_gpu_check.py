"""benchmarks/gpu_check.sh: what can be checked without a GPU (it refuses to run)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _run(tmp_path, **env):
    full = {**os.environ, "HPCGAN_VENV": str(Path(sys.executable).parents[1]), "HPCGAN_GPU_CHECK_OUT": str(tmp_path),
            "CUDA_VISIBLE_DEVICES": "", **env}  # hide any GPU: the refusal is what is tested
    return subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=full, capture_output=True, text=True, timeout=120)


def test_script_parses():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_fails_loudly_without_a_gpu(tmp_path):
    proc = _run(tmp_path)
    assert proc.returncode == 1
    assert "no GPU" in proc.stderr and "FAILED" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written: no half-empty report that looks like a result


def test_fails_loudly_without_an_install(tmp_path):
    proc = _run(tmp_path, HPCGAN_VENV=str(tmp_path / "no-venv"))
    assert proc.returncode == 1
    assert "bash scripts/install.sh" in proc.stderr
