"""The real SLURM cluster of the cluster tests (prefix ``cluster_``).

``cluster_slurm`` (session) reuses the cluster that ``tests/cluster/slurm-up.sh`` left
running (found through its pointer file) when it answers with all of its ``NODES`` nodes
usable, or brings a new one up (``slurm-up.sh --nodes 2``: two compute nodes, each in a
network namespace of its own) in a state folder unique to this run, and brings it down at the
end of the session. Every cluster test runs on this one cluster: single-node jobs on either
node, the multi-node tests (marker ``multinode``) across both. As a non-root user without a
running cluster the tests skip; under CI=true they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    from tests.conftest import REPO, _require
except ImportError:  # pytest imported tests/conftest.py as the top-level module `conftest`
    from conftest import REPO, _require

HERE = Path(__file__).resolve().parent
POINTER = Path(os.environ.get("HPCGAN_SLURM_POINTER", "/run/hpcgan-slurm/current"))
NODES = 2  # compute nodes of the test cluster (hpcgan-node1, hpcgan-node2)


def _answers(conf: Path) -> bool:
    """The cluster of ``conf`` answers and has ``NODES`` nodes, each usable."""
    if not conf.is_file() or shutil.which("sinfo") is None:
        return False
    env = dict(os.environ, SLURM_CONF=str(conf))
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    states = out.stdout.split()
    return out.returncode == 0 and len(states) == NODES and all(s in ("idle", "mixed", "allocated") for s in states)


@pytest.fixture(scope="session")
def cluster_slurm():
    """``{"state": folder, "conf": slurm.conf, "started": bool}``; SLURM_CONF is set for the session."""
    state, started = None, False
    if POINTER.is_file():
        cand = Path(POINTER.read_text().strip())
        if _answers(cand / "slurm.conf"):
            state = cand
    if state is None:
        is_root = os.geteuid() == 0
        _require("a SLURM cluster", is_root and shutil.which("apt-get") is not None,
                 "run the tests as root on Debian (tests/cluster/slurm-up.sh installs and starts one), "
                 "or start one with `sudo bash tests/cluster/slurm-up.sh`")
        proc = subprocess.run(["bash", str(HERE / "slurm-up.sh"), "--nodes", str(NODES)], capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"slurm-up.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        state, started = Path(proc.stdout.strip().splitlines()[-1]), True
    # Test sessions using the cluster hold a lease (a file named after their pid). A cluster this
    # fixture started is stopped by the last session that leaves, so a session of another clone
    # that reused it is not cut off; one started by hand (slurm-up.sh) is left running.
    leases = state / "leases"
    leases.mkdir(exist_ok=True)
    lease = leases / str(os.getpid())
    lease.touch()
    if started:
        (state / "started-by-tests").touch()
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    try:
        yield {"state": state, "conf": state / "slurm.conf", "started": started}
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        lease.unlink(missing_ok=True)
        others = [p for p in leases.iterdir() if p.name.isdigit() and Path(f"/proc/{p.name}").exists()]
        if (state / "started-by-tests").exists() and not others:
            subprocess.run(["bash", str(HERE / "slurm-down.sh"), str(state)], capture_output=True, timeout=120)


def cluster_env(**extra) -> dict:
    """Environment for commands and jobs: this repository first on PYTHONPATH and PATH, one thread."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HPCGAN=str(Path(sys.executable).parent / "hpcgan"))
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(cmd: list, cwd=None, timeout: float = 120, check: bool = True, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd or REPO, env=cluster_env(**env), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def sacct_states(job_id: str) -> dict[str, str]:
    """{job id (array tasks as ID_I): state} of a job's allocations (steps left out)."""
    out = run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State"]).stdout
    return dict(ln.split("|")[:2] for ln in out.split() if "|" in ln)


def wait_jobs(job_ids: list[str], timeout: float = 240) -> dict[str, str]:
    """Wait until none of ``job_ids`` (or their array tasks) is queued or running; their final sacct states."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        queued = run(["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)], check=False).stdout.split()
        if not queued:
            states: dict[str, str] = {}
            for j in job_ids:
                states.update(sacct_states(j))
            if states and not any(s in ("PENDING", "RUNNING", "REQUEUED") for s in states.values()):
                return states
        time.sleep(0.5)
    raise AssertionError(f"jobs {job_ids} still queued or running after {timeout}s: {sacct_states(job_ids[0])}")


@pytest.fixture(scope="session")
def cluster_shards(tmp_path_factory):
    """32 px phantom shards (Clear, Opacity), for the GAN and grid tests."""
    from hpcgan.data.phantom import generate_phantoms
    from hpcgan.data.preprocess import PreprocessConfig, run_preprocess

    root = tmp_path_factory.mktemp("cluster_phantoms")
    generate_phantoms(root, 24, seed=7, size=64)
    out = tmp_path_factory.mktemp("cluster_shards") / "shards"
    run_preprocess(PreprocessConfig(str(root), str(out), classes=["Clear", "Opacity"], resolution=32,
                                    test_per_class=4, val_fraction=0.2, workers=1, progress=False))
    return out
