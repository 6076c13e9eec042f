"""Which torch hpcgan._C was compiled against, and whether it matches the running one.

The build (setup.py) writes ``hpcgan/_C.build.json`` next to the extension and
compiles the same torch and CUDA versions into it (``_C.built_torch()``,
``_C.built_torch_cuda()``). libtorch's C++ ABI changes with every release, so an
extension built against another torch may not import, or may crash later:
``check()`` compares the record with the running torch *before* the extension is
imported and raises a NativeExtensionError that says how to rebuild.

Matching means the same torch release (``2.14.1+cu130`` and ``2.14.1`` are the same
release) and, when the extension holds CUDA kernels, the same CUDA version.
"""

from __future__ import annotations

import json
import os

from hpcgan.errors import NativeExtensionError

RECORD_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_C.build.json")

REBUILD_HINT = (
    "Rebuild the extension against this torch: in the hpcgan source tree run `pip install -e .` "
    "(or `pip install --no-build-isolation -e .`, or `bash scripts/install.sh`), "
    "or install the torch it was built against."
)


def recorded(path: str = RECORD_PATH) -> dict | None:
    """The build record ({"torch", "torch_cuda", "cuda_kernels", ...}), or None when there is none."""
    try:
        with open(path) as f:
            info = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise NativeExtensionError(f"{path} is unreadable ({exc}). {REBUILD_HINT}") from exc
    if not isinstance(info, dict) or not isinstance(info.get("torch"), str):
        raise NativeExtensionError(f"{path} does not name the torch hpcgan._C was built against. {REBUILD_HINT}")
    return info


def release(version: str) -> str:
    """The release part of a torch version ("2.14.1+cu130" -> "2.14.1")."""
    return version.split("+", 1)[0]


def mismatch(info: dict, torch_version: str, torch_cuda: str | None) -> str | None:
    """Why an extension built as ``info`` cannot run with this torch, or None when it can."""
    built = f"torch {info['torch']} (CUDA {info.get('torch_cuda') or 'none'})"
    running = f"torch {torch_version} (CUDA {torch_cuda or 'none'})"
    if release(info["torch"]) != release(torch_version):
        return f"hpcgan._C was compiled against {built}, but this Python runs {running}"
    if info.get("cuda_kernels") and (info.get("torch_cuda") or None) != (torch_cuda or None):
        return f"hpcgan._C holds CUDA kernels compiled against {built}, but this Python runs {running}"
    return None


def check() -> dict | None:
    """Raise NativeExtensionError when the recorded build does not match the running torch."""
    import torch

    info = recorded()
    if info is None:
        return None
    why = mismatch(info, torch.__version__, torch.version.cuda)
    if why:
        raise NativeExtensionError(f"{why} ({os.path.dirname(torch.__file__)}). {REBUILD_HINT}")
    return info


def check_module(module, info: dict | None) -> None:
    """The versions compiled into the extension agree with its record (a stale record or a copied .so)."""
    import torch

    compiled = {"torch": module.built_torch(), "torch_cuda": module.built_torch_cuda() or None,
                "cuda_kernels": bool(module.cuda_built())}
    if info is not None and (compiled["torch"], compiled["torch_cuda"]) != (info["torch"], info.get("torch_cuda") or None):
        raise NativeExtensionError(
            f"hpcgan._C says it was compiled against torch {compiled['torch']} (CUDA {compiled['torch_cuda'] or 'none'}), "
            f"but {RECORD_PATH} says torch {info['torch']} (CUDA {info.get('torch_cuda') or 'none'}): the two come from "
            f"different builds. {REBUILD_HINT}"
        )
    why = mismatch(compiled, torch.__version__, torch.version.cuda)
    if why:
        raise NativeExtensionError(f"{why}. {REBUILD_HINT}")
