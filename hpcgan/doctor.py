"""``hpcgan doctor``: what this installation can do, at a glance."""

from __future__ import annotations

import os
import shutil

import torch

from hpcgan import build_info
from hpcgan.errors import NativeExtensionError


def _native_facts() -> dict:
    """The extension's state and the torch it was built against; a mismatch is reported, not raised."""
    try:
        from hpcgan.ops import _native
    except NativeExtensionError as exc:
        record = build_info.recorded() or {}
        return {
            "built_against": f"torch {record.get('torch', '?')} (CUDA {record.get('torch_cuda') or 'none'})",
            "native_extension": f"MISMATCH ({exc})",
            "native_backends": "none",
        }
    built = _native.built_against()
    return {
        "built_against": f"torch {built['torch']} (CUDA {built.get('torch_cuda') or 'none'})"
        if built
        else "unknown (built before hpcgan recorded it: rebuild)",
        "native_extension": "loaded" if _native.available() else f"MISSING ({_native.import_error()})",
        "native_backends": ", ".join(["CPU"] + ([f"CUDA (archs {_native.cuda_archs()})"] if _native.cuda_built() else []))
        if _native.available()
        else "none",
    }


def report() -> dict:
    """Collect facts about torch, the native extension and the cluster tools."""
    info = {
        "hpcgan": __import__("hpcgan").__version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda or "none (CPU build)",
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "threads": torch.get_num_threads(),
    }
    info.update(_native_facts())
    for tool in ("mpirun", "srun", "sbatch", "nvcc"):
        info[tool] = shutil.which(tool) or "not found"
    info["data_root"] = os.environ.get("HPCGAN_CXR_ROOT", "(default ../shared/data/cxr)")
    return info


def format_report(info: dict) -> str:
    width = max(len(k) for k in info)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in info.items())
