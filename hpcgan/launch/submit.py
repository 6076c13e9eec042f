"""Submit any stage as a job with submitit; the experiment grid as one job array.

A *run* is a folder (``--folder``) that holds submitit's files and ``run.json``:

    {"stage", "argv", "cluster", "site": {...}, "created", "experiment_dir" (grid runs),
     "jobs": [{"job_id", "kind": "stage"|"task"|"report", "index", "name", "submitted"}, ...]}

Job kinds:

- :class:`StageJob` runs ``hpcgan STAGE ARGV`` inside the job (the same CLI a user
  types; nothing is duplicated). A non-zero exit status fails the job.
- :class:`TrainGanJob` (``train-gan``) is a ``submitit.helpers.Checkpointable``: on
  SIGUSR2 (the time limit, ``--signal=USR2@signal_delay_s``, or a preemption) the
  training loop writes a snapshot and stops; the job then hands over to submitit,
  whose ``checkpoint()`` call resubmits the job with ``--resume <that snapshot>`` and
  requeues it (``SLURM_RESTART_COUNT`` counts the restarts). kimg, ADA p, optimiser
  and RNG states carry over (see hpcgan.gan.train).
- :class:`ExperimentTask` runs ``hpcgan experiment CONFIG --task-index I``; the grid
  goes out as one ``map_array`` over the tasks whose result is missing, at most
  ``array_parallelism`` at once (``--array=0-N%K``), each idempotent. A
  :class:`ReportJob` runs after the array (``--dependency=afterany``) and writes
  ``results.json``/``results.csv`` (aggregate) and ``report/`` (``hpcgan report``).

:func:`run_status` reads each job's state (the result files submitit writes, else
``sacct``); :func:`resubmit_failed` submits the failed ones again, alone.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import submitit
from submitit.core.utils import FailedJobError

from hpcgan.atomic import atomic_write_text
from hpcgan.errors import HpcganError
from hpcgan.launch import STAGES
from hpcgan.launch.sites import SiteProfile, executor_parameters, load_site, to_dict

__all__ = ["STAGES", "StageJob", "TrainGanJob", "ExperimentTask", "ReportJob", "make_executor", "submit",
           "pending_tasks", "submit_stage", "submit_experiment", "run_status", "resubmit_failed", "format_status",
           "submit_main", "status_main"]

RUN_FILE = "run.json"
FAILED_STATES = {"FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "ERROR"}
DONE_STATES = {"COMPLETED"} | FAILED_STATES


_FORK_HOOK = []


def _default_sigterm_in_child() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_cli(stage: str, argv: list[str]) -> int:
    """``hpcgan STAGE ARGV`` in this process; its exit status.

    submitit ignores SIGTERM in the job process (it waits for SIGUSR2); a stage's forked
    workers (multiprocessing pools, DataLoader workers) would inherit that and never
    stop when their pool terminates them, so forked children get the default back.
    """
    from hpcgan.cli import main

    if not _FORK_HOOK:
        os.register_at_fork(after_in_child=_default_sigterm_in_child)
        _FORK_HOOK.append(True)
    return main([stage, *argv])


def _job_info() -> dict:
    import socket

    from hpcgan import dist

    env = os.environ
    return {"host": socket.gethostname(), "job_id": env.get("SLURM_JOB_ID"), "array_task": env.get("SLURM_ARRAY_TASK_ID"),
            "restart_count": int(env.get("SLURM_RESTART_COUNT") or 0), "rank": dist.rank(),
            "world_size": dist.world_size()}


class StageJob:
    """``hpcgan STAGE ARGV`` as a job; returns ``{"stage", "argv", "status": 0, host, job_id, rank, ...}``."""

    def __init__(self, stage: str, argv: list[str]):
        self.stage, self.argv = stage, list(argv)

    def __call__(self) -> dict:
        rc = _run_cli(self.stage, self.argv)
        if rc != 0:
            raise HpcganError(f"hpcgan {self.stage} {' '.join(self.argv)} exited with status {rc}")
        return {"stage": self.stage, "argv": self.argv, "status": rc, **_job_info()}


def _submitit_handler():
    """submitit's SIGUSR2 handler when this process is a submitit job, else None."""
    handler = signal.getsignal(signal.SIGUSR2)
    owner = getattr(handler, "__self__", None)
    return handler if owner is not None and type(owner).__name__ == "SignalHandler" else None


def _train_outdir(argv: list[str]) -> Path:
    from hpcgan.cli import build_parser

    ns = build_parser().parse_args(["train-gan", *argv])
    if ns.outdir:
        return Path(ns.outdir)
    if ns.config:
        import yaml

        cfg = yaml.safe_load(Path(ns.config).read_text()) or {}
        if cfg.get("outdir"):
            return Path(cfg["outdir"])
    from hpcgan.gan.config import TrainConfig

    return Path(TrainConfig.outdir)


def _newest_snapshot(outdir: Path) -> Path | None:
    snaps = list(outdir.glob("*/snapshot-*.pt"))
    return max(snaps, key=lambda p: p.stat().st_mtime_ns) if snaps else None


class TrainGanJob(submitit.helpers.Checkpointable):
    """Checkpointable ``hpcgan train-gan ARGV``: snapshot on SIGUSR2, requeue, resume.

    ``resume`` is the snapshot the job continues from (set when it was interrupted).
    Returns ``{"status": "done", "run_dir", "snapshot", "kimg", "restart_count", "resumed_from", ...}``.
    """

    def __init__(self, argv: list[str], resume: str | None = None):
        self.argv, self.resume = list(argv), resume

    def __call__(self) -> dict:
        from hpcgan import dist
        from hpcgan.gan.snapshot import load_snapshot
        from hpcgan.gan.train import EXIT_INTERRUPTED

        argv = self.argv + (["--resume", self.resume] if self.resume else [])
        started_from = self.resume
        rc = _run_cli("train-gan", argv)
        outdir = _train_outdir(self.argv)
        if rc == EXIT_INTERRUPTED:
            if dist.is_rank0():
                snap = _newest_snapshot(outdir)
                self.resume = str(snap) if snap else self.resume
                handler = _submitit_handler()
                if handler is not None:  # submitit calls self.checkpoint(), requeues the job and exits
                    handler(signal.SIGUSR2, None)
            else:
                return {"status": "interrupted", **_job_info()}
            raise HpcganError(f"train-gan was interrupted; its snapshot is {self.resume} (resume with "
                              f"`hpcgan train-gan --resume {self.resume}`)")
        if rc != 0:
            raise HpcganError(f"hpcgan train-gan {' '.join(argv)} exited with status {rc}")
        snap = _newest_snapshot(outdir)
        kimg = load_snapshot(snap)["counters"]["cur_nimg"] / 1000 if snap else None
        return {"status": "done", "run_dir": str(snap.parent) if snap else None, "snapshot": str(snap) if snap else None,
                "kimg": kimg, "resumed_from": started_from, **_job_info()}

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on SIGUSR2: the same job, resuming from the newest snapshot it wrote."""
        return submitit.helpers.DelayedSubmission(TrainGanJob(self.argv, self.resume), *args, **kwargs)


def _experiment_cfg(argv: list[str]):
    """(config path, ExperimentConfig) from ``hpcgan experiment`` arguments."""
    from hpcgan.cli import build_parser
    from hpcgan.experiment.grid import load_experiment

    ns = build_parser().parse_args(["experiment", *argv])
    if getattr(ns, "task_index", None) is not None or getattr(ns, "list", False):
        raise HpcganError("submit experiment: leave out --task-index and --list (the launcher runs every task)")
    return ns.config, load_experiment(ns.config, {"outdir": ns.outdir, "progress": getattr(ns, "progress", None)})


class ExperimentTask(submitit.helpers.Checkpointable):
    """Task ``index`` of the grid: ``hpcgan experiment ARGV --task-index index``; returns its summary."""

    def __init__(self, argv: list[str]):
        self.argv = list(argv)

    def __call__(self, index: int) -> dict:
        rc = _run_cli("experiment", [*self.argv, "--task-index", str(index)])
        if rc != 0:
            raise HpcganError(f"experiment task {index} exited with status {rc}")
        from hpcgan.experiment.grid import expand

        task = expand(_experiment_cfg(self.argv)[1])[index]
        metrics = json.loads((Path(task.outdir) / "test_metrics.json").read_text())
        return {"index": index, "name": task.name, "outdir": task.outdir, "accuracy": metrics.get("accuracy"),
                **_job_info()}

    def checkpoint(self, index: int):  # requeued on a time limit; classify resumes from last.pt
        return submitit.helpers.DelayedSubmission(ExperimentTask(self.argv), index)


class ReportJob:
    """Aggregate the grid's results and write its report (runs after the array)."""

    def __init__(self, experiment_dir: str):
        self.experiment_dir = str(experiment_dir)

    def __call__(self) -> dict:
        rc = _run_cli("report", [self.experiment_dir])  # aggregates, then writes report/
        if rc != 0:
            raise HpcganError(f"hpcgan report {self.experiment_dir} exited with status {rc}")
        results = json.loads((Path(self.experiment_dir) / "results.json").read_text())
        return {"experiment_dir": self.experiment_dir, "n_done": results.get("n_done"), **_job_info()}


# -- executors and runs -------------------------------------------------------------------------


def make_executor(folder: str | os.PathLike, cluster: str, site: SiteProfile, name: str):
    """A submitit AutoExecutor for ``cluster`` (slurm | local | debug) with the site's parameters."""
    if cluster not in ("slurm", "local", "debug"):
        raise HpcganError(f"--cluster {cluster!r}: use slurm, local (subprocesses here) or debug (in this process)")
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise HpcganError("--cluster slurm: sbatch is not on PATH (run on a login node, or use --cluster local)")
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster, slurm_max_num_timeout=site.max_num_timeout,
                               slurm_python=sys.executable)
    ex.update_parameters(name=name, **executor_parameters(site, cluster))
    return ex


def _read_run(run_dir: Path) -> dict:
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise HpcganError(f"{run_dir} is not a submit run (no {RUN_FILE}); give the --folder of `hpcgan submit`") \
            from None
    except (OSError, json.JSONDecodeError) as exc:
        raise HpcganError(f"{path} cannot be read ({exc}); it is written by `hpcgan submit`") from exc


def _write_run(run_dir: Path, run: dict) -> None:
    atomic_write_text(Path(run_dir) / RUN_FILE, json.dumps(run, indent=1) + "\n")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _record(job, kind: str, index: int | None = None, name: str | None = None) -> dict:
    return {"job_id": str(job.job_id), "kind": kind, "index": index, "name": name, "submitted": _now()}


def _default_folder(stage: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("submitit") / f"{stage}-{stamp}"


def submit_stage(stage: str, argv: list[str], cluster: str, site: SiteProfile, folder: Path) -> tuple[dict, list]:
    """Submit one job running ``hpcgan STAGE ARGV``; returns (run record, [job])."""
    ex = make_executor(folder, cluster, site, f"hpcgan-{stage}")
    fn = TrainGanJob(argv) if stage == "train-gan" else StageJob(stage, argv)
    job = ex.submit(fn)
    run = {"stage": stage, "argv": list(argv), "cluster": cluster, "site": to_dict(site), "created": _now(),
           "jobs": [_record(job, "stage", name=stage)]}
    return run, [job]


def _submit_report(ex, experiment_dir: str, after: list) -> object:
    ids = sorted({str(j.job_id).split("_")[0] for j in after})
    ex.update_parameters(name="hpcgan-report")
    if ids and type(getattr(ex, "_executor", None)).__name__ == "SlurmExecutor":
        ex.update_parameters(slurm_dependency="afterany:" + ":".join(ids))
    else:  # local/debug: no dependencies; wait for the tasks here (a debug job runs when asked for its result)
        for j in after:
            try:
                j.results()
            except Exception:  # noqa: BLE001 - a failed task; the report covers the finished ones
                pass
    return ex.submit(ReportJob(experiment_dir))


def pending_tasks(argv: list[str]) -> tuple[list, list]:
    """(all tasks, tasks without a result) of the grid of ``hpcgan experiment ARGV``."""
    from hpcgan.experiment.grid import expand, prepare_dir

    _, cfg = _experiment_cfg(argv)
    prepare_dir(cfg)  # a bad config fails here, on the login node, not in every task
    tasks = expand(cfg)
    return tasks, [t for t in tasks if not (Path(t.outdir) / "test_metrics.json").is_file()]


def submit_experiment(argv: list[str], cluster: str, site: SiteProfile, folder: Path) -> tuple[dict, list]:
    """The grid's missing tasks as one job array (at most site.array_parallelism at once), then the report job."""
    from hpcgan.experiment.grid import experiment_dir

    _, cfg = _experiment_cfg(argv)
    tasks, todo = pending_tasks(argv)
    ex = make_executor(folder, cluster, site, f"hpcgan-{cfg.name}")
    jobs = ex.map_array(ExperimentTask(argv), [t.index for t in todo]) if todo else []
    records = [_record(j, "task", t.index, t.name) for j, t in zip(jobs, todo)]
    report = _submit_report(ex, str(experiment_dir(cfg)), jobs)
    run = {"stage": "experiment", "argv": list(argv), "cluster": cluster, "site": to_dict(site), "created": _now(),
           "experiment_dir": str(experiment_dir(cfg)), "n_tasks": len(tasks), "skipped": len(tasks) - len(todo),
           "jobs": records + [_record(report, "report", name="report")]}
    return run, [*jobs, report]


def submit(stage: str, argv: list[str], cluster: str | None = None, site: str = "local",
           site_overrides: dict | None = None, folder: str | os.PathLike | None = None) -> tuple[Path, list]:
    """Submit ``hpcgan STAGE ARGV`` (the grid for ``experiment``); returns (run folder, submitit jobs)."""
    if stage not in STAGES:
        raise HpcganError(f"submit: unknown stage {stage!r}; one of {', '.join(STAGES)}")
    if argv and argv[0] == "--":
        argv = argv[1:]
    prof = load_site(site, site_overrides)
    cluster = cluster or prof.cluster
    run_dir = Path(folder) if folder else _default_folder(stage)
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / RUN_FILE).exists():
        raise HpcganError(f"{run_dir} already holds a submit run; use another --folder, or "
                          f"`hpcgan submit status {run_dir} --resubmit-failed`")
    run_dir = run_dir.resolve()
    try:
        if stage == "experiment":
            run, jobs = submit_experiment(argv, cluster, prof, run_dir)
        else:
            run, jobs = submit_stage(stage, argv, cluster, prof, run_dir)
    except FailedJobError as exc:  # sbatch refused the job
        msg = " ".join(str(exc).split())
        raise HpcganError(f"the cluster refused the job ({msg}); check the site profile {prof.name} "
                          f"(partition {prof.partition}, account {prof.account}, {prof.gpus_per_node} GPUs per node) "
                          "or override it with --partition/--account/--gpus-per-node") from None
    _write_run(run_dir, run)
    return run_dir, jobs


# -- states ------------------------------------------------------------------------------------


def _job_state(folder: Path, cluster: str, job_id: str) -> tuple[str, str | None]:
    """(state, error message) of one job: from submitit's result file, else the scheduler."""
    import pickle

    from submitit.core.utils import JobPaths

    result = JobPaths(folder, job_id=job_id, task_id=0).result_pickle
    if result.is_file():
        try:
            with open(result, "rb") as fh:
                outcome, value = pickle.load(fh)
        except Exception as exc:  # noqa: BLE001 - a half-written or foreign file
            return "UNKNOWN", f"unreadable result {result}: {exc}"
        if outcome == "success":
            return "COMPLETED", None
        last = [ln for ln in str(value).strip().splitlines() if ln.strip()]
        return "FAILED", (last[-1] if last else "failed")
    if cluster == "slurm":
        return submitit.SlurmJob(folder=folder, job_id=job_id).state, None
    if cluster == "local" and job_id.isdigit():  # a local job's id is its process id
        try:
            os.kill(int(job_id), 0)
            return "RUNNING", None
        except OSError:
            return "UNKNOWN", "the process ended without a result file"
    return "UNKNOWN", None


def run_status(run_dir: str | os.PathLike) -> dict:
    """Each job's state: ``{"stage", "cluster", "jobs": [{job_id, kind, index, name, state, error}], "counts"}``.

    A task resubmitted later is listed once, with its newest job.
    """
    run_dir = Path(run_dir)
    run = _read_run(run_dir)
    latest: dict = {}
    for rec in run["jobs"]:
        key = (rec["kind"], rec["index"])
        latest[key] = rec
    jobs = []
    for rec in latest.values():
        state, error = _job_state(run_dir, run["cluster"], rec["job_id"])
        if state == "UNKNOWN" and rec.get("state"):  # debug jobs leave no files: what submit_main saw
            state, error = rec["state"], rec.get("error")
        jobs.append({**rec, "state": state, "error": error})
    counts: dict = {}
    for j in jobs:
        counts[j["state"]] = counts.get(j["state"], 0) + 1
    return {"run_dir": str(run_dir), "stage": run["stage"], "cluster": run["cluster"], "jobs": jobs, "counts": counts,
            "experiment_dir": run.get("experiment_dir")}


def format_status(status: dict) -> str:
    lines = [f"{status['run_dir']}: {status['stage']} on {status['cluster']}"]
    for j in status["jobs"]:
        what = j["name"] if j["index"] is None else f"task {j['index']} {j['name']}"
        lines.append(f"  {j['job_id']:>14}  {j['state']:<12} {j['kind']:<6} {what}" +
                     (f"  ({j['error']})" if j["error"] else ""))
    lines.append("  " + ", ".join(f"{n} {s}" for s, n in sorted(status["counts"].items())))
    return "\n".join(lines)


def resubmit_failed(run_dir: str | os.PathLike) -> list:
    """Submit the failed jobs of a run again (grid: the failed tasks as a new array, then a new report job)."""
    run_dir = Path(run_dir).resolve()
    run = _read_run(run_dir)
    status = run_status(run_dir)
    failed = [j for j in status["jobs"] if j["state"] in FAILED_STATES]
    if not failed:
        return []
    prof = load_site(run["site"]["name"], {k: v for k, v in run["site"].items() if k != "name"})
    cluster = run["cluster"]
    jobs: list = []
    if run["stage"] == "experiment":
        ex = make_executor(run_dir, cluster, prof, "hpcgan-experiment")
        idx = [j["index"] for j in failed if j["kind"] == "task"]
        names = {j["index"]: j["name"] for j in failed}
        jobs = ex.map_array(ExperimentTask(run["argv"]), idx) if idx else []
        run["jobs"] += [_record(j, "task", i, names[i]) for j, i in zip(jobs, idx)]
        report = _submit_report(ex, run["experiment_dir"], jobs)
        run["jobs"].append(_record(report, "report", name="report"))
        jobs.append(report)
    else:
        _, jobs = submit_stage(run["stage"], run["argv"], cluster, prof, run_dir)
        run["jobs"] += [_record(j, "stage", name=run["stage"]) for j in jobs]
    _write_run(run_dir, run)
    return jobs


def wait(jobs: list) -> list[tuple[str, str | None]]:
    """Wait until every job is done; their (state, error)s."""
    out = []
    for j in jobs:
        try:
            j.results()  # every task's result (a multi-task job has one per task)
            out.append(("COMPLETED", None))
        except Exception as exc:  # noqa: BLE001 - submitit raises the job's error
            msg = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
            out.append(("FAILED", msg[-1] if msg else type(exc).__name__))
    return out


# -- CLI entries ---------------------------------------------------------------------------------


def submit_main(stage: str, argv: list[str], cluster: str | None, site: str, site_overrides: dict,
                folder: str | None, wait_for_end: bool) -> int:
    run_dir, jobs = submit(stage, argv, cluster, site, site_overrides, folder)
    run = _read_run(run_dir)
    print(f"submitted {len(jobs)} job(s) to {run['cluster']}: " + " ".join(str(j.job_id) for j in jobs))
    print(f"run folder {run_dir}; states: hpcgan submit status {run_dir}")
    if wait_for_end or run["cluster"] == "debug":
        states = wait(jobs)
        seen = {str(j.job_id): st for j, st in zip(jobs, states)}
        for rec in run["jobs"]:
            if rec["job_id"] in seen:
                rec["state"], rec["error"] = seen[rec["job_id"]]
        _write_run(run_dir, run)
        failed = [(j.job_id, e) for j, (s, e) in zip(jobs, states) if s != "COMPLETED"]
        for jid, err in failed:
            print(f"job {jid} failed: {err}", file=sys.stderr)
        print(format_status(run_status(run_dir)))
        return 1 if failed else 0
    return 0


def status_main(run_dir: str, resubmit: bool = False) -> int:
    status = run_status(run_dir)
    print(format_status(status))
    if resubmit:
        jobs = resubmit_failed(run_dir)
        print(f"resubmitted {len(jobs)} job(s): " + " ".join(str(j.job_id) for j in jobs) if jobs
              else "nothing to resubmit: no job failed")
    return 1 if any(j["state"] in FAILED_STATES for j in status["jobs"]) and not resubmit else 0
