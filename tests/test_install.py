"""Install tests (marker ``install``): `pip install -e .`, `pip wheel .`, a torch mismatch.

Each case installs a clean copy of the tracked tree into a throwaway virtual
environment, as a user would type it, with the CPU build (``HPCGAN_CUDA=0``) and
``HPCGAN_QUICK_BUILD=1`` (``-O0 -g0``: the same sources, the same torch, a build
about three times faster; the suite's own build is optimised). The cases run
concurrently, one compile job each, and may use pip's cache.

- (a) a fresh venv that holds only pip (pip 23.2, Python 3.11's bundled pip):
  nothing else is installed first; `pip install -e .[test]`, then pytest in it.
- (b) an environment where the pinned torch is installed: `pip install -e .`
  (isolated build), with pip 23.2 + `wheel`, and with pip 25.3 without `wheel`.
- (c) the same with `--no-build-isolation` (pip 23.2 + `wheel`: the combination
  that fell back to `setup.py develop`; pip 25.3 without `wheel`).
- `pip wheel .`, the wheel installed into another venv after the tree is gone.
- torch 2.13.0 (the CPU build on this machine's disk) under an extension built
  against the suite's torch: a clear error, and `hpcgan doctor` shows both.

"torch already installed" without copying 5.5 GB per case: the venv gets a .pth
file that puts the suite's site-packages (its torch, and the rest) on sys.path.
For pip that is the same case: pip decides what is installed from the
distributions on sys.path (importlib.metadata), so it reports "Requirement
already satisfied: torch==2.14.1", and the build backend's probe of the target
interpreter finds torch where that interpreter imports it. What differs is only
where the files lie; pip never removes them ("outside environment"), and the
tests check that no torch appears in the venv's own site-packages.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.install

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"
TORCH_SITE = os.path.dirname(os.path.dirname(torch.__file__))
NEW_PIP = "25.3"
STEP_TIMEOUT_S = 3000  # per step; about 3 min each on an idle 2-core machine
OLD_TORCH_WHEEL = "/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
# an op and its reference, run from outside the tree (the installed package, not the cwd)
OP_CHECK = (
    "import hpcgan, torch, json; from hpcgan.ops.bias_act import bias_act, bias_act_ref; "
    "from hpcgan.ops import _native; x = torch.randn(3, 4); b = torch.randn(4); "
    "ok = torch.allclose(bias_act(x, b, act='lrelu', impl='native'), bias_act_ref(x, b, act='lrelu')); "
    "print(json.dumps({'file': hpcgan.__file__, 'torch': torch.__version__, 'torch_file': torch.__file__, "
    "'built': _native.built_against(), 'ok': ok}))"
)


class Case:
    """One install scenario: a tree copy, a venv, a log, step timings."""

    def __init__(self, root: Path, name: str):
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.tree = self.dir / "hpcgan-src"
        self.venv = self.dir / "venv"
        self.log = self.dir / "log.txt"
        self.times: dict[str, float] = {}
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        self.env.update(HPCGAN_CUDA="0", HPCGAN_QUICK_BUILD="1", MAX_JOBS="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                        PIP_NO_INPUT="1", CI=os.environ.get("CI", ""))

    def run(self, step: str, argv: list, cwd: Path | None = None, check: bool = True, env: dict | None = None):
        t0 = time.perf_counter()
        # a session of its own: a timeout ends pip's build hooks and compilers too
        proc = subprocess.Popen([str(a) for a in argv], cwd=cwd or self.dir, env=env or self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError(f"{self.name}: {step} did not finish within {STEP_TIMEOUT_S} s (log: {self.log})") from None
        out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        self.times[step] = self.times.get(step, 0.0) + time.perf_counter() - t0
        with open(self.log, "a") as f:
            f.write(f"\n=== {step}: {' '.join(map(str, argv))} (rc {out.returncode})\n{out.stdout}{out.stderr}")
        if check and out.returncode != 0:
            raise AssertionError(f"{self.name}: {step} failed (rc {out.returncode}):\n{(out.stdout + out.stderr)[-4000:]}")
        return out

    @property
    def py(self) -> Path:
        return self.venv / "bin" / "python"

    def copy_tree(self) -> None:
        """The tracked files of the checkout (no build outputs, no .so, no venv)."""
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        for rel in filter(None, listed.decode().split("\0")):
            src = REPO / rel
            if src.is_file():
                (self.tree / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, self.tree / rel)

    def make_venv(self, pip: str | None = None, wheel: bool = False, torch_site: bool = False, only_pip: bool = False):
        self.run("venv", [sys.executable, "-m", "venv", self.venv])
        if only_pip:  # Python 3.11's venv also seeds setuptools; 3.12's holds only pip
            self.run("venv", [self.py, "-m", "pip", "uninstall", "-q", "-y", "setuptools"])
        if pip:
            self.run("venv", [self.py, "-m", "pip", "install", "-q", f"pip=={pip}"])
        if wheel:
            self.run("venv", [self.py, "-m", "pip", "install", "-q", "wheel"])
        if torch_site:
            (Path(self.site()) / "_suite_site_packages.pth").write_text(TORCH_SITE + "\n")

    def site(self) -> str:
        return self.run("venv", [self.py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()

    def facts(self) -> dict:
        """pip's and wheel's versions in the venv."""
        out = self.run("facts", [self.py, "-c", "import importlib.util as u, pip; print(pip.__version__, bool(u.find_spec('wheel')))"])
        pip_version, wheel = out.stdout.split()
        return {"pip": pip_version, "wheel": wheel == "True"}

    def op_check(self) -> dict:
        out = self.run("check", [self.py, "-c", OP_CHECK], cwd=self.dir)
        return json.loads(out.stdout.strip().splitlines()[-1])


def _editable(root: Path, name: str, pip: str | None, wheel: bool, isolated: bool) -> dict:
    c = Case(root, name)
    c.copy_tree()
    c.make_venv(pip=pip, wheel=wheel, torch_site=True)
    facts = c.facts()
    argv = [c.py, "-m", "pip", "install", "-v", "-e", "."] + ([] if isolated else ["--no-build-isolation"])
    out = c.run("install", argv, cwd=c.tree)
    res = {"case": name, **facts, "install_s": c.times["install"], "log": out.stdout + out.stderr, "tree": str(c.tree),
           "own_torch": (Path(c.site()) / "torch").exists(), "check": c.op_check(),
           "doctor": c.run("doctor", [c.venv / "bin" / "hpcgan", "doctor"]).stdout}
    return res


def _fresh(root: Path) -> dict:
    """(a): a venv with only pip; the install brings everything, then the venv runs a test file."""
    c = Case(root, "a-fresh")
    c.copy_tree()
    c.make_venv(only_pip=True)
    facts = c.facts()
    out = c.run("install", [c.py, "-m", "pip", "install", "-v", "-e", ".[test]"], cwd=c.tree)
    res = {"case": "a-fresh", **facts, "install_s": c.times["install"], "log": out.stdout + out.stderr,
           "tree": str(c.tree), "own_torch": (Path(c.site()) / "torch").exists(), "check": c.op_check()}
    t = c.run("pytest", [c.py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_build.py"], cwd=c.tree, check=False)
    res.update(pytest_rc=t.returncode, pytest_out=t.stdout[-3000:] + t.stderr[-2000:], pytest_s=c.times["pytest"])
    return res


def _wheel(root: Path) -> dict:
    """`pip wheel .` in one venv; the wheel installed into another after the tree is deleted."""
    c = Case(root, "wheel")
    c.copy_tree()
    c.make_venv(pip=NEW_PIP, wheel=True, torch_site=True)
    facts = c.facts()
    c.run("build", [c.py, "-m", "pip", "wheel", "-v", "--no-deps", "-w", c.dir / "dist", "."], cwd=c.tree)
    shutil.rmtree(c.tree)
    wheels = sorted((c.dir / "dist").glob("hpcgan-*.whl"))
    c2 = Case(root, "wheel-install")
    c2.make_venv(torch_site=True)
    c2.run("install", [c2.py, "-m", "pip", "install", wheels[0]])
    import zipfile

    with zipfile.ZipFile(wheels[0]) as z:
        names = z.namelist()
        meta = z.read("hpcgan-0.1.0.dist-info/METADATA").decode()
    return {"case": "wheel", **facts, "build_s": c.times["build"], "install_s": c2.times["install"], "wheel_file": wheels[0].name,
            "names": names, "metadata": meta, "check": c2.op_check(),
            "doctor": c2.run("doctor", [c2.venv / "bin" / "hpcgan", "doctor"]).stdout}


def _mismatch(root: Path) -> dict:
    """The suite's extension (built against its torch) under torch 2.13.0."""
    c = Case(root, "mismatch")
    c.make_venv()
    c.run("torch-2.13", [c.py, "-m", "pip", "install", "-q", "--no-deps", OLD_TORCH_WHEEL])
    (Path(c.site()) / "_suite_site_packages.pth").write_text(TORCH_SITE + "\n")  # numpy, yaml, ... after its own torch
    env = dict(c.env, PYTHONPATH=str(REPO))
    imp = c.run("import", [c.py, "-c", "import torch; print(torch.__version__); import hpcgan.ops"], check=False, env=env)
    doc = c.run("doctor", [c.py, "-m", "hpcgan.cli", "doctor"], check=False, env=env)
    return {"case": "mismatch", "import": imp, "doctor": doc}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """All scenarios at once (they wait on different things: compiles, unpacking torch, pip)."""
    if not Path(OLD_TORCH_WHEEL).exists() and not IN_CI:
        pytest.skip(f"{OLD_TORCH_WHEEL} is not on this machine")
    root = tmp_path_factory.mktemp("install")
    jobs = {
        "a": (_fresh, root),
        "b-pip23-wheel": (_editable, root, "b-pip23-wheel", None, True, True),
        "b-pip25": (_editable, root, "b-pip25", NEW_PIP, False, True),
        "c-pip23-wheel": (_editable, root, "c-pip23-wheel", None, True, False),
        "c-pip25": (_editable, root, "c-pip25", NEW_PIP, False, False),
        "wheel": (_wheel, root),
        "mismatch": (_mismatch, root),
    }
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {k: pool.submit(fn, *args) for k, (fn, *args) in jobs.items()}
        done = {}
        for k, f in futures.items():
            try:
                done[k] = f.result()
            except Exception as exc:  # noqa: BLE001 - reported by the test of that case
                done[k] = exc
    summary = {k: {x: v[x] for x in ("pip", "wheel", "install_s", "build_s", "pytest_s") if x in v}
               for k, v in done.items() if isinstance(v, dict)}
    print(f"\ninstall cases ({time.perf_counter() - t0:.0f} s in all, load {os.getloadavg()[0]:.1f}):\n"
          + json.dumps(summary, indent=1))
    return done


def _get(cases, key) -> dict:
    res = cases[key]
    if isinstance(res, Exception):
        raise res
    return res


def _assert_built_against_runtime(res: dict) -> None:
    """The extension runs, from the case's install, against the torch it was compiled against."""
    check = res["check"]
    assert check["ok"], check
    assert check["built"]["torch"] == check["torch"], check


def test_a_fresh_venv_installs_everything_and_runs_the_tests(cases):
    res = _get(cases, "a")
    assert res["pip"].startswith("23.2") and not res["wheel"]
    # nothing was there: the build environment got the pinned torch, the venv its own copy
    assert "no torch in the target environment: building against torch 2.14.1" in res["log"]
    assert res["own_torch"], "pip did not install torch into the fresh venv"
    _assert_built_against_runtime(res)
    assert res["check"]["file"].startswith(res["tree"]), res["check"]  # the editable tree
    assert res["check"]["torch_file"].startswith(str(Path(res["tree"]).parent / "venv")), res["check"]
    assert res["pytest_rc"] == 0, res["pytest_out"]  # pip install -e .[test] then pytest
    assert " passed" in res["pytest_out"] and "failed" not in res["pytest_out"]


@pytest.mark.parametrize("key", ["b-pip23-wheel", "b-pip25", "c-pip23-wheel", "c-pip25"])
def test_torch_installed_builds_against_it_without_another_torch(cases, key):
    res = _get(cases, key)
    assert res["pip"].startswith("23.2" if "pip23" in key else NEW_PIP)
    assert res["wheel"] == ("wheel" in key)
    assert f"building against the target environment's torch {torch.__version__} ({os.path.dirname(torch.__file__)})" in res["log"]
    # no second torch: none collected, downloaded or unpacked, none in the venv
    assert not re.search(r"(Collecting|Downloading|Processing|Using cached) \S*torch[-=]", res["log"]), res["log"][-3000:]
    assert "Requirement already satisfied: torch==" in res["log"]
    assert not res["own_torch"]
    if key.startswith("c-"):
        assert "Installing build dependencies" not in res["log"]
    assert "setup.py develop" not in res["log"]
    _assert_built_against_runtime(res)
    assert res["check"]["file"].startswith(res["tree"]), res["check"]
    assert f"built_against     torch {torch.__version__}" in res["doctor"]
    assert "native_extension  loaded" in res["doctor"]


def test_pip_wheel_installs_and_runs_without_the_source_tree(cases):
    res = _get(cases, "wheel")
    plat = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert re.fullmatch(rf"hpcgan-0\.1\.0-{plat}-{plat}-linux_x86_64\.whl", res["wheel_file"]), res["wheel_file"]
    assert any(re.fullmatch(r"hpcgan/_C\..*\.so", n) for n in res["names"]), res["names"]
    assert "hpcgan/_C.build.json" in res["names"] and "hpcgan/gan/networks.py" in res["names"]
    assert not any(n.startswith(("tests/", "csrc/")) for n in res["names"])
    assert f"Requires-Dist: torch=={torch.__version__.split('+')[0]}\n" in res["metadata"]
    _assert_built_against_runtime(res)
    assert "site-packages/hpcgan/" in res["check"]["file"], res["check"]
    assert "native_extension  loaded" in res["doctor"]


def test_another_torch_stops_with_a_clear_error_and_doctor_shows_both(cases):
    res = _get(cases, "mismatch")
    imp, doc = res["import"], res["doctor"]
    assert imp.stdout.startswith("2.13.0"), imp.stdout + imp.stderr
    assert imp.returncode != 0
    assert "NativeExtensionError" in imp.stderr
    assert f"hpcgan._C was compiled against torch {torch.__version__}" in imp.stderr
    assert "this Python runs torch 2.13.0" in imp.stderr and "Rebuild" in imp.stderr
    assert doc.returncode == 1, doc.stdout + doc.stderr
    assert "Traceback" not in doc.stderr
    assert re.search(r"^torch\s+2\.13\.0", doc.stdout, re.M), doc.stdout
    assert f"built_against     torch {torch.__version__}" in doc.stdout
    assert "native_extension  MISMATCH" in doc.stdout
