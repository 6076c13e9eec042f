"""Rank discovery for every stage: rank, local rank, world size, rendezvous, collectives.

Low level and dependency free (torch and mpi4py are imported only when needed): it
reads the environment that torchrun, SLURM's ``srun``, Open MPI's ``mpirun`` or an
MPICH/Intel-MPI/MVAPICH/PMIx launcher sets. The first launcher whose variables are
present wins, in this order:

| launcher | rank | world size | local rank |
| --- | --- | --- | --- |
| torchrun | ``RANK`` | ``WORLD_SIZE`` | ``LOCAL_RANK`` |
| Open MPI | ``OMPI_COMM_WORLD_RANK`` | ``OMPI_COMM_WORLD_SIZE`` | ``OMPI_COMM_WORLD_LOCAL_RANK`` |
| MVAPICH | ``MV2_COMM_WORLD_RANK`` | ``MV2_COMM_WORLD_SIZE`` | ``MV2_COMM_WORLD_LOCAL_RANK`` |
| PMIx / PMI (srun --mpi=pmix, MPICH hydra, Intel MPI) | ``PMIX_RANK`` / ``PMI_RANK`` | ``PMI_SIZE`` or the SLURM step | ``MPI_LOCALRANKID`` or ``SLURM_LOCALID`` |
| SLURM job step (srun) | ``SLURM_PROCID`` | ``SLURM_STEP_NUM_TASKS`` | ``SLURM_LOCALID`` |

Without any of them the process is rank 0 of 1. SLURM's batch script itself
(outside ``srun``) sets ``SLURM_PROCID=0`` and ``SLURM_NTASKS``; it is deliberately
treated as a single process, because only ``srun`` starts the other tasks.

Rendezvous (:func:`init_process_group`): ``MASTER_ADDR``/``MASTER_PORT`` when set;
under MPI rank 0's address and a free port broadcast over mpi4py; under a plain
SLURM step the first host of ``SLURM_STEP_NODELIST`` (``scontrol show hostnames``,
or :func:`expand_hostlist` when scontrol is missing) and :func:`port_from_job_id`.

Collectives that work in every setting (:class:`Comm`, and :func:`barrier`,
:func:`broadcast_object`, :func:`all_gather_object` over it): torch.distributed when it is
initialised, else mpi4py's COMM_WORLD when several MPI ranks run, else the trivial
single-process result; ``Comm(timed=True)`` also times them (the scaling benchmark).
:func:`info` returns a :class:`DistInfo` whose ``summary()`` line stages log.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
import sys
from dataclasses import asdict, dataclass

_MPI_MARKERS = ("OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK")

# torch.distributed's collective timeout (seconds) unless HPCGAN_DIST_TIMEOUT_S says otherwise: long enough for
# rank 0's FID evaluation while the others wait at a barrier, short of a day's time limit
DEFAULT_TIMEOUT_S = 1800.0
DEVICES = ("auto", "cpu", "cuda")  # the --device names select_device takes

# ports derived from a job id fall in [PORT_BASE, PORT_BASE + PORT_SPAN): below Linux's
# ephemeral range (32768-60999), so a derived port never collides with an outgoing socket
PORT_BASE, PORT_SPAN = 12000, 20000


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
        return _int_env("OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE",
                        "SLURM_STEP_NUM_TASKS") or 1
    if kind == "slurm":
        return _int_env("SLURM_STEP_NUM_TASKS") or 1
    return 1


def rank() -> int:
    kind = launcher()
    if kind == "torchrun":
        return _int_env("RANK") or 0
    if kind == "mpi":
        return _int_env("OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID") or 0
    if kind == "slurm":
        return _int_env("SLURM_PROCID") or 0
    return 0


def local_rank() -> int:
    kind = launcher()
    if kind == "torchrun":
        return _int_env("LOCAL_RANK") or 0
    if kind == "mpi":
        return _int_env("OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                        "PMI_LOCAL_RANK", "SLURM_LOCALID") or 0
    if kind == "slurm":
        return _int_env("SLURM_LOCALID") or 0
    return 0


def _slurm_tasks_on_this_node() -> int | None:
    """Tasks of this SLURM step on this node: ``SLURM_STEP_TASKS_PER_NODE`` (e.g. ``4(x2),3``) at ``SLURM_NODEID``."""
    spec = os.environ.get("SLURM_STEP_TASKS_PER_NODE") or os.environ.get("SLURM_TASKS_PER_NODE")
    if spec:
        counts: list[int] = []
        for part in spec.split(","):
            m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
            if not m:
                counts = []
                break
            counts += [int(m.group(1))] * int(m.group(2) or 1)
        node = _int_env("SLURM_NODEID") or 0
        if counts and node < len(counts):
            return counts[node]
    tasks, nodes = _int_env("SLURM_STEP_NUM_TASKS"), _int_env("SLURM_STEP_NUM_NODES")
    if tasks and nodes:
        return max(1, -(-tasks // nodes))
    return None


def local_world_size() -> int:
    """Processes of this job on this node (used to share the node's cores)."""
    kind = launcher()
    if kind == "torchrun":
        return _int_env("LOCAL_WORLD_SIZE") or 1
    if kind == "mpi":
        return _int_env("OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS") \
            or _slurm_tasks_on_this_node() or 1
    if kind == "slurm":
        return _slurm_tasks_on_this_node() or 1
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


# --------------------------------------------------------------------------- SLURM host lists


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets: ``a[1,2],b`` -> ``["a[1,2]", "b"]``."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
            if depth > 1:
                raise ValueError("nested brackets")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError("']' without '['")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ValueError("'[' without ']'")
    parts.append("".join(cur))
    return parts


def _expand_range_set(body: str) -> list[str]:
    """``01-03,07`` -> ``["01", "02", "03", "07"]`` (zero padding kept: the width of the lower bound)."""
    out = []
    for item in body.split(","):
        item = item.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not m:
            raise ValueError(f"bad range {item!r}")
        lo_s, hi_s = m.group(1), m.group(2)
        if hi_s is None:
            out.append(lo_s)
            continue
        lo, hi = int(lo_s), int(hi_s)
        if hi < lo:
            raise ValueError(f"descending range {item!r}")
        out += [str(i).zfill(len(lo_s)) for i in range(lo, hi + 1)]
    return out


def expand_hostlist(hostlist: str) -> list[str]:
    """A SLURM host list expanded to host names, in SLURM's order (what ``scontrol show hostnames`` prints).

    ``node[01-03,07],gpu-a[1-2]`` -> ``node01 node02 node03 node07 gpu-a1 gpu-a2``. Several
    bracket groups in one name expand as a product, the last group fastest
    (``r[1-2]n[1-2]`` -> ``r1n1 r1n2 r2n1 r2n2``); a range keeps the zero padding of its
    lower bound (``[098-101]`` -> ``098 099 100 101``). Raises HpcganError on a malformed list.
    """
    from hpcgan.errors import HpcganError

    hosts: list[str] = []
    try:
        for part in _split_top_level(hostlist.strip()):
            part = part.strip()
            if not part:
                continue
            pieces = re.split(r"\[([^\]]*)\]", part)  # text, range, text, range, ..., text
            names = [""]
            for i, piece in enumerate(pieces):
                options = _expand_range_set(piece) if i % 2 else [piece]
                names = [n + o for n in names for o in options]
            hosts += names
    except ValueError as exc:
        raise HpcganError(f"cannot parse the SLURM host list {hostlist!r}: {exc}; "
                          "expected e.g. node[01-03,07],gpu-a1") from exc
    return hosts


def slurm_hosts(nodelist: str | None = None) -> list[str]:
    """The hosts of this job step (``SLURM_STEP_NODELIST``, else ``SLURM_JOB_NODELIST``), in order.

    Uses ``scontrol show hostnames`` when scontrol is on PATH (it knows every
    site's naming), else (or when it fails) :func:`expand_hostlist`.
    """
    nodelist = nodelist or os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST")
    if not nodelist:
        return []
    exe = shutil.which("scontrol")
    if exe:
        import subprocess

        try:
            out = subprocess.run([exe, "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30,
                                 check=True).stdout.split()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    return expand_hostlist(nodelist)


def port_from_job_id(job_id: int | str | None, step_id: int | str | None = None) -> int:
    """A rendezvous port every task of a SLURM job step computes alike, without talking.

    ``PORT_BASE + (16 * job_id + step_id) % PORT_SPAN`` = 12000 + (16 j + s) mod 20000:
    in [12000, 32000), below the ephemeral range; two steps of one job (s < 16) or two
    jobs less than 1250 ids apart never share a port. A missing or non-numeric id
    (``SLURM_JOB_ID`` of an array task is numeric) counts as 0.
    """
    def num(v) -> int:
        try:
            return int(v)
        except (TypeError, ValueError):
            return 0

    return PORT_BASE + (16 * num(job_id) + num(step_id) % 16) % PORT_SPAN


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _single_node() -> bool:
    return local_world_size() >= world_size()


def rendezvous(comm=None) -> tuple[str | None, str | None]:
    """(master address, master port) for torch.distributed, as :func:`init_process_group` finds them.

    ``MASTER_ADDR``/``MASTER_PORT`` win. Under an MPI launcher (``comm``, or :func:`mpi_comm`
    when MPI's variables are set) rank 0 picks its host (127.0.0.1 when every rank is on
    its node) and a free port and broadcasts both. Under a SLURM step without MPI (plain
    ``srun``; MPI is not initialised there): the step's first host and
    :func:`port_from_job_id`. Either value may be None when nothing says.
    """
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if addr and port:
        return addr, port
    if comm is None and launcher() == "mpi":
        comm = mpi_comm()
    if comm is not None:
        mine = None
        if comm.Get_rank() == 0:
            mine = ("127.0.0.1" if _single_node() else socket.getfqdn(), _free_port())
        mine = comm.bcast(mine, root=0)
        return addr or mine[0], port or str(mine[1])
    if launcher() == "slurm":
        if not addr:
            hosts = slurm_hosts()
            addr = hosts[0] if hosts else None
        port = port or str(port_from_job_id(os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_STEP_ID")))
    return addr, port


# --------------------------------------------------------------------------- torch.distributed


def device(backend: str | None = None):
    """This rank's torch device: ``cuda:<local rank mod visible GPUs>`` (made current) or ``cpu``.

    Under ``srun --gpus-per-task=1`` each task sees one GPU (index 0); with all the
    node's GPUs visible, local rank r uses GPU r. ``backend="gloo"`` forces the CPU.
    """
    import torch

    if backend == "gloo" or not torch.cuda.is_available():
        return torch.device("cpu")
    dev = torch.device("cuda", local_rank() % torch.cuda.device_count())
    torch.cuda.set_device(dev)
    return dev


def select_device(name: str = "auto"):
    """The torch device a stage's ``--device`` setting names, for this rank.

    ``auto``: this rank's GPU (``cuda:<local rank mod visible GPUs>``) when torch sees one,
    else the CPU; ``cuda``: this rank's GPU, or HpcganError when torch sees none; ``cpu``.
    Unlike :func:`device` it does not make the GPU current.
    """
    import torch

    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from hpcgan.errors import HpcganError

        raise HpcganError("--device cuda but torch sees no CUDA device (check CUDA_VISIBLE_DEVICES / the job's "
                          "GPUs); use --device cpu or auto")
    return torch.device("cuda", local_rank() % torch.cuda.device_count())


def collective_timeout_s() -> float:
    """Seconds a collective (and the rendezvous) may wait for the other ranks: ``HPCGAN_DIST_TIMEOUT_S`` or 1800.

    A rank that died makes gloo fail at once (its connections close); a rank that hangs (a
    frozen node, a stopped process) or nccl make the others wait this long, then fail.
    """
    from hpcgan.errors import HpcganError

    raw = os.environ.get("HPCGAN_DIST_TIMEOUT_S")
    if raw in (None, ""):
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise HpcganError(f"HPCGAN_DIST_TIMEOUT_S={raw!r} must be a positive number of seconds (e.g. 600)")
    return value


def init_process_group(backend: str | None = None, timeout_s: float | None = None) -> bool:
    """Join torch.distributed when this process is one of several ranks; returns True if it did.

    Backend: ``nccl`` when CUDA is available, else ``gloo`` (override with ``backend``);
    with nccl each rank is pinned to its local GPU first (:func:`device`). The
    rendezvous address and port come from :func:`rendezvous`; every collective times out
    after ``timeout_s`` (default :func:`collective_timeout_s`). Idempotent; a single
    process (world size 1) does nothing and returns False. Each rank then writes its
    :class:`DistInfo` summary line to stderr (``HPCGAN_DIST_QUIET=1`` turns it off).
    A rendezvous that fails is an HpcganError naming the address.
    """
    n = world_size()
    if n <= 1:
        return False
    import datetime

    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return True
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        device("nccl")
    addr, port = rendezvous()
    if not addr or not port:
        from hpcgan.errors import HpcganError

        raise HpcganError(f"rank {rank()} of {n}: cannot find the rendezvous address; set MASTER_ADDR and "
                          "MASTER_PORT, or start with torchrun, or with mpirun/srun and mpi4py installed")
    timeout_s = collective_timeout_s() if timeout_s is None else timeout_s
    with collective_errors(f"meeting the other ranks at tcp://{addr}:{port} (rendezvous)"):
        dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}", rank=rank(), world_size=n,
                                timeout=datetime.timedelta(seconds=timeout_s))
    global _RENDEZVOUS
    _RENDEZVOUS = (addr, str(port), backend)
    atexit.register(destroy_process_group)
    if os.environ.get("HPCGAN_DIST_QUIET") != "1":  # one line per rank in the job's log: where it ran, how it met
        print(f"{log_prefix()}{info().summary()}", file=sys.stderr, flush=True)
    return True


_RENDEZVOUS: tuple[str, str, str] | None = None


def destroy_process_group() -> None:
    """Leave torch.distributed if this process joined it (idempotent; registered at exit).

    A gloo group still alive while the interpreter shuts down can abort the process
    ("terminate called without an active exception") after the work is done. After a
    collective failed (:func:`collective_errors`) the group is left alone: tearing it down
    would wait for the dead or hung peer for the whole collective timeout.
    """
    td = _torch_dist()
    if td is not None and not _BROKEN:
        try:
            td.destroy_process_group()
        except Exception:  # noqa: BLE001 - at exit, nothing useful to do about it
            pass


def exit_process(code: int) -> None:
    """End a rank's process with ``code`` without interpreter finalisation once it joined torch.distributed.

    A gloo worker thread can still drop its last reference to a finished collective's
    tensors while Python shuts down; taking the GIL then calls ``pthread_exit`` inside a
    C++ frame and the rank aborts (signal 6) after its work is done (a known torch issue:
    the guard checks ``Py_IsInitialized`` only). So: leave the group, flush the streams
    and the logs, finalise MPI when mpi4py started it, and ``os._exit``. A single process
    exits normally with ``sys.exit``.
    """
    if _torch_dist() is None:
        sys.exit(code)
    import logging

    destroy_process_group()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        mpi.Finalize()
    os._exit(code)


def _torch_dist():
    """torch.distributed when it is initialised, else None."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


_BROKEN = False  # a collective failed: the process group cannot be torn down in order
EXIT_COLLECTIVE_FAILED = 2  # the CLI's exit status for an HpcganError


def _exit_without_teardown() -> None:
    """At exit after a failed collective: flush and leave at once with status 2.

    torch tears a gloo group down when the interpreter ends, and that waits for the dead or
    hung peer for the whole collective timeout (measured: a 20 s timeout kept a rank alive
    17 s after its error; 1800 s by default). The outputs of hpcgan are written atomically,
    so nothing is lost by skipping the rest of the shutdown.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream: nothing to flush
            pass
    os._exit(EXIT_COLLECTIVE_FAILED)

_COLLECTIVE_HINTS = ("gloo", "nccl", "connection closed by peer", "connection reset", "timed out", "timeout",
                     "broken pipe", "socket", "processgroup")


def _is_collective_failure(exc: BaseException) -> bool:
    td = sys.modules.get("torch.distributed")
    dist_error = getattr(td, "DistError", None) if td is not None else None
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(h in msg for h in _COLLECTIVE_HINTS)


@contextlib.contextmanager
def collective_errors(what: str):
    """Turn a failed collective of a multi-rank job into one clear HpcganError (the CLI prints it, exit 2).

    A peer that died (its connections closed), hangs past :func:`collective_timeout_s` or
    cannot be reached makes torch.distributed raise a backend error deep in a step; this says
    which rank saw it, during what, and what to do. Other errors pass through unchanged.
    """
    try:
        yield
    except Exception as exc:  # re-raised unless it is a collective failure
        if world_size() <= 1 or not _is_collective_failure(exc):
            raise
        from hpcgan.errors import HpcganError

        global _BROKEN
        if not _BROKEN:
            _BROKEN = True
            atexit.register(_exit_without_teardown)  # runs first (last registered)
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise HpcganError(
            f"rank {rank()}/{world_size()} on {socket.gethostname()}: a collective operation with the other ranks "
            f"failed while {what} ({type(exc).__name__}: {first}). Another rank died, was killed or hangs (see "
            f"its lines in the job log), or a node is unreachable; collectives wait at most "
            f"{collective_timeout_s():g} s (HPCGAN_DIST_TIMEOUT_S). Fix the cause and run the job again "
            "(train-gan continues from its last snapshot with --resume latest)") from exc


class Comm:
    """Object collectives of this job (``barrier``, ``bcast``, ``allgather``, ``check``) over one backend.

    ``Comm()`` picks it as the module functions do: torch.distributed when it is
    initialised, else mpi4py's COMM_WORLD when several MPI ranks run, else this process
    alone. ``Comm.over(mpi)`` uses the given mpi4py communicator (None: this process
    alone), never torch.distributed. ``timed=True`` puts a barrier in front of every
    collective: the barrier's seconds add up in ``wait_s`` (waiting for the slowest rank),
    the call's in ``comm_s``, and ``calls`` lists ``(name, pickled bytes of this rank's
    object)``; the scaling benchmark reads them.
    """

    def __init__(self, timed: bool = False, *, _mpi="auto"):
        self._td = _torch_dist() if _mpi == "auto" else None
        self._mpi = (mpi_comm() if self._td is None else None) if _mpi == "auto" else _mpi
        self.timed = timed
        self.wait_s = self.comm_s = 0.0
        self.calls: list[tuple[str, int]] = []

    @classmethod
    def over(cls, mpi, timed: bool = False) -> Comm:
        """Collectives over the mpi4py communicator ``mpi`` (None: a single process)."""
        return cls(timed, _mpi=mpi)

    @property
    def rank(self) -> int:
        if self._td is not None:
            return self._td.get_rank()
        return self._mpi.Get_rank() if self._mpi is not None else 0

    @property
    def size(self) -> int:
        if self._td is not None:
            return self._td.get_world_size()
        return self._mpi.Get_size() if self._mpi is not None else 1

    def _barrier(self) -> None:
        if self._td is not None:
            self._td.barrier()
        elif self._mpi is not None:
            self._mpi.Barrier()

    def _run(self, name: str, fn, payload):
        if not self.timed:
            return fn()
        import pickle
        import time

        t0 = time.perf_counter()
        self._barrier()
        t1 = time.perf_counter()
        out = fn()
        self.wait_s += t1 - t0
        self.comm_s += time.perf_counter() - t1
        self.calls.append((name, len(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))))
        return out

    def barrier(self) -> None:
        """Wait for every rank."""
        self._run("barrier", self._barrier, None)

    def bcast(self, obj=None, root: int = 0):
        """Rank ``root``'s picklable ``obj`` on every rank (others pass anything, e.g. None)."""
        def call():
            if self._td is not None:
                box = [obj]
                self._td.broadcast_object_list(box, src=root)
                return box[0]
            return self._mpi.bcast(obj, root=root) if self._mpi is not None else obj

        return self._run("bcast", call, obj)

    def allgather(self, obj) -> list:
        """Every rank's picklable ``obj``, as a list indexed by rank (on every rank)."""
        def call():
            if self._td is not None:
                out = [None] * self._td.get_world_size()
                self._td.all_gather_object(out, obj)
                return out
            return self._mpi.allgather(obj) if self._mpi is not None else [obj]

        return self._run("allgather", call, obj)

    def check(self, error: str | None) -> None:
        """Raise HpcganError on every rank when any rank reports an error (no rank is left waiting)."""
        errors = [e for e in self.allgather(error) if e]
        if errors:
            from hpcgan.errors import HpcganError

            raise HpcganError(errors[0])


def barrier() -> None:
    """Wait for every rank (torch.distributed, else MPI, else nothing to wait for)."""
    Comm().barrier()


def broadcast_object(obj=None, src: int = 0):
    """Rank ``src``'s picklable ``obj`` on every rank (others pass anything, e.g. None)."""
    return Comm().bcast(obj, root=src)


def all_gather_object(obj) -> list:
    """Every rank's picklable ``obj``, as a list indexed by rank (on every rank)."""
    return Comm().allgather(obj)


# --------------------------------------------------------------------------- summary


@dataclass
class DistInfo:
    """Where this process stands in its job (what :func:`info` found)."""

    launcher: str
    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    host: str
    job_id: str | None
    master_addr: str | None
    master_port: str | None
    backend: str | None  # set once init_process_group ran
    device: str

    def summary(self) -> str:
        """One log line, e.g. ``rank 1/8 (local 1/4) on gpu-a2 via slurm, job 123, gloo tcp://gpu-a1:14000, cpu``."""
        where = f"{self.backend} tcp://{self.master_addr}:{self.master_port}" if self.backend else "no process group"
        job = f", job {self.job_id}" if self.job_id else ""
        return (f"rank {self.rank}/{self.world_size} (local {self.local_rank}/{self.local_world_size}) on {self.host} "
                f"via {self.launcher}{job}, {where}, {self.device}")

    def to_dict(self) -> dict:
        return asdict(self)


def info() -> DistInfo:
    """A :class:`DistInfo` of this process (reads the environment; starts nothing)."""
    backend = addr = port = None
    if _RENDEZVOUS is not None and _torch_dist() is not None:
        addr, port, backend = _RENDEZVOUS
    dev = "cpu"
    torch = sys.modules.get("torch")  # not imported here: info() stays cheap in processes without torch
    if torch is not None and backend != "gloo" and torch.cuda.is_available():
        dev = f"cuda:{local_rank() % torch.cuda.device_count()}"
    job = os.environ.get("SLURM_JOB_ID")
    return DistInfo(launcher=launcher(), rank=rank(), local_rank=local_rank(), world_size=world_size(),
                    local_world_size=local_world_size(), host=socket.gethostname(), job_id=job,
                    master_addr=addr or os.environ.get("MASTER_ADDR"), master_port=port or os.environ.get("MASTER_PORT"),
                    backend=backend, device=dev)
