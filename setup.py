"""How hpcgan is built: its PEP 517 build backend, and ``python setup.py build_ext``.

The native extension ``hpcgan._C`` links against libtorch, whose C++ ABI changes
with every torch release and CUDA build, so it must be compiled against the torch
it will run with. pip builds in an isolated environment by default, which holds
only what the build asks for. This module is an in-tree build backend
(``pyproject.toml``: ``build-backend = "setup"``, ``backend-path = ["."]``) that
decides which torch to build against:

- **the target environment's torch, when it has one.** pip runs the build hooks
  with the interpreter it installs into (``sys.executable``), only with
  ``PYTHONPATH`` pointing at its build environment and user site-packages turned
  off. ``_probe_target()`` starts that interpreter once more without those two
  settings and reads where it finds torch (its ``sys.path``, torch's version); the
  build then imports that torch and no torch is put in the build environment.
  Without build isolation the probe sees the same environment as the build.
- **otherwise the torch pinned in requirements.txt,** which the backend asks pip to
  put in the build environment (``get_requires_for_build_*``).

Either way the wheel's metadata requires exactly that torch version
(``torch==X``), so pip installs, or keeps, the torch the extension was compiled
against, and ``hpcgan/_C.build.json`` (with the same values compiled into the
extension) records it for the check at import time (``hpcgan.build_info``).

The backend writes the wheels itself (metadata from ``pyproject.toml``) and only
uses setuptools to run torch's ``BuildExtension``: it does not need the ``wheel``
package or a recent setuptools, so ``--no-build-isolation`` works with whatever
setuptools the environment has.

Environment variables: ``HPCGAN_CUDA`` (``auto``, ``0``, ``1``: see ``_want_cuda``),
``TORCH_CUDA_ARCH_LIST`` (default "8.0;9.0"), ``CUDA_HOME``, ``MAX_JOBS``, and
``HPCGAN_QUICK_BUILD=1``: no optimisation and no debug information (``-O0 -g0``;
slow kernels, a build about three times faster; the install tests use it).

For development, ``python setup.py build_ext --inplace`` builds the extension
into the source tree against the torch of the interpreter that runs it.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 and older
    sys.exit("hpcgan needs Python 3.11 or newer (pyproject.toml: requires-python)")

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_INFO = "_C.build.json"  # next to the extension, in hpcgan/


# --- project facts: pyproject.toml and requirements.txt ---------------------

def _pyproject() -> dict:
    with open(os.path.join(HERE, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _pinned_torch() -> str:
    """The torch version requirements.txt pins (the tested one): built against when the target has none."""
    with open(os.path.join(HERE, "requirements.txt")) as f:
        for line in f:
            m = re.match(r"\s*torch\s*==\s*([^\s;#]+)", line)
            if m:
                return m.group(1)
    raise RuntimeError("requirements.txt pins no torch (a line torch==X.Y.Z)")


def _log(msg: str) -> None:
    print(f"hpcgan-build: {msg}", flush=True)


# --- which torch to build against ---------------------------------------------

_PROBE = r"""
import importlib.metadata, importlib.util, json, sys
spec = importlib.util.find_spec("torch")
try:
    version = importlib.metadata.version("torch") if spec else None
except importlib.metadata.PackageNotFoundError:
    version = None
where = list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else None
print(json.dumps({"torch": version, "where": where, "path": [p for p in sys.path if p]}))
"""


def _in_pip_isolation() -> bool:
    """True when pip's isolated build environment is active (its PYTHONPATH entry)."""
    return any("pip-build-env-" in p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep))


def _probe_target() -> dict:
    """What the target interpreter sees outside pip's build isolation: torch's version, location, sys.path."""
    env = dict(os.environ)
    if _in_pip_isolation():
        # pip replaced PYTHONPATH with its build environment and turned user site-packages off
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONNOUSERSITE", None)
    with tempfile.TemporaryDirectory() as cwd:  # not the source tree on sys.path
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _target_torch() -> dict | None:
    """The target environment's torch ({"torch", "where", "path"}), or None when it has none."""
    info = _probe_target()
    return info if info["torch"] else None


def _use_target_torch() -> str:
    """Make the torch this build compiles against importable; return its version."""
    target = _target_torch()
    if target is not None:
        # after the build environment's own entries: its setuptools and ninja come first
        for p in target["path"]:
            if p not in sys.path:
                sys.path.append(p)
        import torch

        if os.path.realpath(os.path.dirname(torch.__file__)) != os.path.realpath(target["where"]):
            raise RuntimeError(f"hpcgan-build: imported torch from {torch.__file__}, expected the target's {target['where']}")
        _log(f"building against the target environment's torch {torch.__version__} ({target['where']})")
    else:
        import torch

        _log(f"no torch in the target environment: building against torch {torch.__version__} "
             f"from the build environment ({os.path.dirname(torch.__file__)}), pinned by requirements.txt")
    return torch.__version__


def _torch_requirement() -> list[str]:
    """The torch the build environment needs: none when the target has one."""
    if _target_torch() is not None:
        return []
    try:  # without isolation and without torch: the build fails later with a clear message
        import torch  # noqa: F401
        return []
    except ImportError:
        return [f"torch=={_pinned_torch()}"]


# --- the extension -------------------------------------------------------------

def _want_cuda(torch, cpp_extension) -> bool:
    """Decide whether to compile the CUDA kernels; explain the decision."""
    flag = os.environ.get("HPCGAN_CUDA", "auto").strip().lower()
    if flag not in ("auto", "0", "1"):
        sys.exit(f"hpcgan: HPCGAN_CUDA must be 0, 1 or auto, not {flag!r}")
    if flag == "0":
        _log("HPCGAN_CUDA=0, building CPU kernels only")
        return False
    problems = []
    if torch.version.cuda is None:
        problems.append("the torch built against is a CPU-only build")
    if cpp_extension.CUDA_HOME is None:
        problems.append("no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)")
    if problems:
        if flag == "1":
            sys.exit("hpcgan: HPCGAN_CUDA=1 but " + "; ".join(problems))
        _log("building CPU kernels only: " + "; ".join(problems))
        return False
    _log(f"building CPU and CUDA kernels (CUDA_HOME={cpp_extension.CUDA_HOME})")
    return True


def _c_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def extension():
    """The Extension of hpcgan._C for the torch that is importable now, and the facts to record."""
    import torch
    from torch.utils import cpp_extension

    cpu_sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    cuda_sources = sorted(glob.glob(os.path.join("csrc", "*.cu")))
    opt = ["-O0", "-g0"] if os.environ.get("HPCGAN_QUICK_BUILD") == "1" else ["-O3"]
    # no-trapping-math lets the compiler if-convert and vectorise the activation
    # selects (lrelu, clamp); results are unchanged (no reassociation, no fast-math).
    cxx_flags = opt + ["-std=c++20", "-fopenmp", "-fno-trapping-math", "-fno-math-errno", "-Wall", "-Wno-unused-function"]
    include_dirs = [os.path.join(HERE, "csrc")]
    with_cuda = _want_cuda(torch, cpp_extension)
    info = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_kernels": with_cuda,
        "cuda_archs": os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0") if with_cuda else "",
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    define_macros = [
        ("TORCH_EXTENSION_NAME", "_C"),
        ("HPCGAN_BUILT_TORCH", _c_string(info["torch"])),
        ("HPCGAN_BUILT_TORCH_CUDA", _c_string(info["torch_cuda"] or "")),
    ]
    if with_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", info["cuda_archs"])
        # torch's headers include cusparse.h etc., which pip's CUDA wheels ship
        # under site-packages/nvidia/cu*/include rather than in the toolkit.
        site = os.path.dirname(os.path.dirname(torch.__file__))
        include_dirs += sorted(glob.glob(os.path.join(site, "nvidia", "cu*", "include")))
        define_macros.append(("HPCGAN_WITH_CUDA", "1"))
        define_macros.append(("HPCGAN_CUDA_ARCHS", _c_string(info["cuda_archs"])))
        ext = cpp_extension.CUDAExtension(
            name="hpcgan._C",
            sources=cpu_sources + cuda_sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++20", "-lineinfo"]},
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = cpp_extension.CppExtension(
            name="hpcgan._C",
            sources=cpu_sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=["-fopenmp"],
        )
    return ext, info


def build_ext_class():
    """torch's BuildExtension (ninja), writing hpcgan/_C.build.json beside the extension it built."""
    from torch.utils import cpp_extension

    class BuildExt(cpp_extension.BuildExtension):
        build_info: dict | None = None  # set by the caller

        def run(self):
            super().run()
            target = os.path.join(os.path.dirname(self.get_ext_fullpath("hpcgan._C")), BUILD_INFO)
            tmp = target + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.build_info, f, indent=1, sort_keys=True)
            os.replace(tmp, target)

    return BuildExt.with_options(use_ninja=True)


def _compile(build_lib: str | None) -> tuple[str, dict]:
    """Build hpcgan._C into build_lib (None: into the source tree); return its path and the build facts."""
    from setuptools import Distribution

    ext, info = extension()
    cmdclass = build_ext_class()
    cmdclass.build_info = info
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 1))
    cwd = os.getcwd()
    os.chdir(HERE)
    try:
        dist = Distribution({"name": "hpcgan", "ext_modules": [ext], "cmdclass": {"build_ext": cmdclass}, "script_name": "setup.py"})
        cmd = dist.get_command_obj("build_ext")
        cmd.inplace = build_lib is None
        if build_lib is not None:
            cmd.build_lib = build_lib
        cmd.build_temp = os.path.join(HERE, "build", "temp-" + ("quick" if "-O0" in ext.extra_compile_args["cxx"] else "opt"))
        dist.run_command("build_ext")
        return cmd.get_ext_fullpath("hpcgan._C"), info
    finally:
        os.chdir(cwd)


# --- metadata -------------------------------------------------------------------

def _name_version() -> tuple[str, str]:
    p = _pyproject()["project"]
    return p["name"], p["version"]


def _with_extra(req: str, extra: str) -> str:
    if ";" in req:
        spec, marker = req.split(";", 1)
        return f'{spec.strip()}; ({marker.strip()}) and extra == "{extra}"'
    return f'{req}; extra == "{extra}"'


def _metadata(torch_version: str) -> str:
    """Core metadata 2.1 from pyproject.toml, torch pinned to the version built against."""
    p = _pyproject()["project"]
    base = torch_version.split("+")[0]
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {p['name']}",
        f"Version: {p['version']}",
        f"Summary: {p.get('description', '')}",
        f"Requires-Python: {p['requires-python']}",
    ]
    if "license" in p:
        lines.append(f"License: {p['license']['text'] if isinstance(p['license'], dict) else p['license']}")
    for key, url in p.get("urls", {}).items():
        lines.append(f"Project-URL: {key}, {url}")
    for c in p.get("classifiers", []):
        lines.append(f"Classifier: {c}")
    for req in p["dependencies"]:
        if re.match(r"torch\s*([<>=!~;]|$)", req):
            req = f"torch=={base}"  # exactly the torch hpcgan._C is compiled against
        lines.append(f"Requires-Dist: {req}")
    for extra, reqs in p.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f"Requires-Dist: {_with_extra(r, extra)}" for r in reqs]
    readme = p.get("readme")
    body = ""
    if readme:
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(HERE, readme), encoding="utf-8") as f:
            body = f.read()
    return "\n".join(lines) + "\n\n" + body


def _entry_points() -> str:
    scripts = _pyproject()["project"].get("scripts", {})
    return "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())


def _wheel_tag() -> str:
    import sysconfig

    impl = f"cp{sys.version_info.major}{sys.version_info.minor}"
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"{impl}-{impl}-{plat}"


def _dist_info_files(torch_version: str) -> dict[str, bytes]:
    return {
        "METADATA": _metadata(torch_version).encode(),
        "WHEEL": (f"Wheel-Version: 1.0\nGenerator: hpcgan-build\nRoot-Is-Purelib: false\nTag: {_wheel_tag()}\n").encode(),
        "entry_points.txt": _entry_points().encode(),
        "top_level.txt": b"hpcgan\n",
    }


def _write_dist_info(directory: str, torch_version: str) -> str:
    name, version = _name_version()
    dist_info = f"{name}-{version}.dist-info"
    os.makedirs(os.path.join(directory, dist_info), exist_ok=True)
    for fname, data in _dist_info_files(torch_version).items():
        with open(os.path.join(directory, dist_info, fname), "wb") as f:
            f.write(data)
    return dist_info


# --- wheels -------------------------------------------------------------------

def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def _write_wheel(wheel_directory: str, files: dict[str, bytes], torch_version: str) -> str:
    """Write a wheel of files (arcname -> bytes) plus its .dist-info; return its file name."""
    name, version = _name_version()
    dist_info = f"{name}-{version}.dist-info"
    files = dict(files)
    for fname, data in _dist_info_files(torch_version).items():
        files[f"{dist_info}/{fname}"] = data
    record = [_record_line(a, d) for a, d in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel_name = f"{name}-{version}-{_wheel_tag()}.whl"
    tmp = os.path.join(wheel_directory, wheel_name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for arcname, data in files.items():
            z.writestr(arcname, data)
    os.replace(tmp, os.path.join(wheel_directory, wheel_name))
    return wheel_name


def _package_files() -> dict[str, bytes]:
    """hpcgan's Python sources (no caches, no build outputs)."""
    files = {}
    for path in sorted(glob.glob(os.path.join(HERE, "hpcgan", "**", "*.py"), recursive=True)):
        with open(path, "rb") as f:
            files[os.path.relpath(path, HERE).replace(os.sep, "/")] = f.read()
    return files


_EDITABLE_FINDER = '''"""Makes the hpcgan source tree at {root!r} importable (an editable install)."""
import importlib.util
import sys

_ROOT = {root!r}


class _HpcganFinder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "hpcgan":
            return None
        return importlib.util.spec_from_file_location(
            name, _ROOT + "/hpcgan/__init__.py", submodule_search_locations=[_ROOT + "/hpcgan"])


if not any(f is _HpcganFinder or getattr(f, "__name__", "") == "_HpcganFinder" for f in sys.meta_path):
    sys.meta_path.append(_HpcganFinder)
'''


# --- PEP 517 / PEP 660 hooks ------------------------------------------------------

def get_requires_for_build_wheel(config_settings=None):
    return ["setuptools>=64", "ninja"] + _torch_requirement()


def get_requires_for_build_editable(config_settings=None):
    return get_requires_for_build_wheel(config_settings)


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _write_dist_info(metadata_directory, _use_target_torch())


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    torch_version = _use_target_torch()
    with tempfile.TemporaryDirectory() as build_lib:
        so_path, _info = _compile(build_lib)
        files = _package_files()
        for path in (so_path, os.path.join(os.path.dirname(so_path), BUILD_INFO)):
            with open(path, "rb") as f:
                files["hpcgan/" + os.path.basename(path)] = f.read()
    return _write_wheel(wheel_directory, files, torch_version)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    torch_version = _use_target_torch()
    _compile(None)  # into hpcgan/ in the source tree
    files = {
        "__editable___hpcgan_finder.py": _EDITABLE_FINDER.format(root=HERE).encode(),
        "__editable___hpcgan.pth": b"import __editable___hpcgan_finder\n",
    }
    return _write_wheel(wheel_directory, files, torch_version)


def build_sdist(sdist_directory, config_settings=None):
    """The tracked sources (git ls-files when in a git checkout, else the tree minus build outputs)."""
    name, version = _name_version()
    base = f"{name}-{version}"
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=HERE, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "build", "dist", "__pycache__"}
        listed = []
        for root, dirs, fnames in os.walk(HERE):
            dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
            listed += [os.path.relpath(os.path.join(root, f), HERE) for f in fnames if not f.endswith((".so", ".pyc"))]
    pkg_info = _metadata(_pinned_torch()).encode()
    sdist_name = f"{base}.tar.gz"
    tmp = os.path.join(sdist_directory, sdist_name + ".tmp")
    with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(listed):
            tar.add(os.path.join(HERE, rel), arcname=f"{base}/{rel}", recursive=False)
        ti = tarfile.TarInfo(f"{base}/PKG-INFO")
        ti.size = len(pkg_info)
        tar.addfile(ti, io.BytesIO(pkg_info))
    os.replace(tmp, os.path.join(sdist_directory, sdist_name))
    return sdist_name


# --- python setup.py build_ext --inplace (development) -----------------------------

if __name__ == "__main__":
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("hpcgan: `python setup.py` builds against the torch of this interpreter, which has none; "
                 "use `pip install -e .` (it picks the torch to build against) or install torch first.")
    from setuptools import find_packages, setup

    _ext, _info = extension()
    _cmd = build_ext_class()
    _cmd.build_info = _info
    setup(
        packages=find_packages(include=["hpcgan", "hpcgan.*"]),
        ext_modules=[_ext],
        cmdclass={"build_ext": _cmd},
    )
