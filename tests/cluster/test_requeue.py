"""GAN training interrupted before its time limit, requeued and resumed with its kimg preserved, on the real
cluster: as a checkpointable submitit job (hpcgan submit train-gan) and as the sbatch template
(slurm/train-gan.sbatch). Both jobs run at the same time (one CPU each) to keep the suite short."""

from __future__ import annotations

import json
import re
import time

import pytest

from hpcgan.cli import stage_request
from hpcgan.gan.snapshot import list_snapshots, load_snapshot
from hpcgan.launch.submit import submit

from .conftest import REPO, run, wait_jobs

pytestmark = pytest.mark.slurm

KIMG = 0.064
TRAIN = ["--kimg", str(KIMG), "--batch", "8", "--tick-kimg", "0.016", "--snap", "1", "--seed", "1"]
TINY = REPO / "tests" / "gan" / "tiny.yaml"
SMALL = ["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=1", "--gpus-per-node=0", "--time=10"]


def _wait_first_snapshot(outdir, t0: float) -> None:
    while not any(outdir.glob("*/snapshot-*.pt")):  # training is running (the job state lags)
        assert time.monotonic() - t0 < 180, f"training under {outdir} did not start"
        time.sleep(0.2)


def _interruption(log: str) -> tuple[str, float]:
    m = re.search(r"interrupted by SIGUSR2: snapshot (\S+) at kimg ([0-9.]+)", log)
    assert m, log[-3000:]
    return m.group(1), float(m.group(2))


def _assert_one_run_finished(outdir, interrupted_snapshot: str, interrupted_kimg: float) -> None:
    (run_dir,) = [p for p in outdir.iterdir() if p.is_dir()]  # the same run continued, no new one
    assert load_snapshot(interrupted_snapshot)["counters"]["cur_nimg"] / 1000 >= interrupted_kimg
    assert load_snapshot(list_snapshots(run_dir)[-1])["counters"]["cur_nimg"] == round(KIMG * 1000)
    nimg = [json.loads(ln)["nimg"] for ln in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert nimg == sorted(nimg) and len(set(nimg)) == len(nimg)  # one line per tick, none repeated


def _requeued(job_id: str) -> bool:
    history = run(["sacct", "-n", "-X", "-D", "-P", "-j", job_id, "-o", "State"]).stdout.split()
    return "REQUEUED" in history


def test_training_requeues_and_resumes_with_kimg_preserved(cluster_shards, cluster_slurm, tmp_path):
    t0 = time.monotonic()
    # 1. submitit: TrainGanJob is Checkpointable; job._interrupt(timeout=True) sends what SLURM sends
    #    signal_delay_s before the time limit (SIGUSR2 to the tasks)
    sub_out = tmp_path / "submitit-gan"
    argv = ["--config", str(TINY), "--data", str(cluster_shards), "--outdir", str(sub_out), "--no-progress", *TRAIN]
    run_dir, (job,) = submit("train-gan", stage_request("train-gan", argv), "slurm", "local",
                             {"time_min": 5, "signal_delay_s": 30}, folder=tmp_path / "run")
    # 2. the template: --signal=B:USR2 goes to the batch shell, which forwards it and requeues
    tpl_out = tmp_path / "template-gan"
    tpl = run(["sbatch", "--parsable", *SMALL, "-o", tmp_path / "train-%j.out", REPO / "slurm" / "train-gan.sbatch",
               cluster_shards, tpl_out, *TRAIN], cwd=tmp_path, CONFIG=str(TINY)).stdout.strip()

    _wait_first_snapshot(sub_out, t0)
    job._interrupt(timeout=True)
    _wait_first_snapshot(tpl_out, t0)
    run(["scancel", "--batch", "--signal=USR2", tpl])

    res = job.result()
    snap, kimg = _interruption((run_dir / f"{job.job_id}_0_log.out").read_text())
    assert res["status"] == "done" and res["restart_count"] >= 1  # SLURM_RESTART_COUNT in the resumed job
    assert res["resumed_from"] == snap and res["kimg"] == pytest.approx(KIMG)
    _assert_one_run_finished(sub_out, snap, kimg)

    states = wait_jobs([str(job.job_id), tpl], timeout=300)
    assert states[str(job.job_id)] == "COMPLETED" and _requeued(str(job.job_id))
    log = (tmp_path / f"train-{tpl}.out").read_text()  # --open-mode=append: both starts in one log
    assert states[tpl] == "COMPLETED", log
    snap, kimg = _interruption(log)
    assert "requeueing it" in log and _requeued(tpl)
    _assert_one_run_finished(tpl_out, snap, kimg)
