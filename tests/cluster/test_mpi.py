"""MPI and torch.distributed under the real SLURM cluster.

Preprocessing over 2 ranks (srun --mpi=pmix in the MPI template and in hpcgan submit, mpirun inside a
batch job) equals 1 rank; a 2-rank gloo DDP step under srun equals 1 process."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from hpcgan.data.shards import read_manifest, read_split
from hpcgan.gan.snapshot import list_snapshots, load_snapshot

from .conftest import REPO, run, wait_jobs

pytestmark = [pytest.mark.slurm, pytest.mark.mpi]

PRE_FLAGS = ["--classes", "Clear,Opacity", "--resolution", "32", "--test-per-class", "2", "--shard-size", "4"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    from hpcgan.data.phantom import generate_phantoms

    root = tmp_path_factory.mktemp("mpi_phantoms")
    generate_phantoms(root, 10, seed=11, size=64, annotation_fraction=0.2)
    return root


def _assert_same(a, b):
    for split in ("train", "val", "test"):
        x, y = read_split(a, split), read_split(b, split)
        assert list(x["source"]) == list(y["source"]), split
        assert np.array_equal(x["labels"], y["labels"]), split
        assert np.array_equal(x["images"], y["images"]), split
    ma, mb = read_manifest(a), read_manifest(b)
    assert ma["counts"] == mb["counts"]
    assert [e["stem"] for e in ma["excluded"]] == [e["stem"] for e in mb["excluded"]]


def test_mpi_preprocessing_under_srun_pmix_and_mpirun_equals_one_rank(cluster_slurm, phantoms, tmp_path):
    from hpcgan.data.preprocess import PreprocessConfig, run_preprocess

    assert shutil.which("mpirun"), "openmpi-bin is needed (scripts/install.sh installs it)"
    one_node = ["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--overcommit", "--time=5"]
    # the MPI template: srun --mpi=pmix inside, then `hpcgan data verify`
    pmix = run(["sbatch", "--parsable", *one_node, "-o", tmp_path / "pmix.out", REPO / "slurm" / "preprocess-mpi.sbatch",
                phantoms, tmp_path / "pmix", *PRE_FLAGS], cwd=tmp_path).stdout.strip()
    mpirun = ("mpirun --allow-run-as-root --oversubscribe -np 2 python -m hpcgan.cli preprocess "
              f"{phantoms} {tmp_path / 'mpirun'} --workers 1 --no-progress " + " ".join(PRE_FLAGS))
    mpi = run(["sbatch", "--parsable", *one_node, "-o", tmp_path / "mpirun.out", "--wrap", mpirun],
              cwd=tmp_path).stdout.strip()
    # hpcgan submit with 2 tasks: submitit's srun gets the site's srun_args (--mpi=pmix)
    from hpcgan.cli import stage_request
    from hpcgan.launch.submit import submit

    argv = [str(phantoms), str(tmp_path / "submit"), "--workers", "1", "--no-progress", *PRE_FLAGS]
    _, (sub_job,) = submit("preprocess", stage_request("preprocess", argv), "slurm", "local", {"tasks_per_node": 2},
                           folder=tmp_path / "run")
    ref = tmp_path / "one"
    run_preprocess(PreprocessConfig(str(phantoms), str(ref), classes=["Clear", "Opacity"], resolution=32,
                                    test_per_class=2, shard_size=4, workers=1, progress=False))
    states = wait_jobs([pmix, mpi, str(sub_job.job_id)], timeout=240)
    assert len(sub_job.results()) == 2 and states[str(sub_job.job_id)] == "COMPLETED"  # one result per rank
    assert read_manifest(tmp_path / "submit")["summary"]["ranks"] == 2
    _assert_same(ref, tmp_path / "submit")
    for job, name in ((pmix, "pmix"), (mpi, "mpirun")):
        log = (tmp_path / f"{name}.out").read_text()
        assert states[job] == "COMPLETED", f"{name}: {log}"
        assert "2 rank(s)" in log and log.count("inputs =") == 1, log  # 2 MPI ranks, summary on rank 0 only
        assert read_manifest(tmp_path / name)["summary"]["ranks"] == 2
        _assert_same(ref, tmp_path / name)
    assert "0 problem(s)" in (tmp_path / "pmix.out").read_text()  # the template's `hpcgan data verify`


def _weights(snap: dict, key: str) -> dict:
    return {k: v for k, v in snap[key].items() if v.is_floating_point()}


def test_two_rank_gloo_ddp_under_srun_equals_single_process(cluster_slurm, cluster_shards, tmp_path):
    """train-gan-multinode.sbatch on 1 node x 2 tasks (srun; SLURM's own rank variables, rendezvous from the job)
    x 4 images each == 1 process x 2 rounds of 4 images, for the same global batch 8 and seed."""
    tiny = REPO / "tests" / "gan" / "tiny.yaml"
    train = ["--kimg", "0.016", "--batch", "8", "--tick-kimg", "0.016", "--snap", "0", "--cond", "--seed", "1"]
    job = run(["sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--gpus-per-node=0",
               "--overcommit", "--time=5", "-o", tmp_path / "ddp.out", REPO / "slurm" / "train-gan-multinode.sbatch",
               cluster_shards, tmp_path / "ddp", *train], cwd=tmp_path, CONFIG=str(tiny)).stdout.strip()
    run(["python", "-m", "hpcgan.cli", "train-gan", "--config", tiny, "--data", cluster_shards, "--outdir",
         tmp_path / "single", "--batch-gpu", "4", "--no-progress", *train], timeout=240)
    states = wait_jobs([job], timeout=240)
    log = (tmp_path / "ddp.out").read_text()
    assert states[job] == "COMPLETED", log
    assert log.count("done:") == 1 and "[rank 1/2]" in log, log  # two ranks, rank 0 reports
    (ddp_run,) = (tmp_path / "ddp").iterdir()  # not two independent single-process runs
    (single_run,) = (tmp_path / "single").iterdir()
    a, b = load_snapshot(list_snapshots(single_run)[-1]), load_snapshot(list_snapshots(ddp_run)[-1])
    assert a["counters"] == b["counters"] and b["counters"]["cur_nimg"] == 16
    for key in ("G", "D", "G_ema"):
        wa, wb = _weights(a, key), _weights(b, key)
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4, msg=f"{key}.{k}")
