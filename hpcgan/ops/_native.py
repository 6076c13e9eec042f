"""Loading the native extension ``hpcgan._C`` and choosing an implementation.

Every op takes ``impl="auto"|"native"|"ref"``:

- ``"native"``: the compiled kernel; an error if the extension is missing or was
  built without the tensor's device backend.
- ``"ref"``: the plain-PyTorch reference (the test oracle).
- ``"auto"``: the native kernel. When the extension is missing this is an error
  that says how to build it, unless the environment variable
  ``HPCGAN_ALLOW_REF=1`` allows the (slower) reference; then a warning says so
  once. There is never a silent fallback.
"""

from __future__ import annotations

import os
import warnings

import torch

from hpcgan import build_info
from hpcgan.errors import NativeExtensionError

IMPLS = ("auto", "native", "ref")

_BUILD_HINT = (
    "Build it from the project root with `bash scripts/install.sh` or `pip install -e .` "
    "(it compiles against the installed torch; `pip install --no-build-isolation -e .` too; "
    "add HPCGAN_CUDA=1 to insist on the CUDA kernels). To run on the slow pure-PyTorch reference instead, "
    "set HPCGAN_ALLOW_REF=1."
)

# an extension compiled against another torch stops here, before it is imported
_BUILD = build_info.check()

try:  # the extension registers torch.ops.hpcgan.* when imported
    from hpcgan import _C  # type: ignore[attr-defined]

    _IMPORT_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - depends on the build
    _C = None
    _IMPORT_ERROR = exc

if _C is not None and hasattr(_C, "built_torch"):
    build_info.check_module(_C, _BUILD)
elif _C is not None:  # built before the extension recorded its torch
    warnings.warn(f"hpcgan._C does not record the torch it was compiled against. {build_info.REBUILD_HINT}", stacklevel=2)

_warned_ref = False


def available() -> bool:
    """True when hpcgan._C was imported."""
    return _C is not None


def cuda_built() -> bool:
    """True when hpcgan._C holds CUDA kernels."""
    return _C is not None and bool(_C.cuda_built())


def built_against() -> dict:
    """The torch and CUDA versions hpcgan._C was compiled against ({} when unknown)."""
    if _C is not None and hasattr(_C, "built_torch"):
        return {"torch": _C.built_torch(), "torch_cuda": _C.built_torch_cuda() or None}
    return dict(_BUILD) if _BUILD else {}


def cuda_archs() -> str:
    """The CUDA architectures hpcgan._C was compiled for ("" without CUDA)."""
    return _C.cuda_archs() if _C is not None else ""


def import_error() -> Exception | None:
    """Why hpcgan._C did not import, or None."""
    return _IMPORT_ERROR


def check_impl(impl: str) -> str:
    """Validate an ``impl`` setting ("auto", "native" or "ref") and return it."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return impl


def use_native(impl: str, *tensors: torch.Tensor) -> bool:
    """Return True to run the native kernel, False for the reference.

    Raises ValueError for an unknown ``impl`` and NativeExtensionError when the
    native kernel is required but missing.
    """
    global _warned_ref
    check_impl(impl)
    if impl == "ref":
        return False
    if _C is None:
        if impl == "auto" and os.environ.get("HPCGAN_ALLOW_REF", "") == "1":
            if not _warned_ref:
                warnings.warn(
                    "hpcgan._C is not built; HPCGAN_ALLOW_REF=1, so the slow "
                    f"pure-PyTorch reference ops are used ({_IMPORT_ERROR})",
                    stacklevel=3,
                )
                _warned_ref = True
            return False
        raise NativeExtensionError(
            f"the native extension hpcgan._C could not be imported ({_IMPORT_ERROR}). {_BUILD_HINT}"
        )
    for t in tensors:
        if t is not None and t.device.type == "cuda" and not cuda_built():
            raise NativeExtensionError(
                "a CUDA tensor was passed, but hpcgan._C was built without CUDA kernels. "
                "Rebuild on a machine with the CUDA toolkit: "
                "HPCGAN_CUDA=1 pip install --no-build-isolation -e ."
            )
        if t is not None and t.device.type not in ("cpu", "cuda", "meta"):
            raise ValueError(f"hpcgan native ops run on CPU or CUDA tensors, got device {t.device}")
    return True
