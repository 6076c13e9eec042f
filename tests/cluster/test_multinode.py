"""Jobs across the two nodes of the test cluster (hpcgan-node1, hpcgan-node2: one network namespace,
address and host name each, one slurmd each; see slurm-up.sh --nodes 2).

- train-gan-multinode.sbatch on 2 nodes x 1 task (gloo between the nodes) equals one process with the
  same global batch (over the first 3 steps: further on, float summation order, amplified by Adam on
  parameters whose gradients are near zero, makes the two drift apart by more than rounding);
- the same job preempted twice (SIGUSR2 as --signal=B:USR2 sends it before the time limit, forwarded by
  the batch shell and srun to the rank on each node; then `scontrol requeue`, which SIGTERMs every process
  of the job on both nodes) resumes exactly: kimg, ADA p and stats.jsonl as an uninterrupted run;
- a rank that dies (SIGKILL) or hangs (SIGSTOP) on one node: the other rank stops with a clear error
  and the job ends within seconds (collective timeout, srun --wait), not at its time limit;
- `hpcgan preprocess` under `srun -N 2 --mpi=pmix` (preprocess-mpi.sbatch) equals one rank;
- `hpcgan bench scaling --launcher srun` inside a 2-node allocation measures 1 rank on 1 node and 2 ranks
  on 2 nodes.
(The experiment array over both nodes: test_submit.py.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from hpcgan import dist
from hpcgan.gan.snapshot import list_snapshots, load_snapshot

from .conftest import NODES, REPO, cluster_env, run, wait_jobs

pytestmark = [pytest.mark.slurm, pytest.mark.multinode]

HOSTS = [f"hpcgan-node{i}" for i in range(1, NODES + 1)]
TINY = REPO / "tests" / "gan" / "tiny.yaml"
KIMG = 0.096  # 12 steps of 8 images; a snapshot every tick (2 steps)
STEADY = ["--batch", "8", "--tick-kimg", "0.016", "--snap", "1", "--cond", "--seed", "1"]
TRAIN = ["--kimg", str(KIMG), *STEADY]
EARLY_KIMG = 0.024  # the single-process reference: 3 steps (ticks at nimg 8 and 24, as the 2-node run)
TWO_NODES = ["--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--gpus-per-node=0", "--time=10"]


def _job_nodes(job_id: str) -> dict[str, list[str]]:
    """{job id (array tasks as ID_I): the hosts it ran on} from SLURM's accounting."""
    out = run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,NodeList"]).stdout
    return {ln.split("|")[0]: dist.expand_hostlist(ln.split("|")[1]) for ln in out.split() if "|" in ln}


def _weights(snap: dict, key: str) -> dict:
    return {k: v for k, v in snap[key].items() if v.is_floating_point()}


def _assert_same_snapshot(a: dict, b: dict) -> None:
    """Counters, ADA p, G, D and G_ema equal."""
    assert a["counters"] == b["counters"]
    pa, pb = a["augment"]["state"]["p"], b["augment"]["state"]["p"]
    assert float(pa) > 0.05 and torch.equal(pa, pb), (pa, pb)  # ADA moved p, identically
    for key in ("G", "D", "G_ema"):
        wa, wb = _weights(a, key), _weights(b, key)
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4, msg=f"{key}.{k}")


def _assert_same_training(a_run: Path, b_run: Path) -> None:
    """Final snapshots equal (:func:`_assert_same_snapshot`); stats.jsonl has the same ticks and ADA p."""
    a, b = load_snapshot(list_snapshots(a_run)[-1]), load_snapshot(list_snapshots(b_run)[-1])
    assert b["counters"]["cur_nimg"] == round(KIMG * 1000)
    _assert_same_snapshot(a, b)
    sa = [json.loads(ln) for ln in (a_run / "stats.jsonl").read_text().splitlines()]
    sb = [json.loads(ln) for ln in (b_run / "stats.jsonl").read_text().splitlines()]
    assert [(r["tick"], r["nimg"]) for r in sa] == [(r["tick"], r["nimg"]) for r in sb]  # one line per tick, once
    assert [r["aug_p"] for r in sa] == pytest.approx([r["aug_p"] for r in sb], abs=1e-6)


def _rendezvous_lines(log: str) -> list[tuple[str, str, str]]:
    """(rank, host, master) of each rank's hpcgan.dist line: ``rank 1/2 (local 0/1) on HOST ... gloo tcp://M:P``."""
    return re.findall(r"\] rank (\d)/2 \(local 0/1\) on (\S+) via slurm, job \d+, gloo tcp://([^:]+):\d+", log)


def _submit_training(shards: Path, outdir: Path, log: Path, **env) -> str:
    return run(["sbatch", "--parsable", *TWO_NODES, "-o", log, REPO / "slurm" / "train-gan-multinode.sbatch", shards,
                outdir, *TRAIN], cwd=log.parent, CONFIG=str(TINY), **env).stdout.strip()


def _wait_for(what: str, cond, timeout: float = 180):
    t0 = time.monotonic()
    while not (got := cond()):
        assert time.monotonic() - t0 < timeout, f"{what} did not happen within {timeout}s"
        time.sleep(0.2)
    return got


def _first_line(path: Path, pattern: str, start: int = 0):
    if not path.is_file():
        return None
    m = re.compile(pattern).search(path.read_text(), start)
    return m


class _Started:
    """The uninterrupted 2-node job and the single-process reference, started together and waited for lazily."""

    def __init__(self, shards: Path, tmp: Path):
        self.tmp = tmp
        self.job = _submit_training(shards, tmp / "runs", tmp / "ddp.out")
        self.single_out = tmp / "single"
        cmd = ["python", "-m", "hpcgan.cli", "train-gan", "--config", TINY, "--data", shards, "--outdir",
               self.single_out, "--batch-gpu", "4", "--no-progress", "--kimg", str(EARLY_KIMG), *STEADY]
        self.single = subprocess.Popen([str(c) for c in cmd], cwd=REPO, env=cluster_env(), stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)

    def two_node(self) -> tuple[str, Path, str]:
        """(job id, run directory, log) of the finished 2-node job."""
        states = wait_jobs([self.job], timeout=400)
        log = (self.tmp / "ddp.out").read_text()
        assert states[self.job] == "COMPLETED", log
        (run_dir,) = (self.tmp / "runs").iterdir()  # one run, not one per rank
        return self.job, run_dir, log

    def single_run(self) -> Path:
        out, _ = self.single.communicate(timeout=400)
        assert self.single.returncode == 0, out
        (run_dir,) = self.single_out.iterdir()
        return run_dir


@pytest.fixture(scope="module")
def started(cluster_slurm, cluster_shards, tmp_path_factory):
    """Both reference runs, started when the first test that needs them starts (they run beside it)."""
    ref = _Started(cluster_shards, tmp_path_factory.mktemp("mn_ddp"))
    yield ref
    if ref.single.poll() is None:
        ref.single.kill()
        ref.single.communicate()


def test_two_node_job_preempted_twice_resumes_exactly(started, cluster_shards, tmp_path):
    """Interrupted twice, the job ends where the uninterrupted 2-node run ended: resume is exact on both ranks."""
    outdir, log = tmp_path / "runs", tmp_path / "preempt.out"
    job = _submit_training(cluster_shards, outdir, log)
    # 1. the time-limit path: SIGUSR2 to the batch shell (what --signal=B:USR2@T does), forwarded to every rank
    _wait_for("the first snapshot", lambda: list(outdir.glob("*/snapshot-*.pt")))
    run(["scancel", "--batch", "--signal=USR2", job])
    first = _wait_for("the first interruption", lambda: _first_line(log, r"interrupted by SIGUSR2: snapshot \S+ at kimg "
                                                                        r"([0-9.]+)"))
    # 2. preemption: `scontrol requeue` while the resumed job trains (SIGTERM to every process on both nodes)
    _wait_for("the resumed run", lambda: _first_line(log, r"tick \d+ kimg", first.end()), timeout=240)
    run(["scontrol", "requeue", job])
    states = wait_jobs([job], timeout=400)
    text = log.read_text()
    assert states[job] == "COMPLETED", text
    history = run(["sacct", "-n", "-X", "-D", "-P", "-j", job, "-o", "State"]).stdout.split()
    assert history.count("REQUEUED") == 2, (history, text)
    assert "SIGTERM" in text[first.end():], text  # the second stop was the preemption's SIGTERM
    # each start: both ranks on their nodes, rank 0 resuming from the newest snapshot
    ranks = _rendezvous_lines(text)
    assert len(ranks) == 6 and {(r, h) for r, h, _ in ranks} == {("0", HOSTS[0]), ("1", HOSTS[1])}, text
    assert text.count("done:") == 1 and float(first.group(1)) < KIMG
    (run_dir,) = (outdir).iterdir()  # the same run continued, no new one
    _assert_same_training(started.two_node()[1], run_dir)


def test_ddp_across_two_nodes_equals_single_process(started):
    job, run_dir, log = started.two_node()
    single = started.single_run()
    assert sorted(_job_nodes(job)[job]) == HOSTS
    # one rank per node, both meeting at the first host of the job's node list
    ranks = sorted(_rendezvous_lines(log))
    assert [(r, h) for r, h, _ in ranks] == [("0", HOSTS[0]), ("1", HOSTS[1])], log
    assert {m for *_, m in ranks} == {HOSTS[0]}
    assert log.count("done:") == 1 and log.count("tick 0 ") == 1, log  # rank 0 alone reports
    assert len(list_snapshots(run_dir)) == 7 and not list(run_dir.glob("*.tmp*"))  # one snapshot per tick
    # 2 ranks x 4 images on two nodes == 1 process x 2 slices of 4, for the same global batch of 8
    early = run_dir / f"snapshot-{round(EARLY_KIMG * 1000):010d}.pt"
    _assert_same_snapshot(load_snapshot(list_snapshots(single)[-1]), load_snapshot(early))


def _rank_pid(job: str, rank: int) -> int | None:
    """The pid of the train-gan process of ``rank`` in ``job`` (the nodes share this machine's pid space)."""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
            if b"train-gan" not in cmd:
                continue
            env = dict(kv.split(b"=", 1) for kv in (p / "environ").read_bytes().split(b"\0") if b"=" in kv)
        except OSError:
            continue
        if env.get(b"SLURM_JOB_ID") == job.encode() and env.get(b"SLURM_PROCID") == str(rank).encode() \
                and b"SLURM_STEP_ID" in env and env[b"SLURM_STEP_ID"] != b"batch":
            return int(p.name)
    return None


def test_a_rank_that_dies_or_hangs_stops_the_job_with_a_clear_error(cluster_slurm, cluster_shards, tmp_path):
    """Rank 1 is killed (SIGKILL) in one job and frozen (SIGSTOP: a hung node) in another; rank 0 reports which
    collective failed and the job ends within seconds of it, FAILED, not at its time limit."""
    jobs = {}
    for how in ("kill", "stop"):
        (tmp_path / how).mkdir()
        jobs[how] = _submit_training(cluster_shards, tmp_path / how / "runs", tmp_path / how / "job.out",
                                     HPCGAN_DIST_TIMEOUT_S="20", HPCGAN_SRUN_WAIT="5")
    t_stop = {}
    for how, sig in (("kill", signal.SIGKILL), ("stop", signal.SIGSTOP)):
        _wait_for(f"{how}: the first snapshot", lambda how=how: list((tmp_path / how / "runs").glob("*/snapshot-*.pt")))
        pid = _wait_for(f"{how}: rank 1's process", lambda how=how: _rank_pid(jobs[how], 1))
        os.kill(pid, sig)
        t_stop[how] = time.monotonic()
    states = wait_jobs(list(jobs.values()), timeout=180)
    ended = time.monotonic()
    for how, job in jobs.items():
        log = (tmp_path / how / "job.out").read_text()
        assert states[job] == "FAILED", (how, log)
        assert "a collective operation with the other ranks failed" in log and "rank 0/2" in log, (how, log)
        assert "Traceback" not in log, (how, log)
        assert "requeueing" not in log, (how, log)  # a failure is not a preemption
        # rank 0 itself exits with the CLI's error status (it does not wait in the process group's teardown)
        assert re.search(r"task 0: Exited with exit code 2", log), (how, log)
    assert ended - t_stop["stop"] < 90  # 20 s collective timeout + 5 s srun --wait, far from the 10 min limit
    assert "Timed out" in (tmp_path / "stop" / "job.out").read_text() or \
        "timed out" in (tmp_path / "stop" / "job.out").read_text().lower()


PRE_FLAGS = ["--classes", "Clear,Opacity", "--resolution", "32", "--test-per-class", "2", "--shard-size", "4"]


def test_preprocess_srun_pmix_across_two_nodes_equals_one_rank(cluster_slurm, tmp_path):
    from hpcgan.data.phantom import generate_phantoms
    from hpcgan.data.preprocess import PreprocessConfig, run_preprocess

    from .test_mpi import _assert_same

    raw = tmp_path / "raw"
    generate_phantoms(raw, 10, seed=11, size=64, annotation_fraction=0.2)
    job = run(["sbatch", "--parsable", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--time=5", "-o",
               tmp_path / "pre.out", REPO / "slurm" / "preprocess-mpi.sbatch", raw, tmp_path / "two", *PRE_FLAGS],
              cwd=tmp_path).stdout.strip()
    run_preprocess(PreprocessConfig(str(raw), str(tmp_path / "one"), classes=["Clear", "Opacity"], resolution=32,
                                    test_per_class=2, shard_size=4, workers=1, progress=False))
    states = wait_jobs([job], timeout=240)
    log = (tmp_path / "pre.out").read_text()
    assert states[job] == "COMPLETED", log
    assert sorted(_job_nodes(job)[job]) == HOSTS
    assert "2 rank(s)" in log and log.count("inputs =") == 1 and "0 problem(s)" in log, log
    from hpcgan.data.shards import read_manifest

    summary = read_manifest(tmp_path / "two")["summary"]
    assert summary["ranks"] == 2
    assert sorted(summary.get("hosts", HOSTS)) == HOSTS
    _assert_same(tmp_path / "one", tmp_path / "two")


def test_bench_scaling_srun_over_one_and_two_nodes(cluster_slurm, tmp_path):
    out = tmp_path / "scaling.json"
    bench = (f"$HPCGAN bench scaling --launcher srun --ranks 1,2 --what both --repeats 1 --steps 2 --warmup 0 "
             f"--batch 4 --channel-base 512 --channel-max 32 --z-dim 32 --images 16 --preprocess-resolution 32 "
             f"--timeout 300 --json {out}")
    job = run(["sbatch", "--parsable", *TWO_NODES, "-o", tmp_path / "bench.out", "--wrap", bench],
              cwd=tmp_path).stdout.strip()
    states = wait_jobs([job], timeout=400)
    log = (tmp_path / "bench.out").read_text()
    assert states[job] == "COMPLETED", log
    res = json.loads(out.read_text())
    rows = {(r["what"], r["mode"], r["ranks"]): r for r in res["rows"]}
    assert set(rows) == {(w, m, n) for w in ("preprocess", "gan-step") for m in ("strong", "weak") for n in (1, 2)}
    for (what, mode, n), r in rows.items():
        assert r["nodes"] == n and r["time_s"] > 0 and r["img_per_s"] > 0, (what, mode, n, r)
    for raw in res["raw"]:
        assert sorted(raw["hosts"]) == HOSTS[:raw["ranks"]], raw["hosts"]  # 1 rank: one node; 2 ranks: both
    g = rows["gan-step", "strong", 2]
    assert g["comm_s"] > 0 and g["sync_bytes_per_step"] > 0  # the gradient all-reduce crossed the nodes
    assert "| strong | 2 | 2 |" in log and "| weak | 2 | 2 |" in log, log  # the table, with its nodes column
    (tmp_path / "table.md").write_text(log)
