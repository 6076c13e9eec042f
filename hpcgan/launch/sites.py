"""Site profiles: what a cluster's jobs ask SLURM for (partition, account, GPUs, time).

A profile is a YAML file ``configs/sites/<name>.yaml`` (or any path) loaded into
:class:`SiteProfile`; single fields are overridden from the command line
(``hpcgan submit --time-min 30 --nodes 2``). :func:`executor_parameters` turns a
profile into submitit's ``update_parameters`` keywords:

    slurm_partition, slurm_account, nodes, tasks_per_node, cpus_per_task,
    gpus_per_node, mem_gb, timeout_min, slurm_signal_delay_s,
    slurm_array_parallelism, slurm_setup, slurm_srun_args, slurm_additional_parameters

(submitit turns them into ``#SBATCH`` lines; for ``--cluster local|debug`` only the
portable ones are used). The signal before the time limit is submitit's
``SIGUSR2`` (``--signal=USR2@signal_delay_s``), never ``USR1``, which NCCL uses.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from hpcgan.config import load as load_config
from hpcgan.errors import HpcganError

__all__ = ["SiteProfile", "sites_dir", "list_sites", "load_site", "executor_parameters"]


@dataclass
class SiteProfile:
    name: str = "local"
    description: str = ""
    cluster: str = "slurm"            # default executor: slurm | local | debug
    partition: str | None = None
    account: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 1           # one task per GPU for DDP training
    cpus_per_task: int = 1
    mem_gb: float | None = None       # per node; None: the partition's default
    time_min: int = 60                # time limit of one job (a requeued job gets it again)
    signal_delay_s: int = 120         # SIGUSR2 this many seconds before the limit: snapshot, then requeue
    max_num_timeout: int = 3          # how many times a timed-out checkpointable job is requeued
    array_parallelism: int = 16       # most array tasks running at once (the K of --array=0-N%K)
    setup: list = field(default_factory=list)       # shell lines run before the job (module load, exports)
    srun_args: list = field(default_factory=list)   # options of the srun that starts the tasks, e.g. [--mpi=pmix]
    additional: dict = field(default_factory=dict)  # other sbatch options, e.g. {qos: boost_qos_dbg}

    def validate(self) -> SiteProfile:
        if self.cluster not in ("slurm", "local", "debug"):
            raise HpcganError(f"site {self.name}: cluster must be slurm, local or debug, not {self.cluster!r}")
        for k in ("nodes", "tasks_per_node", "cpus_per_task", "time_min", "max_num_timeout", "array_parallelism"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise HpcganError(f"site {self.name}: {k} must be a positive integer, not {v!r}")
        if not isinstance(self.gpus_per_node, int) or self.gpus_per_node < 0:
            raise HpcganError(f"site {self.name}: gpus_per_node must be >= 0, not {self.gpus_per_node!r}")
        if self.signal_delay_s < 0 or self.signal_delay_s >= self.time_min * 60:
            raise HpcganError(f"site {self.name}: signal_delay_s ({self.signal_delay_s}) must be below the time "
                              f"limit ({self.time_min} min)")
        if not (isinstance(self.setup, list) and isinstance(self.srun_args, list) and isinstance(self.additional, dict)):
            raise HpcganError(f"site {self.name}: setup and srun_args must be lists, additional a mapping")
        return self


def sites_dir() -> Path:
    """Where named profiles live: ``$HPCGAN_SITES`` or the repository's ``configs/sites``."""
    env = os.environ.get("HPCGAN_SITES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "configs" / "sites"


def list_sites() -> list[str]:
    return sorted(p.stem for p in sites_dir().glob("*.yaml"))


def load_site(name: str, overrides: dict | None = None) -> SiteProfile:
    """The profile ``name`` (a file in :func:`sites_dir`, or a path to a YAML file) with ``overrides``.

    ``None`` values in ``overrides`` mean "not given". Unknown names and fields are
    an :class:`~hpcgan.errors.HpcganError` that lists what exists.
    """
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = sites_dir() / f"{name}.yaml"
        if not path.is_file():
            raise HpcganError(f"--site {name}: no profile {path}; known sites: {', '.join(list_sites()) or 'none'} "
                              "(or give the path of a YAML file with the fields of hpcgan.launch.sites.SiteProfile)")
    return load_config(SiteProfile, path, overrides).validate()


def executor_parameters(site: SiteProfile, cluster: str) -> dict:
    """submitit ``update_parameters`` keywords for ``site`` on executor ``cluster``.

    For slurm every field is used; for local/debug only the node shape and the time
    limit (the others have no meaning there).
    """
    params: dict = dict(nodes=site.nodes, tasks_per_node=site.tasks_per_node, cpus_per_task=site.cpus_per_task,
                        timeout_min=site.time_min)
    if site.gpus_per_node:
        params["gpus_per_node"] = site.gpus_per_node
    if site.mem_gb:
        params["mem_gb"] = site.mem_gb
    if cluster != "slurm":
        return params
    params.update(slurm_signal_delay_s=site.signal_delay_s, slurm_array_parallelism=site.array_parallelism)
    if site.partition:
        params["slurm_partition"] = site.partition
    if site.account:
        params["slurm_account"] = site.account
    if site.setup:
        params["slurm_setup"] = list(site.setup)
    if site.srun_args:
        params["slurm_srun_args"] = list(site.srun_args)
    if site.additional:
        params["slurm_additional_parameters"] = dict(site.additional)
    return params


def to_dict(site: SiteProfile) -> dict:
    return dataclasses.asdict(site)
