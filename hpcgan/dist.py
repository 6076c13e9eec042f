"""Rank discovery for every stage: rank, local rank and world size from the launcher.

Low level and dependency free: it reads the environment that torchrun, SLURM's
``srun``, Open MPI's ``mpirun`` or an MPICH/Intel-MPI/PMIx launcher sets. The
first launcher whose variables are present wins, in this order: torchrun
(``RANK``/``WORLD_SIZE``), Open MPI (``OMPI_COMM_WORLD_*``), PMIx/PMI
(``PMIX_RANK``, ``PMI_RANK``/``PMI_SIZE``), SLURM job steps (``SLURM_PROCID``
with ``SLURM_STEP_NUM_TASKS``). Without any of them the process is rank 0 of 1.

SLURM's batch script itself (outside ``srun``) sets ``SLURM_PROCID=0`` and
``SLURM_NTASKS``; it is deliberately treated as a single process, because only
``srun`` starts the other tasks.
"""

from __future__ import annotations

import os

_MPI_MARKERS = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK")


def _int_env(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                continue
    return None


def launcher() -> str:
    """Which launcher started this process: torchrun, mpi, slurm or none."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return "torchrun"
    if any(m in env for m in _MPI_MARKERS):
        return "mpi"
    if "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
        return "slurm"
    return "none"


def world_size() -> int:
    kind = launcher()
    if kind == "torchrun":
        return _int_env("WORLD_SIZE") or 1
    if kind == "mpi":
        return _int_env("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS") or 1
    if kind == "slurm":
        return _int_env("SLURM_STEP_NUM_TASKS") or 1
    return 1


def rank() -> int:
    kind = launcher()
    if kind == "torchrun":
        return _int_env("RANK") or 0
    if kind == "mpi":
        return _int_env("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID") or 0
    if kind == "slurm":
        return _int_env("SLURM_PROCID") or 0
    return 0


def local_rank() -> int:
    kind = launcher()
    if kind == "torchrun":
        return _int_env("LOCAL_RANK") or 0
    if kind == "mpi":
        return _int_env("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID") or 0
    if kind == "slurm":
        return _int_env("SLURM_LOCALID") or 0
    return 0


def local_world_size() -> int:
    """Processes of this job on this node (used to share the node's cores)."""
    kind = launcher()
    if kind == "torchrun":
        return _int_env("LOCAL_WORLD_SIZE") or 1
    if kind == "mpi":
        return _int_env("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS") or 1
    if kind == "slurm":
        tasks = _int_env("SLURM_STEP_NUM_TASKS") or 1
        nodes = _int_env("SLURM_STEP_NUM_NODES") or 1
        return max(1, -(-tasks // nodes))
    return 1


def is_rank0() -> bool:
    return rank() == 0


def log_prefix() -> str:
    """``[rank r/n]`` for log lines; empty for a single process."""
    n = world_size()
    return f"[rank {rank()}/{n}] " if n > 1 else ""


def mpi_comm():
    """mpi4py's COMM_WORLD when this process is one of several MPI (or srun) ranks, else None.

    Raises HpcganError when several ranks were launched but mpi4py is missing or its
    world does not match the launcher's, so a job never runs N independent copies.
    """
    if world_size() <= 1 or launcher() == "torchrun":
        return None
    from hpcgan.errors import HpcganError

    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise HpcganError(
            f"started as rank {rank()} of {world_size()} but mpi4py is not importable ({exc}); "
            "install it with `pip install mpi4py` against the cluster's MPI (module load openmpi)"
        ) from exc
    comm = MPI.COMM_WORLD
    if comm.Get_size() != world_size():
        raise HpcganError(
            f"the launcher says {world_size()} ranks but MPI's COMM_WORLD has {comm.Get_size()}; "
            "with srun use --mpi=pmix, with mpirun check that mpi4py was built against this MPI"
        )
    return comm


def _slurm_master_addr() -> str | None:
    """The first host of this SLURM job step (``scontrol show hostnames``), or None."""
    nodelist = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST")
    if not nodelist:
        return None
    import subprocess

    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             timeout=30, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return nodelist.split(",")[0] if "[" not in nodelist else None
    return out[0] if out else None


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def init_process_group(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Join torch.distributed when this process is one of several ranks; returns True if it did.

    Backend: ``nccl`` when CUDA is available, else ``gloo`` (override with ``backend``).
    The rendezvous address is ``MASTER_ADDR``/``MASTER_PORT`` from the environment
    (torchrun sets them; so may a batch script); otherwise rank 0's host name and a
    free port are broadcast over mpi4py (mpirun, srun --mpi=pmix), or, under srun
    without MPI, the job's first node and a port derived from the job id.
    Idempotent; a single process (world size 1) does nothing and returns False.
    On CUDA each rank uses the GPU of its local rank.
    """
    n = world_size()
    if n <= 1:
        return False
    import datetime
    import socket

    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return True
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank() % max(1, torch.cuda.device_count()))
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not addr or not port:
        comm = mpi_comm()
        if comm is not None:
            mine = (socket.getfqdn() if local_world_size() < n else "127.0.0.1", _free_port()) if rank() == 0 else None
            mine = comm.bcast(mine, root=0)
            addr, port = addr or mine[0], port or str(mine[1])
        elif launcher() == "slurm":
            addr = addr or _slurm_master_addr()
            port = port or str(15000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000)
        if not addr or not port:
            from hpcgan.errors import HpcganError

            raise HpcganError(f"rank {rank()} of {n}: cannot find the rendezvous address; set MASTER_ADDR and "
                              "MASTER_PORT, or start with torchrun, or with mpirun/srun and mpi4py installed")
    dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}", rank=rank(), world_size=n,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return True
