"""hpcgan.dist: SLURM host lists, job-id ports, rank discovery per launcher, collectives with and without torch.distributed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import _require

from hpcgan import dist
from hpcgan.errors import HpcganError

REPO = Path(__file__).resolve().parents[1]

# variables any launcher may set; a child starts from an environment without them
LAUNCH_VARS = [v for v in os.environ if v.startswith(("OMPI_", "PMI", "PMIX", "SLURM_", "MV2_", "MPI_LOCAL"))] + [
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"]

TRICKY = {
    "node[01-03,07],gpu-a[1-2]": ["node01", "node02", "node03", "node07", "gpu-a1", "gpu-a2"],
    "n[8-11]": ["n8", "n9", "n10", "n11"],  # no padding: the width grows
    "x[098-101]": ["x098", "x099", "x100", "x101"],  # padding of the lower bound
    "r[1-2]n[08-09]": ["r1n08", "r1n09", "r2n08", "r2n09"],  # two groups: a product, last fastest
    "login,c1-[1-2],n[007]": ["login", "c1-1", "c1-2", "n007"],
    "a[1-2],a[1-2]": ["a1", "a2", "a1", "a2"],  # repeats kept, as scontrol does
    " single ": ["single"],
    "hpcgan-node[1-2]": ["hpcgan-node1", "hpcgan-node2"],  # the test cluster's (a dash before the brackets)
}


@pytest.mark.parametrize("hostlist", sorted(TRICKY))
def test_hostlist_parser(hostlist):
    assert dist.expand_hostlist(hostlist) == TRICKY[hostlist]


@pytest.mark.parametrize("bad", ["n[1-", "n1-2]", "n[a-b]", "n[3-1]", "n[[1]]"])
def test_hostlist_parser_rejects_malformed(bad):
    with pytest.raises(HpcganError, match="SLURM host list"):
        dist.expand_hostlist(bad)


def test_port_from_job_id():
    ports = {dist.port_from_job_id(j, s) for j in range(1000, 1200) for s in range(4)}
    assert len(ports) == 800, "neighbouring jobs and steps get distinct ports"
    assert all(dist.PORT_BASE <= p < dist.PORT_BASE + dist.PORT_SPAN < 32768 for p in ports)
    assert dist.port_from_job_id("123", "0") == dist.port_from_job_id(123, 0)
    assert dist.port_from_job_id(None) == dist.PORT_BASE


def _child(env: dict, code: str = "import json; from hpcgan import dist; print(json.dumps(dist.info().to_dict()))",
           path: str | None = None) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    full.update(env)
    full["PYTHONPATH"] = str(REPO)
    if path is not None:
        full["PATH"] = path
    proc = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


LAUNCHERS = {
    "none": ({}, ("none", 0, 0, 1, 1)),
    "torchrun": (dict(RANK="5", WORLD_SIZE="8", LOCAL_RANK="1", LOCAL_WORLD_SIZE="4", MASTER_ADDR="h0",
                      MASTER_PORT="29500"), ("torchrun", 5, 1, 8, 4)),
    "open-mpi": (dict(OMPI_COMM_WORLD_RANK="3", OMPI_COMM_WORLD_SIZE="6", OMPI_COMM_WORLD_LOCAL_RANK="1",
                      OMPI_COMM_WORLD_LOCAL_SIZE="3"), ("mpi", 3, 1, 6, 3)),
    "mvapich": (dict(MV2_COMM_WORLD_RANK="2", MV2_COMM_WORLD_SIZE="4", MV2_COMM_WORLD_LOCAL_RANK="0",
                     MV2_COMM_WORLD_LOCAL_SIZE="2"), ("mpi", 2, 0, 4, 2)),
    "mpich-hydra": (dict(PMI_RANK="7", PMI_SIZE="8", MPI_LOCALRANKID="3", MPI_LOCALNRANKS="4"), ("mpi", 7, 3, 8, 4)),
    # srun --mpi=pmix: PMIx rank, the step's task layout from SLURM (3 tasks on node 0, 3 on 1, 2 on 2)
    "srun-pmix": (dict(PMIX_RANK="7", SLURM_PROCID="7", SLURM_LOCALID="1", SLURM_NODEID="2", SLURM_STEP_NUM_TASKS="8",
                       SLURM_STEP_NUM_NODES="3", SLURM_STEP_TASKS_PER_NODE="3(x2),2", SLURM_NTASKS="8",
                       SLURM_JOB_ID="99"), ("mpi", 7, 1, 8, 2)),
    "srun": (dict(SLURM_PROCID="4", SLURM_LOCALID="0", SLURM_NODEID="1", SLURM_STEP_NUM_TASKS="8",
                  SLURM_STEP_NUM_NODES="2", SLURM_STEP_TASKS_PER_NODE="4(x2)", SLURM_JOB_ID="77"),
             ("slurm", 4, 0, 8, 4)),
    # the batch script itself (no srun): one process although SLURM_NTASKS says 8
    "sbatch-script": (dict(SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NTASKS="8", SLURM_JOB_ID="77"),
                      ("none", 0, 0, 1, 1)),
}


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_rank_discovery_per_launcher(name):
    env, (kind, rank, local, world, local_world) = LAUNCHERS[name]
    got = _child(env)
    assert (got["launcher"], got["rank"], got["local_rank"], got["world_size"], got["local_world_size"]) == \
        (kind, rank, local, world, local_world)
    assert got["backend"] is None and got["device"] in ("cpu",) + tuple(f"cuda:{i}" for i in range(16))
    assert got["job_id"] == env.get("SLURM_JOB_ID")


@pytest.mark.parametrize("with_scontrol", [False, True])
def test_slurm_rendezvous_from_nodelist_and_job_id(with_scontrol, tmp_path):
    env = dict(SLURM_PROCID="1", SLURM_LOCALID="1", SLURM_STEP_NUM_TASKS="4", SLURM_STEP_NUM_NODES="2",
               SLURM_STEP_NODELIST="gpu-a[07-08]", SLURM_JOB_NODELIST="gpu-a[07-09]", SLURM_JOB_ID="4242",
               SLURM_STEP_ID="1")
    if with_scontrol:
        _require("scontrol", shutil.which("scontrol") is not None, "install slurm-client (tests/cluster/slurm-up.sh does)")
    path = os.environ["PATH"] if with_scontrol else str(tmp_path)  # an empty PATH: no scontrol, the parser is used
    code = "import json; from hpcgan import dist; print(json.dumps(dist.rendezvous()))"
    addr, port = _child(env, code, path=path)
    assert addr == dist.expand_hostlist("gpu-a[07-08]")[0]
    assert int(port) == dist.port_from_job_id(4242, 1)
    # MASTER_ADDR / MASTER_PORT win
    assert _child({**env, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "23456"}, code, path=path) == ["10.0.0.1", "23456"]


def test_collectives_in_one_process(monkeypatch):
    for v in LAUNCH_VARS:
        monkeypatch.delenv(v, raising=False)
    dist.barrier()
    assert dist.broadcast_object({"a": 1}) == {"a": 1}
    assert dist.all_gather_object(3) == [3]
    assert str(dist.device()) == ("cpu" if not __import__("torch").cuda.is_available() else "cuda:0")
    assert dist.info().summary().startswith("rank 0/1 (local 0/1)")


WORKER = r"""
import json
from hpcgan import dist
r = dist.rank()
rows = {"mpi_gather": dist.all_gather_object(r * 10), "mpi_bcast": dist.broadcast_object(f"from {r}")}
dist.barrier()
assert dist.init_process_group(backend="gloo")
rows["torch_gather"] = dist.all_gather_object({"rank": r})
rows["torch_bcast"] = dist.broadcast_object([r, "x"], src=1)
dist.barrier()
rows["info"] = dist.info().to_dict()
rows["summary"] = dist.info().summary()
out = dist.all_gather_object(rows)
if r == 0:
    print("JSON " + json.dumps(out))
"""


@pytest.mark.mpi
def test_collectives_under_mpirun_with_and_without_torch_distributed(data_mpirun):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([*data_mpirun, "-np", "2", sys.executable, "-c", WORKER], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("JSON ")]
    rows = json.loads(line[5:])
    assert len(rows) == 2
    for r, row in enumerate(rows):
        assert row["mpi_gather"] == [0, 10] and row["mpi_bcast"] == "from 0"
        assert row["torch_gather"] == [{"rank": 0}, {"rank": 1}] and row["torch_bcast"] == [1, "x"]
        info = row["info"]
        assert (info["launcher"], info["rank"], info["world_size"], info["backend"]) == ("mpi", r, 2, "gloo")
        assert info["master_addr"] == "127.0.0.1" and int(info["master_port"]) > 0
        assert row["summary"].startswith(f"rank {r}/2 ") and "gloo tcp://127.0.0.1:" in row["summary"]
    assert rows[0]["info"]["master_port"] == rows[1]["info"]["master_port"], "rank 0's port was broadcast"
    # each rank logged its summary once when it joined the process group
    for r in range(2):
        assert proc.stderr.count(f"[rank {r}/2] rank {r}/2 (local {r}/2)") == 1, proc.stderr


def test_collective_timeout_setting(monkeypatch):
    monkeypatch.delenv("HPCGAN_DIST_TIMEOUT_S", raising=False)
    assert dist.collective_timeout_s() == dist.DEFAULT_TIMEOUT_S == 1800.0
    monkeypatch.setenv("HPCGAN_DIST_TIMEOUT_S", "45.5")
    assert dist.collective_timeout_s() == 45.5
    for bad in ("0", "-3", "soon"):
        monkeypatch.setenv("HPCGAN_DIST_TIMEOUT_S", bad)
        with pytest.raises(HpcganError, match="HPCGAN_DIST_TIMEOUT_S"):
            dist.collective_timeout_s()


def test_collective_errors_pass_other_errors_through(monkeypatch):
    for v in LAUNCH_VARS:
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(RuntimeError, match="gloo"):  # one process: nothing to translate
        with dist.collective_errors("a step"):
            raise RuntimeError("gloo: connection closed by peer")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError):  # not a collective failure
        with dist.collective_errors("a step"):
            raise ValueError("bad value")


_DEAD_PEER = """
import os, sys, time
import torch, torch.distributed as td
from hpcgan import dist
from hpcgan.errors import HpcganError
dist.init_process_group("gloo")
if td.get_rank() == 1:
    os.kill(os.getpid(), 9)  # dies without a word
try:
    with dist.collective_errors("a test step"):
        for _ in range(600):
            td.all_reduce(torch.ones(1000))
            time.sleep(0.05)
except HpcganError as exc:
    print(f"{time.time():.3f} {exc}", flush=True)
    sys.exit(2)
"""


def test_a_dead_rank_is_one_clear_error_and_a_prompt_exit(tmp_path):
    """2 real gloo ranks; rank 1 is SIGKILLed: rank 0 gets the HpcganError and exits with 2 at once (not after the
    60 s collective timeout it would otherwise wait in the process group's teardown)."""
    import socket
    import time

    script = tmp_path / "dead_peer.py"
    script.write_text(_DEAD_PEER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               WORLD_SIZE="2", HPCGAN_DIST_TIMEOUT_S="60", HPCGAN_DIST_QUIET="1")
    procs = [subprocess.Popen([sys.executable, str(script)], env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    out, err = procs[0].communicate(timeout=120)
    ended = time.time()
    procs[1].communicate(timeout=30)
    assert procs[1].returncode == -9
    assert procs[0].returncode == 2, err[-2000:]
    stamp, msg = out.strip().split(" ", 1)
    assert "rank 0/2 on" in msg and "a collective operation with the other ranks failed while a test step" in msg
    assert "HPCGAN_DIST_TIMEOUT_S" in msg and "Traceback" not in err
    assert ended - float(stamp) < 15, "rank 0 waited for the dead peer at exit"
