"""The sbatch templates on the real cluster: the dependency chain (preprocess -> train-gan -> generate ->
experiment array -> report). (train-gan.sbatch's requeue before the time limit: test_requeue.py.)"""

from __future__ import annotations

import datetime
import itertools
import json
import re

import pytest

from hpcgan.gan.snapshot import list_snapshots, load_snapshot

from .conftest import REPO, run, wait_jobs

pytestmark = pytest.mark.slurm

# every job of the chain on this node: one task, one CPU, no GPU (the templates ask for GPUs)
SMALL = ["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=1", "--gpus-per-node=0", "--time=10"]
TINY_GAN = f"--config {REPO / 'tests' / 'gan' / 'tiny.yaml'}"


def _times(job_id: str) -> tuple[float, float]:
    out = run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "Start,End"]).stdout.split()
    starts = [datetime.datetime.fromisoformat(ln.split("|")[0]).timestamp() for ln in out]
    ends = [datetime.datetime.fromisoformat(ln.split("|")[1]).timestamp() for ln in out]
    return min(starts), max(ends)


def test_pipeline_dependency_chain_and_array(cluster_slurm, tmp_path):
    from hpcgan.data.phantom import generate_phantoms

    work = tmp_path / "work"
    raw = tmp_path / "raw"
    generate_phantoms(raw, 16, seed=2, size=64)
    exp = tmp_path / "grid.yaml"
    exp.write_text(
        f"name: chain\ndata: {work / 'shards'}\ngan_data: [{work / 'synth'}]\noutdir: {work / 'experiments'}\n"
        "models: [small_cnn]\naugs: [none, gan]\nruns: 1\nepochs: 1\nbatch: 16\nimage_size: 32\npretrained: 'no'\n"
        "gan_n: 16\ndevice: cpu\nprogress: false\nimage_metrics: false\n")
    work.mkdir()
    proc = run(["bash", REPO / "slurm" / "pipeline.sh", raw, work, exp, *SMALL], cwd=work,
               CLASSES="Clear,Opacity", RESOLUTION="32", PREPROCESS_FLAGS="--test-per-class 2 --val-fraction 0.2",
               GAN_CONFIG=str(REPO / "tests" / "gan" / "tiny.yaml"),
               GAN_FLAGS="--cond --kimg 0.016 --batch 8 --tick-kimg 0.016 --snap 1 --seed 1", GEN_FLAGS="--n 16",
               PARALLEL="2")
    ids = dict(re.findall(r"^(preprocess|train-gan|generate|experiment|report) (\d+)", proc.stdout, re.M))
    assert list(ids) == ["preprocess", "train-gan", "generate", "experiment", "report"], proc.stdout
    assert "(2 tasks, 2 at once)" in proc.stdout
    states = wait_jobs(list(ids.values()), timeout=400)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(work.glob("*.out")))
    assert set(states.values()) == {"COMPLETED"} and len(states) == 6, f"{states}\n{logs}"  # 5 jobs, 2 array tasks
    # each job started only after the one before it had ended (afterok)
    order = list(ids.values())
    for before, after in itertools.pairwise(order):
        assert _times(after)[0] >= _times(before)[1], (before, after)
    # the outputs of every stage
    assert json.loads((work / "shards" / "manifest.json").read_text())["class_names"] == ["Clear", "Opacity"]
    (gan_run,) = (work / "gan").iterdir()
    assert load_snapshot(list_snapshots(gan_run)[-1])["counters"]["cur_nimg"] == 16
    assert (work / "synth" / "manifest.json").is_file()
    assert len(list(work.glob(f"hpcgan-grid-{ids['experiment']}_*.out"))) == 2  # one log per array task
    results = json.loads((work / "experiments" / "chain" / "results.json").read_text())
    assert results["n_done"] == 2
    for task in ("small_cnn-none-all-run1", "small_cnn-gan-all-run1"):
        m = json.loads((work / "experiments" / "chain" / "tasks" / task / "test_metrics.json").read_text())
        assert 0.0 <= m["accuracy"] <= 1.0
    gan_mix = json.loads((work / "experiments" / "chain" / "tasks" / "small_cnn-gan-all-run1" /
                          "test_metrics.json").read_text())["train_mix"]
    assert sum(gan_mix["synthetic"].values()) > 0  # the gan task trained on the generated images
    assert any((work / "experiments" / "chain" / "report").iterdir())
