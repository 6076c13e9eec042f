"""Submit any stage as a job with submitit; the experiment grid as one job array.

A *run* is a folder (``--folder``) that holds submitit's files and ``run.json``:

    {"stage", "request", "argv" (for display), "cluster", "site": {...}, "created", "experiment_dir" (grid runs),
     "jobs": [{"job_id", "kind": "stage"|"task"|"report", "index", "name", "submitted"}, ...]}

``request`` is the stage's JSON-able request (hpcgan.launch.stages: for most stages the resolved
config as a dict); the jobs are made from it, and :func:`resubmit_failed` makes them again from it.

Job kinds (each calls the stage function with its config, never the CLI):

- :class:`StageJob` runs one stage (hpcgan.launch.stages.REGISTRY) and returns its small result.
  An error fails the job.
- :class:`TrainGanJob` (``train-gan``) is a ``submitit.helpers.Checkpointable``: on
  SIGUSR2 (the time limit, ``--signal=USR2@signal_delay_s``, or a preemption) the
  training loop writes a snapshot and stops; ``train`` returns it, and the job hands over to
  submitit, whose ``checkpoint()`` call resubmits the job resuming from that snapshot and
  requeues it (``SLURM_RESTART_COUNT`` counts the restarts). kimg, ADA p, optimiser
  and RNG states carry over (see hpcgan.gan.train).
- :class:`ExperimentTask` runs task I of the grid (``run_task``); the grid
  goes out as one ``map_array`` over the tasks whose result is missing, at most
  ``array_parallelism`` at once (``--array=0-N%K``), each idempotent. A
  :class:`ReportJob` runs after the array (``--dependency=afterany``) and writes
  ``results.json``/``results.csv`` (aggregate) and ``report/`` (``write_report``).

:func:`run_status` reads each job's state (the result files submitit writes, else
``sacct``); :func:`resubmit_failed` submits the failed ones again, alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import submitit

from hpcgan.atomic import atomic_write_text
from hpcgan.errors import HpcganError
from hpcgan.launch import STAGES, stages
from hpcgan.launch.sites import SiteProfile, executor_parameters, load_site, to_dict
from hpcgan.launch.submitit_internals import read_result, requeue_handler, result_path, submission_refused

__all__ = ["STAGES", "StageJob", "TrainGanJob", "ExperimentTask", "ReportJob", "make_executor", "submit",
           "pending_tasks", "submit_stage", "submit_experiment", "run_status", "resubmit_failed", "format_status",
           "submit_main", "status_main"]

RUN_FILE = "run.json"
FAILED_STATES = {"FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "ERROR"}
DONE_STATES = {"COMPLETED"} | FAILED_STATES


_FORK_HOOK = []


def _default_sigterm_in_child() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _in_job() -> None:
    """Set up this process to run a stage inside a submitit job.

    submitit ignores SIGTERM in the job process (it waits for SIGUSR2); a stage's forked
    workers (multiprocessing pools, DataLoader workers) would inherit that and never
    stop when their pool terminates them, so forked children get the default back.
    """
    if not _FORK_HOOK:
        os.register_at_fork(after_in_child=_default_sigterm_in_child)
        _FORK_HOOK.append(True)


def _job_info() -> dict:
    import socket

    from hpcgan import dist

    env = os.environ
    return {"host": socket.gethostname(), "job_id": env.get("SLURM_JOB_ID"), "array_task": env.get("SLURM_ARRAY_TASK_ID"),
            "restart_count": int(env.get("SLURM_RESTART_COUNT") or 0), "rank": dist.rank(),
            "world_size": dist.world_size()}


class StageJob:
    """One stage as a job, with its config made from the request; returns ``{"stage", **result, host, job_id,
    rank, ...}`` (result: the stage's small result, hpcgan.launch.stages)."""

    def __init__(self, stage: str, request: dict):
        self.stage, self.config = stage, stages.load_request(stage, request)

    def __call__(self) -> dict:
        _in_job()
        result = stages.run_stage(self.stage, self.config)
        return {"stage": self.stage, **result, **_job_info()}


def _latest_snapshot(run_dir: str | None) -> str | None:
    """The newest snapshot of a run directory, by hpcgan's one rule (resolve_resume); None when it has none."""
    from hpcgan.gan.snapshot import resolve_resume

    if not run_dir:
        return None
    try:
        return str(resolve_resume(run_dir, None))
    except HpcganError:
        return None


class TrainGanJob(submitit.helpers.Checkpointable):
    """Checkpointable ``train(cfg)``: snapshot on SIGUSR2, requeue, resume from that snapshot.

    ``cfg`` is the resolved TrainConfig (or its dict); ``resume`` the snapshot the job continues from (set when
    it was interrupted). Returns ``{"status": "done", "run_dir", "snapshot", "kimg", "restart_count",
    "resumed_from", ...}``.
    """

    def __init__(self, cfg, resume: str | None = None):
        self.cfg = stages.load_request("train-gan", cfg) if isinstance(cfg, dict) else cfg
        self.resume = resume

    def __call__(self) -> dict:
        from hpcgan import dist

        _in_job()
        started_from = self.resume
        cfg = dataclasses.replace(self.cfg, resume=self.resume) if self.resume else self.cfg
        result = stages.train_and_report(cfg)
        if result["status"] == "interrupted":
            if dist.is_rank0():
                self.resume = result["snapshot"] or self.resume  # the snapshot train just wrote
                handler = requeue_handler()
                if handler is not None:  # submitit calls self.checkpoint(), requeues the job and exits
                    handler(signal.SIGUSR2, None)
            else:
                return {"status": "interrupted", **_job_info()}
            raise HpcganError(f"train-gan was interrupted; its snapshot is {self.resume} (resume with "
                              f"`hpcgan train-gan --resume {self.resume}`)")
        snap = result["snapshot"] or _latest_snapshot(result["run_dir"])  # ranks > 0 are not told the snapshot
        return {"status": "done", "run_dir": result["run_dir"] if snap else None, "snapshot": snap,
                "kimg": result["kimg"] if snap else None, "resumed_from": started_from, **_job_info()}

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on SIGUSR2: the same job, resuming from the snapshot it wrote."""
        return submitit.helpers.DelayedSubmission(TrainGanJob(self.cfg, self.resume), *args, **kwargs)


class ExperimentTask(submitit.helpers.Checkpointable):
    """Task ``index`` of the grid (``run_task``); returns its summary. ``cfg``: the ExperimentConfig (or its dict)."""

    def __init__(self, cfg):
        self.cfg = stages.experiment_config(cfg) if isinstance(cfg, dict) else cfg

    def __call__(self, index: int) -> dict:
        _in_job()
        return {**stages.run_experiment_task(self.cfg, index), **_job_info()}

    def checkpoint(self, index: int):  # requeued on a time limit; classify resumes from last.pt
        return submitit.helpers.DelayedSubmission(ExperimentTask(self.cfg), index)


class ReportJob:
    """Aggregate the grid's results and write its report (runs after the array)."""

    def __init__(self, experiment_dir: str):
        self.experiment_dir = str(experiment_dir)

    def __call__(self) -> dict:
        _in_job()
        res = stages.run_stage("report", stages.load_request("report", {"experiment_dir": self.experiment_dir}))
        return {"experiment_dir": self.experiment_dir, "n_done": res["n_done"], **_job_info()}


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


def _make_job(stage: str, request: dict):
    return TrainGanJob(request) if stage == "train-gan" else StageJob(stage, request)


def submit_stage(stage: str, request: dict, cluster: str, site: SiteProfile, folder: Path,
                 argv: list[str] | None = None) -> tuple[dict, list]:
    """Submit one job running ``stage`` with ``request``; returns (run record, [job])."""
    fn = _make_job(stage, request)  # a bad request fails here, before anything is submitted
    ex = make_executor(folder, cluster, site, f"hpcgan-{stage}")
    job = ex.submit(fn)
    run = {"stage": stage, "request": request, "argv": list(argv or []), "cluster": cluster, "site": to_dict(site),
           "created": _now(), "jobs": [_record(job, "stage", name=stage)]}
    return run, [job]


def _submit_report(ex, experiment_dir: str, after: list) -> object:
    ids = sorted({str(j.job_id).split("_")[0] for j in after})
    ex.update_parameters(name="hpcgan-report")
    if ids and ex.cluster == "slurm":
        ex.update_parameters(slurm_dependency="afterany:" + ":".join(ids))
    else:  # local/debug: no dependencies; wait for the tasks here (a debug job runs when asked for its result)
        for j in after:
            try:
                j.results()
            except Exception:  # noqa: BLE001 - a failed task; the report covers the finished ones
                pass
    return ex.submit(ReportJob(experiment_dir))


def pending_tasks(request: dict) -> tuple[list, list]:
    """(all tasks, tasks without a result) of the grid of an experiment request (its resolved config)."""
    from hpcgan.experiment.grid import expand, prepare_dir

    cfg = stages.experiment_config(request)
    prepare_dir(cfg)  # a bad config fails here, on the login node, not in every task
    tasks = expand(cfg)
    return tasks, [t for t in tasks if not (Path(t.outdir) / "test_metrics.json").is_file()]


def submit_experiment(request: dict, cluster: str, site: SiteProfile, folder: Path,
                      argv: list[str] | None = None) -> tuple[dict, list]:
    """The grid's missing tasks as one job array (at most site.array_parallelism at once), then the report job."""
    from hpcgan.experiment.grid import experiment_dir

    cfg = stages.experiment_config(request)
    tasks, todo = pending_tasks(request)
    ex = make_executor(folder, cluster, site, f"hpcgan-{cfg.name}")
    jobs = ex.map_array(ExperimentTask(cfg), [t.index for t in todo]) if todo else []
    records = [_record(j, "task", t.index, t.name) for j, t in zip(jobs, todo)]
    report = _submit_report(ex, str(experiment_dir(cfg)), jobs)
    run = {"stage": "experiment", "request": request, "argv": list(argv or []), "cluster": cluster,
           "site": to_dict(site), "created": _now(), "experiment_dir": str(experiment_dir(cfg)),
           "n_tasks": len(tasks), "skipped": len(tasks) - len(todo),
           "jobs": records + [_record(report, "report", name="report")]}
    return run, [*jobs, report]


def submit(stage: str, request: dict, cluster: str | None = None, site: str = "local",
           site_overrides: dict | None = None, folder: str | os.PathLike | None = None,
           argv: list[str] | None = None) -> tuple[Path, list]:
    """Submit ``stage`` with its request (the grid for ``experiment``); returns (run folder, submitit jobs).

    ``request``: the stage's JSON-able request (hpcgan.launch.stages; ``hpcgan.cli.stage_request`` makes one
    from the stage's command-line arguments); ``argv``: those arguments, kept in run.json for display.
    """
    if stage not in STAGES:
        raise HpcganError(f"submit: unknown stage {stage!r}; one of {', '.join(STAGES)}")
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
            run, jobs = submit_experiment(request, cluster, prof, run_dir, argv)
        else:
            run, jobs = submit_stage(stage, request, cluster, prof, run_dir, argv)
    except submission_refused() as exc:  # sbatch refused the job
        msg = " ".join(str(exc).split())
        raise HpcganError(f"the cluster refused the job ({msg}); check the site profile {prof.name} "
                          f"(partition {prof.partition}, account {prof.account}, {prof.gpus_per_node} GPUs per node) "
                          "or override it with --partition/--account/--gpus-per-node") from None
    _write_run(run_dir, run)
    return run_dir, jobs


# -- states ------------------------------------------------------------------------------------


def _job_state(folder: Path, cluster: str, job_id: str) -> tuple[str, str | None]:
    """(state, error message) of one job: from submitit's result file, else the scheduler."""
    try:
        outcome_value = read_result(folder, job_id)
    except Exception as exc:  # noqa: BLE001 - a half-written or foreign file
        return "UNKNOWN", f"unreadable result {result_path(folder, job_id)}: {exc}"
    if outcome_value is not None:
        outcome, value = outcome_value
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


def _stored_request(run: dict, run_dir: Path) -> dict:
    if "request" not in run:
        raise HpcganError(f"{run_dir / RUN_FILE} holds no stage request (written by an older hpcgan); submit the "
                          "stage again with `hpcgan submit`")
    return run["request"]


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
        jobs = ex.map_array(ExperimentTask(_stored_request(run, run_dir)), idx) if idx else []
        run["jobs"] += [_record(j, "task", i, names[i]) for j, i in zip(jobs, idx)]
        report = _submit_report(ex, run["experiment_dir"], jobs)
        run["jobs"].append(_record(report, "report", name="report"))
        jobs.append(report)
    else:
        _, jobs = submit_stage(run["stage"], _stored_request(run, run_dir), cluster, prof, run_dir, run["argv"])
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


def submit_main(stage: str, request: dict, cluster: str | None, site: str, site_overrides: dict,
                folder: str | None, wait_for_end: bool, argv: list[str] | None = None) -> int:
    """``hpcgan submit STAGE``: submit the stage's request, print the job ids (and, waiting, their states)."""
    run_dir, jobs = submit(stage, request, cluster, site, site_overrides, folder, argv)
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
