"""The uses of submitit's non-public parts, each behind one small adapter (checked with submitit 1.5).

Everything else in hpcgan.launch uses submitit's public API (AutoExecutor, SlurmJob, helpers).
When a submitit release changes one of these, this file is the one to change.
"""

from __future__ import annotations

import os
import signal


def requeue_handler():
    """submitit's SIGUSR2 handler when this process is a submitit job, else None.

    Internal: submitit installs a bound method of ``submitit.core.job_environment.SignalHandler`` for
    SIGUSR2; calling it runs the job's ``checkpoint()``, requeues the job and exits. There is no public
    "requeue me now" call, so the handler is recognised by its owner's class name.
    """
    handler = signal.getsignal(signal.SIGUSR2)
    owner = getattr(handler, "__self__", None)
    return handler if owner is not None and type(owner).__name__ == "SignalHandler" else None


def read_result(folder: str | os.PathLike, job_id: str) -> tuple[str, object] | None:
    """(outcome, value) of the result file submitit wrote for a job's task 0 ("success" or "error"), None when
    there is none yet; raises when the file cannot be read.

    Internal: ``submitit.core.utils.JobPaths`` names the file and its content is ``pickle.dump((outcome,
    value))``. The public ``Job.result()`` would need the job object of the cluster that ran it, and waits.
    """
    import pickle

    path = result_path(folder, job_id)
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        return pickle.load(fh)


def result_path(folder: str | os.PathLike, job_id: str):
    """The path :func:`read_result` reads (for messages)."""
    from submitit.core.utils import JobPaths

    return JobPaths(folder, job_id=job_id, task_id=0).result_pickle


def submission_refused() -> type[Exception]:
    """The exception submitit raises when sbatch refuses a job (bad partition, account, resources).

    Internal: ``submitit.core.utils.FailedJobError`` is not exported at the package's top level.
    """
    from submitit.core.utils import FailedJobError

    return FailedJobError
