"""Running the grid for real (hpcgan.classify.run_classify, small_cnn, 32 px): resume, aggregate, report, failures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hpcgan.experiment.grid import ExperimentConfig, expand, run_local, run_task, validate

from .conftest import small_grid

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def half_then_full(exp_shards, tmp_path_factory):
    """Tasks 0 and 2 of a 4-task grid run with run_task, then run_local completes the rest."""
    cfg = validate(ExperimentConfig(**small_grid(exp_shards, tmp_path_factory.mktemp("exp"))))
    tasks = expand(cfg)
    for i in (0, 2):
        run_task(cfg, i)
    before = {t.name: (Path(t.outdir) / "test_metrics.json").stat().st_mtime_ns for t in tasks if t.index in (0, 2)}
    missing_before = [t.name for t in tasks if not (Path(t.outdir) / "test_metrics.json").exists()]
    summary = run_local(cfg)
    return cfg, tasks, before, missing_before, summary


def test_resume_runs_only_the_missing_tasks(half_then_full):
    cfg, tasks, before, missing_before, s = half_then_full
    assert missing_before == [tasks[1].name, tasks[3].name]
    assert s["skipped"] == 2 and sorted(s["ran"]) == sorted(missing_before) and s["failed"] == []
    for name, mtime in before.items():  # finished tasks were not touched
        assert (Path(cfg.outdir) / cfg.name / "tasks" / name / "test_metrics.json").stat().st_mtime_ns == mtime
    again = run_local(cfg)
    assert again["skipped"] == 4 and again["ran"] == []
    # run_task returns the stored result of a finished task
    stored = json.loads((Path(tasks[1].outdir) / "test_metrics.json").read_text())
    assert run_task(cfg, 1)["accuracy"] == stored["accuracy"]


def _independent_cells(tasks) -> dict:
    """Mean and sample std per (model, aug) straight from the task folders' test_metrics.json."""
    vals: dict = {}
    for t in tasks:
        m = json.loads((Path(t.outdir) / "test_metrics.json").read_text())
        for k in ("accuracy", "tpr", "tnr", "fpr"):
            vals.setdefault((t.model, t.aug, k), []).append(m[k])
    return {key: (float(np.mean(v)), float(np.std(v, ddof=1))) for key, v in vals.items()}


def test_aggregate_and_report_tables_match_the_task_files(half_then_full):
    from hpcgan.experiment.report import write_report

    cfg, tasks, _, _, s = half_then_full
    exp = Path(s["experiment_dir"])
    ref = _independent_cells(tasks)
    results = json.loads((exp / "results.json").read_text())
    assert results["n_done"] == 4 and results["missing"] == []
    with open(exp / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == [t.name for t in tasks]
    assert [int(r["seed"]) for r in rows] == [1, 2, 1, 2]

    md = write_report(exp)
    with open(md.parent / "table.csv") as fh:
        table = list(csv.DictReader(fh))
    assert {(r["model"], r["aug"]) for r in table} == {("small_cnn", "none"), ("small_cnn", "classic")}
    text = md.read_text()
    for r in table:
        assert int(r["n_runs"]) == 2
        for k in ("accuracy", "tpr", "tnr", "fpr"):
            mean, std = ref[(r["model"], r["aug"], k)]
            assert float(r[f"{k}_mean"]) == pytest.approx(mean) and float(r[f"{k}_std"]) == pytest.approx(std)
            assert f"{mean:.4f} ± {std:.4f}" in text
    with open(md.parent / "runs.csv") as fh:
        runs = list(csv.DictReader(fh))
    assert len(runs) == 4 and {"accuracy", "tpr", "tnr", "fpr", "seed"} <= set(runs[0])
    with open(md.parent / "comparisons.csv") as fh:
        comp = list(csv.DictReader(fh))
    assert [(c["metric"], c["a"], c["b"], c["n"]) for c in comp] == [("accuracy", "classic", "none", "2"),
                                                                     ("balanced_accuracy", "classic", "none", "2")]
    acc = {(t.aug, t.seed): json.loads((Path(t.outdir) / "test_metrics.json").read_text())["accuracy"] for t in tasks}
    assert float(comp[0]["mean_diff"]) == pytest.approx(np.mean([acc["classic", s] - acc["none", s] for s in (1, 2)]))
    assert "seeds 1, 2" in text and "2 runs" in text
    for png in ("accuracy.png", "roc.png"):
        assert (md.parent / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parallel_with_a_failing_task(exp_shards, tmp_path):
    """--parallel 2 through the CLI: the gan task asks for more synthetic images than exist and fails; the other
    finishes; the failure is named with its log; exit status 1."""
    import yaml

    conf = tmp_path / "e.yaml"
    conf.write_text(yaml.safe_dump(small_grid(exp_shards, tmp_path / "out", augs=["none", "gan"], runs=1,
                                              gan_data=[str(exp_shards)], gan_n=100000, gan_classes=["Opacity"])))
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "hpcgan.cli", "experiment", str(conf), "--parallel", "2"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    exp = tmp_path / "out" / "g"
    log = exp / "logs" / "small_cnn-gan-all-run1.log"
    assert "FAILED task 1 small_cnn-gan-all-run1" in proc.stderr and str(log) in proc.stderr
    assert "gan_n" in log.read_text()
    assert (exp / "tasks" / "small_cnn-none-all-run1" / "test_metrics.json").is_file()
    assert not (exp / "tasks" / "small_cnn-gan-all-run1" / "test_metrics.json").exists()
    res = json.loads((exp / "results.json").read_text())
    assert res["n_done"] == 1 and res["missing"] == ["small_cnn-gan-all-run1"]
    listing = subprocess.run([sys.executable, "-m", "hpcgan.cli", "experiment", str(conf), "--list"], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[:2] == ["0\tsmall_cnn-none-all-run1", "1\tsmall_cnn-gan-all-run1"]
    assert "2 tasks (sbatch --array=0-1)" in listing.stdout
