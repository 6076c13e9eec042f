"""hpcgan submit on the real SLURM cluster: a stage, failed-job resubmission, and the experiment grid as a
job array with a parallelism limit (checkpointable training: test_requeue.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hpcgan.cli import stage_request
from hpcgan.launch.submit import pending_tasks, run_status, submit

from .conftest import NODES, run, wait_jobs

pytestmark = pytest.mark.slurm

HPCGAN = ["python", "-m", "hpcgan.cli"]


def _wait_state(run_dir: Path, want: set[str], timeout: float = 120) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        st = run_status(run_dir)
        if all(j["state"] in want for j in st["jobs"]):
            return st
        time.sleep(0.5)
    raise AssertionError(f"{run_dir}: jobs not in {want} after {timeout}s: {st}")


def test_submit_a_stage_and_get_its_result(cluster_slurm, tmp_path):
    proc = run([*HPCGAN, "submit", "phantom", "--cluster", "slurm", "--site", "local", "--folder", tmp_path / "run",
                "--wait", "--", tmp_path / "ph", "--n", "3", "--size", "64"], cwd=tmp_path)
    assert "COMPLETED" in proc.stdout
    assert len(list((tmp_path / "ph" / "Opacity" / "images").glob("*.png"))) == 3
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    (job,) = rec["jobs"]
    assert wait_jobs([job["job_id"]])[job["job_id"]] == "COMPLETED"  # SLURM's own accounting agrees
    script = (tmp_path / "run" / f"{job['job_id']}_submission.sh").read_text()
    assert "#SBATCH --partition=debug" in script and "#SBATCH --signal=USR2@" in script
    # the job's result is what StageJob returned, inside a SLURM allocation
    import submitit

    res = submitit.SlurmJob(folder=tmp_path / "run", job_id=job["job_id"]).result()
    assert res["stage"] == "phantom" and res["job_id"] == job["job_id"]


def test_a_job_the_cluster_refuses_is_a_user_error(cluster_slurm, tmp_path):
    proc = run([*HPCGAN, "submit", "phantom", "--site", "leonardo", "--folder", tmp_path / "run", "--",
                tmp_path / "ph"], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "refused the job" in proc.stderr and "boost_usr_prod" in proc.stderr


def test_failed_job_status_and_resubmit_alone(cluster_slurm, tmp_path):
    """A stage fails (its input is missing); after the input appears, --resubmit-failed runs it again."""
    src, out = tmp_path / "ph", tmp_path / "shards"
    argv = ["--", str(src), str(out), "--classes", "Clear,Opacity", "--resolution", "32", "--test-per-class", "1",
            "--no-progress"]
    run_dir, _ = submit("preprocess", stage_request("preprocess", argv), "slurm", "local", folder=tmp_path / "run")
    st = _wait_state(run_dir, {"FAILED", "COMPLETED"})
    assert st["counts"] == {"FAILED": 1} and "ph" in st["jobs"][0]["error"]
    proc = run([*HPCGAN, "submit", "status", run_dir], check=False)
    assert proc.returncode == 1 and "FAILED" in proc.stdout
    run([*HPCGAN, "phantom", src, "--n", "3", "--size", "64"])
    proc = run([*HPCGAN, "submit", "status", run_dir, "--resubmit-failed"])
    assert "resubmitted 1 job(s)" in proc.stdout
    st = _wait_state(run_dir, {"FAILED", "COMPLETED"})
    assert st["counts"] == {"COMPLETED": 1}
    assert len(json.loads((run_dir / "run.json").read_text())["jobs"]) == 2
    assert (out / "manifest.json").is_file()


def _grid_config(tmp_path: Path, shards: Path, name: str, augs=("none", "classic")) -> Path:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(
        f"name: {name}\ndata: {shards}\noutdir: {tmp_path / 'experiments'}\nmodels: [small_cnn]\n"
        f"augs: [{', '.join(augs)}]\nruns: 2\nepochs: 1\nbatch: 16\nimage_size: 32\npretrained: 'no'\n"
        "device: cpu\nprogress: false\nimage_metrics: false\n")
    return cfg


def _max_concurrent(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


@pytest.mark.multinode
def test_experiment_grid_as_job_array_with_parallelism_2(cluster_shards, cluster_slurm, tmp_path):
    """The grid's 4 tasks as one array, at most 2 at once, spread over both nodes of the cluster."""
    cfg = _grid_config(tmp_path, cluster_shards, "grid")
    proc = run([*HPCGAN, "submit", "experiment", "--cluster", "slurm", "--site", "local", "--parallelism", "2",
                "--folder", tmp_path / "run", "--wait", "--", cfg], cwd=tmp_path, timeout=400)
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    tasks = [j for j in rec["jobs"] if j["kind"] == "task"]
    assert rec["n_tasks"] == 4 and len(tasks) == 4, proc.stdout
    array_id = tasks[0]["job_id"].split("_")[0]
    script = (tmp_path / "run" / f"{array_id}_submission.sh").read_text()
    assert "#SBATCH --array=0-3%2" in script
    exp = Path(rec["experiment_dir"])
    results = json.loads((exp / "results.json").read_text())
    assert results["n_done"] == 4
    assert (exp / "results.csv").is_file() and any((exp / "report").iterdir())
    for t in tasks:
        m = json.loads((exp / "tasks" / t["name"] / "test_metrics.json").read_text())
        assert 0.0 <= m["accuracy"] <= 1.0 and m["model"] == "small_cnn"
    # at most 2 array tasks ran at once (SLURM's own start/end times)
    out = run(["sacct", "-n", "-X", "-P", "-j", array_id, "-o", "JobID,Start,End,NodeList", "--noconvert"]).stdout
    import datetime

    spans, nodes = [], set()
    for ln in out.split():
        jid, a, b, node = ln.split("|")
        spans.append((datetime.datetime.fromisoformat(a).timestamp(), datetime.datetime.fromisoformat(b).timestamp()))
        nodes.add(node)
    assert len(spans) == 4 and _max_concurrent([(a, b - 0.5) for a, b in spans]) <= 2
    assert nodes == {f"hpcgan-node{i}" for i in range(1, NODES + 1)}, out  # the array ran on both nodes
    # every task's result exists now: a second submission would send only the report job
    assert pending_tasks(stage_request("experiment", [str(cfg)]))[1] == []
    assert "nothing to resubmit" in run([*HPCGAN, "submit", "status", tmp_path / "run", "--resubmit-failed"]).stdout
