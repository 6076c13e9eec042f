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
