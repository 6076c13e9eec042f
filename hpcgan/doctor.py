"""``hpcgan doctor``: what this installation can do, at a glance."""

from __future__ import annotations

import os
import shutil

import torch

from hpcgan.ops import _native


def report() -> dict:
    """Collect facts about torch, the native extension and the cluster tools."""
    info = {
        "hpcgan": __import__("hpcgan").__version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda or "none (CPU build)",
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "threads": torch.get_num_threads(),
        "native_extension": "loaded" if _native.available() else f"MISSING ({_native.import_error()})",
        "native_backends": ", ".join(
            ["CPU"] + ([f"CUDA (archs {_native.cuda_archs()})"] if _native.cuda_built() else [])
        )
        if _native.available()
        else "none",
    }
    for tool in ("mpirun", "srun", "sbatch", "nvcc"):
        info[tool] = shutil.which(tool) or "not found"
    info["data_root"] = os.environ.get("HPCGAN_CXR_ROOT", "(default ../shared/data/cxr)")
    return info


def format_report(info: dict) -> str:
    width = max(len(k) for k in info)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in info.items())
