"""The native extension is built, registered and reports its backends."""

import os
import shutil
import subprocess
import sys

import torch

from hpcgan.ops import _native

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def test_extension_loaded_and_ops_registered():
    assert _native.available(), f"hpcgan._C did not import: {_native.import_error()}"
    for op in ("bias_act", "bias_act_grad", "upfirdn2d", "modulate", "modulate_backward", "modconv_epilogue", "modconv_epilogue_backward"):
        assert hasattr(torch.ops.hpcgan, op), op
        schema = getattr(torch.ops.hpcgan, op).default._schema
        assert schema.name == f"hpcgan::{op}"


def test_cuda_kernels_built_where_a_toolkit_exists():
    """CI proves the CUDA kernels compile and link (no GPU is needed for that)."""
    has_nvcc = shutil.which("nvcc") is not None or os.path.exists("/usr/local/cuda/bin/nvcc")
    want = os.environ.get("HPCGAN_CUDA", "auto")
    if IN_CI and has_nvcc and torch.version.cuda is not None and want != "0":
        assert _native.cuda_built(), "CI has nvcc and a CUDA torch, but hpcgan._C has no CUDA kernels"
        assert "8.0" in _native.cuda_archs() or "9.0" in _native.cuda_archs() or _native.cuda_archs()
    if _native.cuda_built():
        # the CUDA dispatch keys are registered next to the CPU ones
        assert torch._C._dispatch_has_kernel_for_dispatch_key("hpcgan::bias_act", "CUDA")
        assert torch._C._dispatch_has_kernel_for_dispatch_key("hpcgan::upfirdn2d", "CUDA")
        assert torch._C._dispatch_has_kernel_for_dispatch_key("hpcgan::modconv_epilogue", "CUDA")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("hpcgan::bias_act", "CPU")


def test_doctor_reports_extension_and_tools():
    exe = os.path.join(os.path.dirname(sys.executable), "hpcgan")
    cmd = [exe, "doctor"] if os.path.exists(exe) else [sys.executable, "-m", "hpcgan.cli", "doctor"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "native_extension  loaded" in out.stdout
    assert torch.__version__ in out.stdout
    assert f"threads           {torch.get_num_threads()}" in out.stdout
    for tool in ("mpirun", "srun", "sbatch", "nvcc"):
        assert tool in out.stdout
    backends = next(ln for ln in out.stdout.splitlines() if ln.startswith("native_backends"))
    assert ("CUDA" in backends) == _native.cuda_built()


def test_missing_extension_is_a_clear_error_not_a_fallback():
    code = (
        "import sys; sys.modules['hpcgan._C'] = None\n"
        "import torch\n"
        "from hpcgan.ops import bias_act\n"
        "from hpcgan.errors import NativeExtensionError\n"
        "try:\n"
        "    bias_act(torch.zeros(2, 3), act='relu')\n"
        "except NativeExtensionError as e:\n"
        "    print('ERR', e)\n"
        "else:\n"
        "    print('NO ERROR')\n"
    )
    env = dict(os.environ)
    env.pop("HPCGAN_ALLOW_REF", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.startswith("ERR"), out.stdout + out.stderr
    assert "pip install --no-build-isolation -e ." in out.stdout
    assert "HPCGAN_ALLOW_REF=1" in out.stdout
    env["HPCGAN_ALLOW_REF"] = "1"
    out = subprocess.run([sys.executable, "-c", code.replace("print('NO ERROR')", "print('REF OK')")], capture_output=True, text=True, env=env, timeout=120)
    assert "REF OK" in out.stdout, out.stdout + out.stderr
    assert "reference" in out.stderr  # the warning says the slow path is used


def test_cli_user_error_has_no_traceback():
    out = subprocess.run([sys.executable, "-m", "hpcgan.cli", "no-such-verb"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "hpcgan.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "doctor" in out.stdout
