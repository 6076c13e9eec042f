"""Shared fixtures (data stage fixtures carry a ``data_`` prefix)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _require(what: str, ok: bool, hint: str) -> None:
    """Skip when ``what`` is missing, except under CI=true, where missing is a failure."""
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required under CI=true but missing: {hint}")
    pytest.skip(f"{what} missing: {hint}")


# --- devices: op tests run on the CPU and on CUDA; CUDA cases carry the `cuda` marker.
# `pytest -m cuda` runs exactly the CUDA cases (benchmarks/gpu_check.sh does).

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)]


def require_gpu() -> None:
    """Skip a CUDA case with the reason "no GPU" when torch sees none (the only skip
    allowed under CI=true); with HPCGAN_REQUIRE_GPU=1 a missing GPU is a failure."""
    import torch

    if torch.cuda.is_available():
        return
    if os.environ.get("HPCGAN_REQUIRE_GPU", "") == "1":
        pytest.fail(
            "HPCGAN_REQUIRE_GPU=1 but torch.cuda.is_available() is False: run on a GPU node "
            "(check nvidia-smi and that torch is a CUDA build), or unset HPCGAN_REQUIRE_GPU"
        )
    pytest.skip("no GPU")


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on a CUDA GPU (skipped with reason 'no GPU' without one)")


def pytest_runtest_setup(item):
    if item.get_closest_marker("cuda") is not None:
        require_gpu()


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """"cpu" and "cuda" (the CUDA case skips without a GPU, see require_gpu)."""
    return request.param


@pytest.fixture(scope="session")
def data_cxr_root() -> Path:
    root = Path(os.environ.get("HPCGAN_CXR_ROOT", REPO.parent / "shared" / "data" / "cxr"))
    _require("real X-rays", (root / "hannover" / "png").is_dir() and (root / "kaggle224").is_dir(),
             f"set HPCGAN_CXR_ROOT (looked in {root})")
    return root


@pytest.fixture(scope="session")
def data_mpirun() -> list[str]:
    exe = shutil.which("mpirun")
    ok = exe is not None
    if ok:
        try:
            import mpi4py  # noqa: F401
        except ImportError:
            ok = False
    _require("mpirun + mpi4py", ok, "apt-get install openmpi-bin libopenmpi-dev; pip install mpi4py")
    return [exe, "--allow-run-as-root", "--oversubscribe"]


@pytest.fixture(scope="session")
def data_phantom_root(tmp_path_factory) -> Path:
    from hpcgan.data.phantom import generate_phantoms

    root = tmp_path_factory.mktemp("phantoms")
    generate_phantoms(root, 12, seed=3, annotation_fraction=0.25)
    return root
