"""The rank worker of ``hpcgan bench scaling``: runs on every rank of one launch and times each measurement.

``python -m hpcgan.bench.worker SPEC.json`` (started by :mod:`hpcgan.bench.driver` under
mpirun or srun, or called in-process by ``--launcher current``): preprocessing over MPI
ranks with every collective timed by a timed :class:`hpcgan.dist.Comm`, the GAN step over DDP ranks with
the trainer's gradient all-reduce timed through its public ``sync_wrapper`` hook; rank 0
gathers every rank's numbers and writes them as JSON.
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import sys
import time
from pathlib import Path

from hpcgan import dist as hdist
from hpcgan.atomic import atomic_write_text
from hpcgan.bench.model import gan_comm_profile
from hpcgan.errors import HpcganError


def _mpi_world():
    """COMM_WORLD of mpi4py (also for one process), or None when mpi4py is missing."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD


def _preprocess_task(t: dict, comm) -> dict:
    from hpcgan.data.preprocess import PreprocessConfig, run_preprocess

    tc = hdist.Comm.over(comm, timed=True)  # a barrier before each collective: wait, then comm
    out = Path(t["out"])
    if tc.rank == 0 and out.exists():
        shutil.rmtree(out)  # a fresh output: a re-run would resume and skip the work
    comm.Barrier()
    cfg = PreprocessConfig(**t["preprocess"])
    comm.Barrier()
    t0 = time.perf_counter()
    summary = run_preprocess(cfg, comm=tc)
    total = time.perf_counter() - t0
    return {"seconds": total, "comm_s": tc.comm_s, "wait_s": tc.wait_s, "inputs": summary["inputs"],
            "written": summary["written"], "collectives": tc.calls}


def _gan_task(t: dict) -> dict:
    """The GAN step: ``warmup`` untimed then ``steps`` timed train steps, the gradient all-reduces timed apart."""
    from hpcgan.gan.config import TrainConfig
    from hpcgan.gan.train import Trainer

    cfg = TrainConfig(**t["train"])
    trainer = Trainer(cfg, run_dir=Path(t["run_dir"]))
    acc = {"wait": 0.0, "comm": 0.0, "calls": 0, "bytes": 0}
    sync_point = _sync_point(trainer.device)
    if trainer.ddp:
        trainer.sync_wrapper = _timed_sync(acc, sync_point)
    timed, phases = _time_steps(trainer, t["warmup"], t["steps"], acc, sync_point)
    n_g = sum(p.numel() for p in trainer.G.parameters())
    n_d = sum(p.numel() for p in trainer.D.parameters())
    n_buf = sum(b.numel() for b in trainer.tracked_buffers)
    prof = gan_comm_profile(n_g, n_d, n_buf, phases)
    k = len(timed)
    return {"seconds": sum(timed), "step_s": sum(timed) / k, "comm_s": acc["comm"] / k, "wait_s": acc["wait"] / k,
            "sync_calls_per_step": acc["calls"] / k, "sync_bytes_per_step": acc["bytes"] / k,
            "bytes_per_step": prof["bytes_per_step"], "allreduce_calls_per_step": prof["allreduce_calls_per_step"],
            "params_G": n_g, "params_D": n_d, "global_batch": cfg.batch, "batch_gpu": trainer.batch_gpu,
            "device": str(trainer.device), "backend": hdist.info().backend}


def _sync_point(dev):
    """A function that waits for the device's queued work (CUDA; nothing to wait for on a CPU)."""
    import torch

    def sync_point():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    return sync_point


def _timed_sync(acc: dict, sync_point):
    """The trainer's ``sync_wrapper`` hook around each gradient all-reduce: a barrier (``acc["wait"]``), then the
    all-reduce (``acc["comm"]``), counting calls and bytes."""
    import torch

    def timed_sync(do_sync, nbytes: int) -> bool:
        sync_point()
        t0 = time.perf_counter()
        torch.distributed.barrier()
        t1 = time.perf_counter()
        out = do_sync()
        sync_point()
        t2 = time.perf_counter()
        acc["wait"] += t1 - t0
        acc["comm"] += t2 - t1
        acc["calls"] += 1
        acc["bytes"] += nbytes
        return out

    return timed_sync


def _time_steps(trainer, warmup: int, steps: int, acc: dict, sync_point) -> tuple[list[float], list[list[str]]]:
    """Seconds of each timed step (after ``warmup`` untimed ones; ``acc`` is reset when timing starts) and the loss
    phases each timed step ran."""
    import torch

    loader = iter(torch.utils.data.DataLoader(trainer.dataset, batch_sampler=trainer.batches, num_workers=0))
    phases: list[list[str]] = []
    times = []
    for i in range(warmup + steps):
        reals, labels = next(loader)
        if i == warmup:
            acc.update(wait=0.0, comm=0.0, calls=0, bytes=0)
        sync_point()
        hdist.barrier()
        t0 = time.perf_counter()
        if i >= warmup:
            phases.append(trainer.loss.phases_for_step(trainer.step))
        trainer.train_step(reals, labels)
        sync_point()
        times.append(time.perf_counter() - t0)
    return times[warmup:], phases


def run_worker(spec: dict) -> list[dict] | None:
    """Run the spec's measurements on every rank of this job; returns them on rank 0 (None elsewhere).

    Every measurement's numbers are gathered from all ranks and averaged (``seconds``,
    ``comm_s``, ``wait_s``, ...); ``per_rank`` keeps each rank's own.
    """
    import torch

    torch.set_num_threads(int(spec["threads"]))
    comm = _mpi_world()
    results = []
    first_pre = next((t for t in spec["tasks"] if t["what"] == "preprocess"), None)
    if first_pre is not None and comm is not None and spec.get("warmup", 1) > 0:
        _preprocess_task(first_pre, comm)  # untimed: imports, first-use costs and the file cache warm up
    for t in spec["tasks"]:
        if t["what"] == "preprocess":
            if comm is None or comm.Get_size() != hdist.world_size():
                raise HpcganError("the preprocessing benchmark runs over MPI ranks: start it with mpirun or "
                                  "srun --mpi=pmix, with mpi4py installed (not torchrun)")
            r = _preprocess_task(t, comm)
            r["host"] = socket.gethostname()
            rows = comm.allgather(r)
        else:
            r = _gan_task(t)
            r["host"] = socket.gethostname()
            rows = hdist.all_gather_object(r)
        if hdist.is_rank0():
            results.append(_merge_ranks(t, r, rows))
    if hdist.is_rank0():
        info = hdist.info().to_dict()
        for r in results:
            r["dist"] = info
        if spec.get("out"):
            atomic_write_text(spec["out"], json.dumps(results, indent=1))
        return results
    return None


def _merge_ranks(t: dict, r: dict, rows: list[dict]) -> dict:
    """One measurement's row from every rank's numbers (``rows``; ``r`` is rank 0's): times averaged over ranks,
    each rank's own in ``per_rank``, the hosts, and for preprocessing the collectives' sizes (largest rank's)."""
    merged = dict(rows[0])
    merged["hosts"] = [x["host"] for x in rows]  # where each rank ran
    merged["nodes"] = len(set(merged["hosts"]))
    merged.pop("host", None)
    for key in ("seconds", "step_s", "comm_s", "wait_s"):
        if key in merged:
            merged[key] = statistics.fmean(x[key] for x in rows)
    merged["per_rank"] = [{k: x[k] for k in ("seconds", "comm_s", "wait_s") if k in x} for x in rows]
    merged.pop("collectives", None)
    if t["what"] == "preprocess":
        merged["collective_bytes"] = [b for _, b in r["collectives"]]
        merged["collective_max_bytes"] = [max(x["collectives"][i][1] for x in rows)
                                          for i in range(len(r["collectives"]))]
    return {**{k: t[k] for k in ("what", "mode", "ranks", "repeat")}, **merged}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m hpcgan.bench.worker SPEC.json  (the worker; use `hpcgan bench scaling`)",
              file=sys.stderr)
        sys.exit(2)
    try:
        run_worker(json.loads(Path(sys.argv[1]).read_text()))
    except HpcganError as exc:
        print(f"{hdist.log_prefix()}scaling worker: error: {exc}", file=sys.stderr)
        hdist.exit_process(2)
    hdist.exit_process(0)
