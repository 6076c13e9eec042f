"""Scaling benchmarks (``hpcgan bench scaling``): measured strong/weak scaling next to a ring all-reduce model.

Two workloads, each over a list of rank counts N:

* ``preprocess``: :func:`hpcgan.data.preprocess.run_preprocess` over N MPI ranks
  (images/s). Strong scaling keeps the image count, weak scaling gives every rank
  the same count (``images * N`` in all). Every collective of the stage goes
  through :class:`TimedComm`, which puts a barrier before it: the barrier's time is
  *wait* (load imbalance), the collective's own time is *comm*.
* ``gan-step``: the StyleGAN2-ADA training step of :class:`hpcgan.gan.train.Trainer`
  over N DDP ranks (gloo on CPUs, nccl on GPUs). The trainer averages each phase's
  gradients in one all-reduce (``Trainer._sync``); the benchmark wraps that method
  with a barrier in front, so *comm* is the all-reduce alone and *wait* the time the
  rank waited for the slowest one. Strong scaling keeps the global batch (``batch``
  images, ``batch / N`` per rank), weak scaling the per-rank batch (``batch`` per
  rank, ``batch * N`` in all). Data loading is outside the timed step.

Per measurement: time T (per step, or per preprocessing run), split
``T = compute + wait + comm``; throughput (images/s); parallel efficiency against
the smallest rank count N0 measured (normally 1): strong ``E = N0 T0 / (N T_N)``,
weak ``E = T0 / T_N``; each (workload, mode, N) is measured ``repeats`` times and the
median is used, with the min-max spread reported.

The model (:func:`ring_allreduce_seconds`, :func:`predict_step`): a ring all-reduce
of ``b`` bytes over N ranks with link bandwidth ``bw`` (bytes/s) and per-message
latency ``a`` takes

    t_ring(b, N) = 2 (N - 1) / N * b / bw + 2 (N - 1) * a

(a reduce-scatter and an all-gather, each N - 1 messages of b / N bytes). A step
that issues ``k`` all-reduces of ``B`` bytes in all costs
``t_comm = 2 (N-1)/N * B / bw + k * 2 (N-1) * a``; with the single-rank compute time
T1 and an overlap factor ``o`` (the fraction of communication hidden behind
compute; 0 for hpcgan's trainer, which reduces after the backward pass):

    strong: T_N = T1 / N + (1 - o) t_comm,   E = T1 / (N T_N)
    weak:   T_N = T1     + (1 - o) t_comm,   E = T1 / T_N

On nodes of G GPUs with a fast intra-node link (:func:`hierarchical_allreduce_seconds`)
the all-reduce is a ring inside each node (NVLink bandwidth) plus G concurrent rings
across the nodes, each carrying 1/G of the bytes over a 1/G share of the node's link:
``t = t_ring(B, G; nvlink) + 2 (n-1)/n * B / bw_node + 2 (n-1) a_node`` for n nodes.
Preprocessing's collectives (gathers of metadata) are modelled as ring all-gathers,
``(N - 1) (b / bw + a)`` for b bytes per rank.

Launch: the driver (:func:`run_scaling`) starts ``mpirun -np N`` (or ``srun -n N
--mpi=pmix``) of this module's worker (``python -m hpcgan.launch.scaling SPEC``) once
per N; rank 0 of the worker writes the measurements as JSON, which the driver
reads. ``launcher="current"`` measures the job it already runs in (every rank calls
:func:`run_scaling`; N is the job's world size), for a cluster job per node count.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import platform
import re
import socket
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hpcgan import dist as hdist
from hpcgan.atomic import atomic_path, atomic_write_text
from hpcgan.errors import HpcganError

__all__ = ["ScalingConfig", "run_scaling", "ring_allreduce_seconds", "hierarchical_allreduce_seconds",
           "allgather_seconds", "predict_step", "efficiency", "gan_comm_profile", "model_table", "format_markdown",
           "format_model_markdown", "plot", "TimedComm", "WHATS", "MODES", "LAUNCHERS"]

WHATS = ("preprocess", "gan-step")
MODES = ("strong", "weak")
LAUNCHERS = ("mpirun", "srun", "current")


@dataclass
class ScalingConfig:
    """Settings of ``hpcgan bench scaling`` (each field is a flag of the same name)."""

    what: str = "both"  # preprocess | gan-step | both
    ranks: list = field(default_factory=lambda: [1, 2])  # rank counts to measure
    modes: list = field(default_factory=lambda: ["strong", "weak"])
    repeats: int = 2  # measurements of each (workload, mode, N); the median is reported
    launcher: str = "mpirun"  # mpirun | srun | current
    launcher_args: list = field(default_factory=list)  # extra arguments for mpirun / srun
    threads: int = 1  # torch / OpenMP threads per rank
    timeout_s: float = 1800.0  # per launch
    workdir: str | None = None  # inputs and outputs of the runs (default: a temporary folder, removed)

    # gan-step
    preset: str | None = None  # a GAN preset YAML (configs/gan/*.yaml); default: the small CPU networks below
    resolution: int = 32  # image side of the training shards
    batch: int = 8  # images per step on one rank (strong: the global batch; weak: the per-rank batch)
    steps: int = 16  # timed steps (16 = one D-regularisation period: the lazy regularisers weigh in fairly)
    warmup: int = 1  # untimed GAN steps first; 0 also skips the untimed preprocessing run
    channel_base: int | None = None  # network size overrides (default: the preset's, or 1024/64 without preset)
    channel_max: int | None = None
    z_dim: int | None = None
    cond: bool = True  # class-conditional (c_dim = 2), as the study trains
    device: str = "cpu"  # cpu (gloo) | cuda (nccl) | auto
    impl: str = "auto"

    # preprocess
    source: str = "phantom"  # phantom | a dataset root (flat <Class>/*.png or Kaggle <Class>/images/*.png)
    classes: list | None = None  # class folders of `source` (default Clear,Opacity for phantoms, else all folders)
    images: int = 64  # images at one rank (strong: in all; weak: per rank), split evenly over the classes
    preprocess_resolution: int = 64

    # the model's interconnect
    bandwidth_gbps: float = 200.0  # link bandwidth, Gbit/s (per node)
    latency_us: float = 5.0  # per-message latency, microseconds
    overlap: float = 0.0  # fraction of communication hidden behind compute (0: hpcgan's trainer)

    def validate(self) -> None:
        if self.what not in (*WHATS, "both"):
            raise HpcganError(f"--what must be preprocess, gan-step or both, got {self.what!r}")
        if not self.ranks or any(int(n) < 1 for n in self.ranks):
            raise HpcganError(f"--ranks must be positive integers, got {self.ranks}")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise HpcganError(f"--modes must be strong and/or weak, got {self.modes}")
        if self.launcher not in LAUNCHERS:
            raise HpcganError(f"--launcher must be one of {LAUNCHERS}, got {self.launcher!r}")
        for name in ("repeats", "threads", "steps", "batch", "images", "resolution", "preprocess_resolution"):
            if int(getattr(self, name)) < 1:
                raise HpcganError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise HpcganError(f"--warmup must be >= 0, got {self.warmup}")
        if self.bandwidth_gbps <= 0 or self.latency_us < 0 or not 0 <= self.overlap < 1:
            raise HpcganError("--bandwidth must be > 0 Gbit/s, --latency >= 0 us and --overlap in [0, 1)")
        if "gan-step" in self.whats() and "strong" in self.modes:
            bad_n = [n for n in self.ranks if self.batch % int(n)]
            if bad_n:
                raise HpcganError(f"strong scaling splits --batch {self.batch} over the ranks: it must be a multiple "
                                  f"of every rank count (not of {bad_n}); use e.g. --batch {_lcm(self.ranks) * 2}")
        if self.preset is not None and not Path(self.preset).is_file():
            raise HpcganError(f"--preset {self.preset} is not a file (e.g. configs/gan/cpu-smoke.yaml)")
        if self.source != "phantom" and not Path(self.source).is_dir():
            raise HpcganError(f"--source {self.source} is not a folder; give a dataset root with class folders "
                              "or 'phantom'")

    def whats(self) -> list[str]:
        return list(WHATS) if self.what == "both" else [self.what]


def _lcm(values) -> int:
    import math

    out = 1
    for v in values:
        out = out * int(v) // math.gcd(out, int(v))
    return out


# --------------------------------------------------------------------------- the model


def ring_allreduce_seconds(nbytes: float, n: int, bandwidth: float, latency: float) -> float:
    """Ring all-reduce of ``nbytes`` over ``n`` ranks: ``2 (n-1)/n * nbytes / bandwidth + 2 (n-1) * latency``.

    ``bandwidth`` in bytes/s, ``latency`` in s; 0 for one rank.
    """
    if n <= 1:
        return 0.0
    return 2.0 * (n - 1) / n * nbytes / bandwidth + 2.0 * (n - 1) * latency


def hierarchical_allreduce_seconds(nbytes: float, nodes: int, per_node: int, bandwidth: float, latency: float,
                                   intra_bandwidth: float, intra_latency: float) -> float:
    """All-reduce over ``nodes`` nodes of ``per_node`` ranks: a ring inside each node plus rings across nodes.

    ``t_ring(nbytes, per_node; intra) + t_ring(nbytes / per_node, nodes; bandwidth / per_node, latency)``:
    the ``per_node`` concurrent inter-node rings each carry ``1/per_node`` of the bytes over
    an equal share of the node's link, so the second term equals a ring of all the bytes
    at the node's bandwidth. ``bandwidth`` is the node's link (bytes/s).
    """
    intra = ring_allreduce_seconds(nbytes, per_node, intra_bandwidth, intra_latency)
    inter = ring_allreduce_seconds(nbytes / per_node, nodes, bandwidth / per_node, latency)
    return intra + inter


def allgather_seconds(nbytes_per_rank: float, n: int, bandwidth: float, latency: float) -> float:
    """Ring all-gather of ``nbytes_per_rank`` from each of ``n`` ranks: ``(n-1) (b / bandwidth + latency)``."""
    if n <= 1:
        return 0.0
    return (n - 1) * (nbytes_per_rank / bandwidth + latency)


def predict_step(t1: float, n: int, mode: str, comm_seconds: float, overlap: float = 0.0) -> dict:
    """Predicted time and efficiency at ``n`` ranks from the single-rank compute time ``t1``.

    strong: ``T = t1 / n + (1 - overlap) comm``, ``E = t1 / (n T)``;
    weak: ``T = t1 + (1 - overlap) comm``, ``E = t1 / T``.
    """
    compute = t1 / n if mode == "strong" else t1
    step = compute + (1.0 - overlap) * comm_seconds
    return {"compute_s": compute, "comm_s": comm_seconds, "step_s": step, "efficiency": efficiency(t1, step, n, mode)}


def efficiency(t_base: float, t_n: float, n: int, mode: str, n_base: int = 1) -> float:
    """Parallel efficiency: strong ``n0 T0 / (n Tn)``, weak ``T0 / Tn``."""
    if t_n <= 0:
        return float("nan")
    return (n_base * t_base) / (n * t_n) if mode == "strong" else t_base / t_n


def gan_comm_profile(g_params: int, d_params: int, buffers: int, phases: list[list[str]]) -> dict:
    """Bytes and all-reduce calls per step of hpcgan's trainer, averaged over the steps' phase lists.

    Each phase all-reduces one float32 tensor: its network's gradients (G for G phases,
    D for D phases), the tracked buffers and a failure flag, ``4 (params + buffers + 1)`` bytes.
    """
    total = calls = 0
    for step_phases in phases:
        for ph in step_phases:
            total += 4 * ((g_params if ph.startswith("G") else d_params) + buffers + 1)
            calls += 1
    k = max(1, len(phases))
    return {"bytes_per_step": total / k, "allreduce_calls_per_step": calls / k}


def _comm_model(nbytes: float, calls: float, n: int, bw: float, lat: float) -> float:
    """``calls`` ring all-reduces of ``nbytes`` bytes in all (bandwidth term on the total, latency per call)."""
    if n <= 1:
        return 0.0
    return ring_allreduce_seconds(nbytes, n, bw, 0.0) + calls * ring_allreduce_seconds(0.0, n, bw, lat)


def count_parameters(preset: str | None, resolution: int, c_dim: int, overrides: dict | None = None) -> dict:
    """G and D parameter and float-buffer counts of the StyleGAN2 networks a preset builds at ``resolution``."""
    import torch

    from hpcgan.config import load as load_config
    from hpcgan.gan.config import TrainConfig
    from hpcgan.gan.networks import Discriminator, Generator

    cfg = load_config(TrainConfig, preset, {k: v for k, v in (overrides or {}).items() if v is not None})
    common = dict(c_dim=c_dim, img_resolution=resolution, img_channels=1, channel_base=cfg.channel_base,
                  channel_max=cfg.channel_max, conv_clamp=cfg.resolved_conv_clamp(), mapping_layers=cfg.mapping_layers)
    torch.manual_seed(0)
    G = Generator(z_dim=cfg.z_dim, w_dim=cfg.w_dim, **common)
    D = Discriminator(**common)
    nb = sum(b.numel() for m in (G, D) for b in m.buffers() if b.is_floating_point())
    return {"G": sum(p.numel() for p in G.parameters()), "D": sum(p.numel() for p in D.parameters()), "buffers": nb,
            "g_reg_interval": cfg.g_reg_interval, "d_reg_interval": cfg.d_reg_interval, "batch": cfg.batch,
            "pl_weight": cfg.pl_weight}


def _phase_lists(_g_params, _d_params, g_int: int, d_int: int, pl_weight: float, steps: int) -> list[list[str]]:
    out = []
    for s in range(steps):
        ph = ["Gmain"] + (["Greg"] if pl_weight > 0 and s % g_int == 0 else [])
        ph += ["Dmain"] + (["Dreg"] if s % d_int == 0 else [])
        out.append(ph)
    return out


def model_table(preset: str | None, resolution: int = 256, c_dim: int = 2, nodes=(1, 2, 4, 8, 16, 32, 64),
                gpus_per_node: int = 4, step_time_s: float = 0.100, batch_gpu: int = 8, bandwidth_gbps: float = 200.0,
                latency_us: float = 5.0, intra_bandwidth_gbs: float = 200.0, intra_latency_us: float = 2.0,
                overlap: float = 0.0, strong_batch: int | None = None) -> dict:
    """Predicted multi-node scaling of a GAN preset (no measurement): weak and strong rows per node count.

    ``step_time_s`` is the single-GPU step time at ``batch_gpu`` images (compute only);
    per-GPU time is taken as proportional to the per-GPU batch (strong rows). Bytes per
    step follow :func:`gan_comm_profile` over one D-regularisation period. The all-reduce
    is :func:`hierarchical_allreduce_seconds` (intra-node ring at ``intra_bandwidth_gbs``
    GB/s, inter-node at ``bandwidth_gbps`` Gbit/s per node); the flat ring over all GPUs at
    the node bandwidth is given too. Strong rows keep the preset's global batch
    (``strong_batch``) and stop where a GPU would get less than one image.
    """
    counts = count_parameters(preset, resolution, c_dim)
    phases = _phase_lists(counts["G"], counts["D"], counts["g_reg_interval"], counts["d_reg_interval"],
                          counts["pl_weight"], counts["d_reg_interval"])
    prof = gan_comm_profile(counts["G"], counts["D"], counts["buffers"], phases)
    B, k = prof["bytes_per_step"], prof["allreduce_calls_per_step"]
    bw, lat = bandwidth_gbps * 1e9 / 8, latency_us * 1e-6
    ibw, ilat = intra_bandwidth_gbs * 1e9, intra_latency_us * 1e-6
    strong_batch = strong_batch or counts["batch"]
    per_image = step_time_s / batch_gpu
    rows = []
    for n in nodes:
        p = n * gpus_per_node
        hier = (hierarchical_allreduce_seconds(B, n, gpus_per_node, bw, 0.0, ibw, 0.0)
                + k * hierarchical_allreduce_seconds(0.0, n, gpus_per_node, bw, lat, ibw, ilat))
        flat = _comm_model(B, k, p, bw, lat)
        weak = predict_step(step_time_s, p, "weak", hier, overlap)
        row = {"nodes": n, "gpus": p, "comm_hier_s": hier, "comm_flat_s": flat,
               "weak": {"global_batch": batch_gpu * p, "step_s": weak["step_s"], "efficiency": weak["efficiency"],
                        "efficiency_flat": predict_step(step_time_s, p, "weak", flat, overlap)["efficiency"],
                        "img_per_s": batch_gpu * p / weak["step_s"]}}
        if strong_batch % p == 0:
            t1 = per_image * strong_batch  # one GPU doing the whole global batch
            st = predict_step(t1, p, "strong", hier, overlap)
            row["strong"] = {"global_batch": strong_batch, "batch_gpu": strong_batch // p, "step_s": st["step_s"],
                             "efficiency": st["efficiency"], "img_per_s": strong_batch / st["step_s"]}
        rows.append(row)
    return {"preset": preset, "resolution": resolution, "c_dim": c_dim, "params": counts, **prof,
            "gpus_per_node": gpus_per_node, "step_time_s": step_time_s, "batch_gpu": batch_gpu,
            "bandwidth_gbps": bandwidth_gbps, "latency_us": latency_us, "intra_bandwidth_gbs": intra_bandwidth_gbs,
            "intra_latency_us": intra_latency_us, "overlap": overlap, "strong_batch": strong_batch, "rows": rows}


def format_model_markdown(m: dict) -> str:
    p = m["params"]
    lines = [
        f"Model: StyleGAN2 {m['resolution']} px ({Path(m['preset']).name if m['preset'] else 'defaults'}), "
        f"G {p['G'] / 1e6:.2f} M + D {p['D'] / 1e6:.2f} M parameters; {m['bytes_per_step'] / 2**20:.1f} MiB and "
        f"{m['allreduce_calls_per_step']:.3f} all-reduces per step (fp32, lazy regularisation every "
        f"{p['g_reg_interval']}/{p['d_reg_interval']} steps); {m['gpus_per_node']} GPUs per node, "
        f"{m['step_time_s'] * 1e3:.0f} ms per GPU step at {m['batch_gpu']} images; links {m['bandwidth_gbps']:g} "
        f"Gbit/s + {m['latency_us']:g} us between nodes, {m['intra_bandwidth_gbs']:g} GB/s + "
        f"{m['intra_latency_us']:g} us inside; overlap {m['overlap']:g}",
        "",
        "| nodes | GPUs | all-reduce / step (hier.) | weak: global batch | weak: step | weak: img/s | weak: efficiency "
        "| weak: eff. flat ring | strong (batch " + str(m["strong_batch"]) + "): per GPU | strong: step | strong: efficiency |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in m["rows"]:
        w, s = r["weak"], r.get("strong")
        st = (f"{s['batch_gpu']} | {s['step_s'] * 1e3:.0f} ms | {s['efficiency']:.2f}" if s else "- | - | -")
        lines.append(f"| {r['nodes']} | {r['gpus']} | {r['comm_hier_s'] * 1e3:.1f} ms | {w['global_batch']} | "
                     f"{w['step_s'] * 1e3:.0f} ms | {w['img_per_s']:.0f} | {w['efficiency']:.2f} | "
                     f"{w['efficiency_flat']:.2f} | {st} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the worker (runs on every rank)


class TimedComm:
    """An mpi4py communicator whose collectives are timed: a barrier first (wait), then the call (comm).

    Offers what :func:`hpcgan.data.preprocess.run_preprocess` uses: ``Get_rank``,
    ``Get_size``, ``allgather``, ``bcast``, ``barrier``. ``calls`` lists
    ``(name, payload bytes)`` of every collective (the pickled object of this rank).
    """

    def __init__(self, comm):
        self.comm = comm
        self.wait = self.time = 0.0
        self.calls: list[tuple[str, int]] = []

    def Get_rank(self) -> int:  # noqa: N802 - mpi4py's names
        return self.comm.Get_rank()

    def Get_size(self) -> int:  # noqa: N802
        return self.comm.Get_size()

    def _timed(self, name: str, fn, payload):
        t0 = time.perf_counter()
        self.comm.Barrier()
        t1 = time.perf_counter()
        out = fn()
        t2 = time.perf_counter()
        self.wait += t1 - t0
        self.time += t2 - t1
        self.calls.append((name, len(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))))
        return out

    def allgather(self, obj):
        return self._timed("allgather", lambda: self.comm.allgather(obj), obj)

    def bcast(self, obj, root: int = 0):
        return self._timed("bcast", lambda: self.comm.bcast(obj, root=root), obj)

    def barrier(self):
        return self._timed("barrier", self.comm.Barrier, None)


def _mpi_world():
    """COMM_WORLD of mpi4py (also for one process), or None when mpi4py is missing."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD


def _mpi_self():
    """mpi4py's COMM_SELF (a communicator of this process alone), or None without mpi4py."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_SELF


def _preprocess_task(t: dict, comm) -> dict:
    from hpcgan.data.preprocess import PreprocessConfig, run_preprocess

    tc = TimedComm(comm)
    out = Path(t["out"])
    if tc.Get_rank() == 0 and out.exists():
        shutil.rmtree(out)  # a fresh output: a re-run would resume and skip the work
    comm.Barrier()
    cfg = PreprocessConfig(**t["preprocess"])
    comm.Barrier()
    t0 = time.perf_counter()
    summary = run_preprocess(cfg, comm=tc)
    total = time.perf_counter() - t0
    return {"seconds": total, "comm_s": tc.time, "wait_s": tc.wait, "inputs": summary["inputs"],
            "written": summary["written"], "collectives": tc.calls}


def _gan_task(t: dict) -> dict:
    import torch

    from hpcgan.gan.config import TrainConfig
    from hpcgan.gan.train import Trainer

    cfg = TrainConfig(**t["train"])
    trainer = Trainer(cfg, run_dir=Path(t["run_dir"]))
    dev = trainer.device
    acc = {"wait": 0.0, "comm": 0.0, "calls": 0, "bytes": 0}

    def sync_point():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    if trainer.ddp:
        orig = trainer._sync

        def timed_sync(params, bufs, failed):
            sync_point()
            t0 = time.perf_counter()
            torch.distributed.barrier()
            t1 = time.perf_counter()
            out = orig(params, bufs, failed)
            sync_point()
            t2 = time.perf_counter()
            acc["wait"] += t1 - t0
            acc["comm"] += t2 - t1
            acc["calls"] += 1
            acc["bytes"] += 4 * (sum(p.grad.numel() for p in params if p.grad is not None)
                                 + sum(b.numel() for b in (bufs or [])) + 1)
            return out

        trainer._sync = timed_sync  # instrument this trainer's gradient all-reduce (instance attribute)

    loader = iter(torch.utils.data.DataLoader(trainer.dataset, batch_sampler=trainer.batches, num_workers=0))
    phases: list[list[str]] = []
    times = []
    for i in range(t["warmup"] + t["steps"]):
        reals, labels = next(loader)
        if i == t["warmup"]:
            acc.update(wait=0.0, comm=0.0, calls=0, bytes=0)
        sync_point()
        hdist.barrier()
        t0 = time.perf_counter()
        if i >= t["warmup"]:
            phases.append(trainer.loss.phases_for_step(trainer.step))
        trainer.train_step(reals, labels)
        sync_point()
        times.append(time.perf_counter() - t0)
    timed = times[t["warmup"]:]
    n_g = sum(p.numel() for p in trainer.G.parameters())
    n_d = sum(p.numel() for p in trainer.D.parameters())
    n_buf = sum(b.numel() for b in trainer._tracked)
    prof = gan_comm_profile(n_g, n_d, n_buf, phases)
    k = len(timed)
    return {"seconds": sum(timed), "step_s": sum(timed) / k, "comm_s": acc["comm"] / k, "wait_s": acc["wait"] / k,
            "sync_calls_per_step": acc["calls"] / k, "sync_bytes_per_step": acc["bytes"] / k,
            "bytes_per_step": prof["bytes_per_step"], "allreduce_calls_per_step": prof["allreduce_calls_per_step"],
            "params_G": n_g, "params_D": n_d, "global_batch": cfg.batch, "batch_gpu": trainer.batch_gpu,
            "device": str(dev), "backend": hdist.info().backend}


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
            results.append({**{k: t[k] for k in ("what", "mode", "ranks", "repeat")}, **merged})
    if hdist.is_rank0():
        info = hdist.info().to_dict()
        for r in results:
            r["dist"] = info
        if spec.get("out"):
            atomic_write_text(spec["out"], json.dumps(results, indent=1))
        return results
    return None


# --------------------------------------------------------------------------- the driver


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _prepare_gan_data(cfg: ScalingConfig, work: Path) -> Path:
    """32+32 phantom images preprocessed to ``cfg.resolution`` px shards (made once per workdir)."""
    from hpcgan.data.phantom import generate_phantoms
    from hpcgan.data.preprocess import PreprocessConfig, run_preprocess

    out = work / f"gan-shards-{cfg.resolution}"
    if (out / "manifest.json").is_file():
        return out
    src = work / "gan-phantoms"
    if not (src / "Clear").is_dir():
        generate_phantoms(src, 32, seed=11, size=max(64, cfg.resolution))
    # this process alone (MPI's COMM_SELF), also when it is rank 0 of a job (launcher current)
    run_preprocess(PreprocessConfig(str(src), str(out), classes=["Clear", "Opacity"], resolution=cfg.resolution,
                                    test_per_class=2, val_fraction=0.0, workers=1, progress=False), comm=_mpi_self())
    return out


def _class_folders(root: Path, classes: list | None) -> list[str]:
    if classes:
        missing = [c for c in classes if not (root / c).is_dir()]
        if missing:
            raise HpcganError(f"--source {root} has no class folder(s) {missing}")
        return list(classes)
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(found) < 1:
        raise HpcganError(f"--source {root} holds no class folders")
    return found


def _natural_key(p: Path):
    import re

    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def _subset_source(root: Path, classes: list[str], total: int, dest: Path) -> Path:
    """``dest`` with symlinks to the first ``total / len(classes)`` images of each class (masks too)."""
    per = max(1, -(-total // len(classes)))
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    for c in classes:
        kaggle = (root / c / "images").is_dir()
        folder = root / c / "images" if kaggle else root / c
        files = sorted((p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")), key=_natural_key)
        if len(files) < per:
            raise HpcganError(f"{folder} has {len(files)} images but the benchmark needs {per} per class; "
                              "lower --images")
        target = tmp / c / "images" if kaggle else tmp / c
        target.mkdir(parents=True)
        for f in files[:per]:
            (target / f.name).symlink_to(f.resolve())
            mask = root / c / "masks" / f.name
            if kaggle and mask.is_file():
                (tmp / c / "masks").mkdir(exist_ok=True)
                (tmp / c / "masks" / f.name).symlink_to(mask.resolve())
    tmp.rename(dest)
    return dest


def _preprocess_sources(cfg: ScalingConfig, work: Path) -> tuple[Path, list[str]]:
    if cfg.source == "phantom":
        from hpcgan.data.phantom import generate_phantoms

        root, classes = work / "pre-phantoms", ["Clear", "Opacity"]
        need = -(-cfg.images * max(int(n) for n in cfg.ranks) // 2)
        marker = root / f".n{need}"
        if not marker.exists():
            if root.exists():
                shutil.rmtree(root)
            generate_phantoms(root, need, seed=7, annotation_fraction=0.1)
            marker.touch()
        return root, classes
    root = Path(cfg.source)
    return root, _class_folders(root, cfg.classes)


def _train_overrides(cfg: ScalingConfig) -> dict:
    from hpcgan.config import load as load_config
    from hpcgan.gan.config import TrainConfig

    base = {"channel_base": 1024, "channel_max": 64, "z_dim": 64, "w_dim": 64, "mapping_layers": 2} \
        if cfg.preset is None else {}
    given = {"channel_base": cfg.channel_base, "channel_max": cfg.channel_max, "z_dim": cfg.z_dim,
             "w_dim": cfg.z_dim}
    base.update({k: v for k, v in given.items() if v is not None})
    tc = load_config(TrainConfig, cfg.preset, {**base, "device": cfg.device, "impl": cfg.impl, "aug": "ada",
                                               "aug_p": 0.2, "progress": False, "metric_every": 0, "workers": 0,
                                               "cond": cfg.cond, "r1_gamma": 1.0})
    return dataclasses.asdict(tc)


def _tasks_for(cfg: ScalingConfig, n: int, work: Path, gan_data: Path | None, pre_src) -> list[dict]:
    tasks = []
    modes = ["strong"] if n == 1 else list(cfg.modes)  # one rank: strong and weak are the same run
    train = _train_overrides(cfg) if gan_data is not None else None
    for rep in range(cfg.repeats):
        for what in cfg.whats():
            for mode in modes:
                t = {"what": what, "mode": mode, "ranks": n, "repeat": rep}
                if what == "gan-step":
                    batch = cfg.batch if mode == "strong" else cfg.batch * n
                    t.update(warmup=cfg.warmup, steps=cfg.steps, run_dir=str(work / f"gan-run-{mode}-n{n}"),
                             train={**train, "data": str(gan_data), "outdir": str(work / "gan-runs"), "batch": batch,
                                    "batch_gpu": batch // n, "mbstd_group": min(train["mbstd_group"], batch // n),
                                    "kimg": 1e6})
                else:
                    root, classes = pre_src
                    total = cfg.images if mode == "strong" else cfg.images * n
                    src = _subset_source(root, classes, total, work / f"pre-src-{total}")
                    t.update(out=str(work / f"pre-out-{mode}-n{n}"),
                             preprocess={"source": str(src), "out": str(work / f"pre-out-{mode}-n{n}"),
                                         "classes": classes, "resolution": cfg.preprocess_resolution,
                                         "test_per_class": 1, "val_fraction": 0.1, "shard_size": 64,
                                         "workers": 1, "progress": False})
                tasks.append(t)
    return tasks


def _launch_command(cfg: ScalingConfig, n: int, spec_path: Path) -> list[str]:
    worker = [sys.executable, "-m", "hpcgan.launch.scaling", str(spec_path)]
    if cfg.launcher == "mpirun":
        exe = shutil.which("mpirun")
        if exe is None:
            raise HpcganError("--launcher mpirun but mpirun is not on PATH (apt-get install openmpi-bin, or "
                              "module load openmpi); or use --launcher srun / current")
        root = ["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        return [exe, *root, "--oversubscribe", "--bind-to", "none", "-np", str(n), *cfg.launcher_args, *worker]
    exe = shutil.which("srun")
    if exe is None:
        raise HpcganError("--launcher srun but srun is not on PATH: run inside a SLURM allocation "
                          "(salloc/sbatch), or use --launcher mpirun")
    nodes = _srun_nodes(n)
    return [exe, *([f"--nodes={nodes}"] if nodes else []), f"--ntasks={n}", "--mpi=pmix", *cfg.launcher_args, *worker]


def _srun_nodes(n: int) -> int | None:
    """Nodes for ``n`` ranks packed onto the allocation's nodes (``ceil(n / tasks per node)``), or None if unknown.

    Without ``--nodes`` srun spreads a step over every node of the allocation: 4 ranks in a
    4-node allocation would run one per node, and the benchmark would measure inter-node
    communication where it means to measure one node.
    """
    def first_int(*names: str) -> int | None:  # "4", or "4(x2),3": the first count
        for name in names:
            m = re.match(r"\s*(\d+)", os.environ.get(name, ""))
            if m:
                return int(m.group(1))
        return None

    per_node = first_int("SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
    have = first_int("SLURM_JOB_NUM_NODES", "SLURM_NNODES")
    if not per_node or not have:
        return None
    return max(1, min(have, -(-n // per_node)))


def _launch(cfg: ScalingConfig, n: int, tasks: list[dict], work: Path) -> list[dict]:
    spec_path, out_path = work / f"spec-n{n}.json", work / f"result-n{n}.json"
    if out_path.exists():
        out_path.unlink()
    atomic_write_text(spec_path, json.dumps({"tasks": tasks, "threads": cfg.threads, "out": str(out_path),
                                             "warmup": cfg.warmup}))
    cmd = _launch_command(cfg, n, spec_path)
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg.threads), MKL_NUM_THREADS=str(cfg.threads))
    env["PYTHONPATH"] = os.pathsep.join([str(_repo_root()), *filter(None, [env.get("PYTHONPATH")])])
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)  # the workers find their own rendezvous
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=cfg.timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise HpcganError(f"{' '.join(cmd[:6])} ... did not finish within --timeout {cfg.timeout_s:g} s") from exc
    if proc.returncode != 0 or not out_path.is_file():
        tail = (proc.stderr or proc.stdout or "")[-3000:]
        raise HpcganError(f"the scaling worker on {n} rank(s) failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return json.loads(out_path.read_text())


def _median_spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def aggregate(cfg: ScalingConfig, raw: list[dict]) -> list[dict]:
    """One row per (workload, mode, N): medians over the repeats, spread, efficiency and the model's prediction."""
    bw, lat = cfg.bandwidth_gbps * 1e9 / 8, cfg.latency_us * 1e-6
    rows = []
    for what in cfg.whats():
        for mode in cfg.modes:
            group = {}
            for r in raw:
                if r["what"] != what:
                    continue
                if r["mode"] == mode or (r["ranks"] == 1 and r["mode"] == "strong"):
                    group.setdefault(r["ranks"], []).append(r)
            if not group:
                continue
            ns = sorted(group)
            n0 = ns[0]
            key = "step_s" if what == "gan-step" else "seconds"

            def stats(n):  # called only within this iteration (group, key)
                reps = group[n]  # noqa: B023
                t, lo, hi = _median_spread([x[key] for x in reps])  # noqa: B023
                comm = statistics.median(x["comm_s"] for x in reps)
                wait = statistics.median(x["wait_s"] for x in reps)
                return reps, t, lo, hi, comm, wait

            base_reps, t0, *_ = stats(n0)
            base_compute = t0 - statistics.median(x["comm_s"] for x in base_reps) - \
                statistics.median(x["wait_s"] for x in base_reps)
            t1_compute = base_compute * n0 if mode == "strong" else base_compute  # one rank's compute
            for n in ns:
                reps, t, lo, hi, comm, wait = stats(n)
                r0 = reps[0]
                row = {"what": what, "mode": mode, "ranks": n, "nodes": r0.get("nodes", 1), "repeats": len(reps),
                       "time_s": t, "time_min_s": lo,
                       "time_max_s": hi, "comm_s": comm, "wait_s": wait, "compute_s": max(0.0, t - comm - wait),
                       "efficiency": efficiency(t0, t, n, mode, n0), "all_s": [x[key] for x in reps]}
                if what == "gan-step":
                    row["images"] = r0["global_batch"]
                    row["batch_gpu"] = r0["batch_gpu"]
                    row["img_per_s"] = r0["global_batch"] / t
                    row["bytes_per_step"] = r0["bytes_per_step"]
                    row["allreduce_calls_per_step"] = r0["allreduce_calls_per_step"]
                    row["sync_bytes_per_step"] = r0["sync_bytes_per_step"]
                    pred_comm = _comm_model(r0["bytes_per_step"], r0["allreduce_calls_per_step"], n, bw, lat)
                    if n > 1 and comm > 0:  # the bus bandwidth the measured all-reduces achieved
                        row["measured_busbw_gbs"] = 2 * (n - 1) / n * r0["sync_bytes_per_step"] / comm / 1e9
                else:
                    row["images"] = r0["inputs"]
                    row["img_per_s"] = r0["inputs"] / t
                    sizes = r0.get("collective_max_bytes", [])
                    pred_comm = sum(allgather_seconds(b, n, bw, lat) for b in sizes)
                    row["collectives"] = len(sizes)
                    row["collective_bytes"] = int(sum(sizes))
                pred = predict_step(t1_compute, n, mode, pred_comm, cfg.overlap)
                row["predicted"] = {"comm_s": pred_comm, "time_s": pred["step_s"], "efficiency": pred["efficiency"]}
                rows.append(row)
    return rows


def _loadavg() -> float | None:
    """The 1-minute load average (other jobs on a shared node show up here), or None."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run_scaling(cfg: ScalingConfig) -> dict | None:
    """Measure, aggregate and model; returns the result on rank 0 (the driver), None on other ranks.

    Result: ``{"meta", "config", "rows", "raw"}``; ``rows`` as :func:`aggregate` makes them.
    """
    cfg.validate()
    cfg.ranks = sorted({int(n) for n in cfg.ranks})
    current = cfg.launcher == "current"
    if current:
        cfg.ranks = [hdist.world_size()]
        hdist.init_process_group(backend="gloo" if cfg.device == "cpu" else None)
    own_tmp = cfg.workdir is None
    work = None
    if hdist.is_rank0() or not current:
        work = Path(cfg.workdir) if cfg.workdir else Path(tempfile.mkdtemp(prefix="hpcgan-scaling-"))
        work.mkdir(parents=True, exist_ok=True)
    if current:
        work = Path(hdist.broadcast_object(str(work) if work else None))
    t_start = time.time()
    load_start = _loadavg()
    raw: list[dict] = []
    try:
        gan_data = pre_src = None
        if hdist.is_rank0():
            from hpcgan.config import write_resolved

            write_resolved(cfg, work, "scaling-config.yaml")
            if "gan-step" in cfg.whats():
                gan_data = _prepare_gan_data(cfg, work)
            if "preprocess" in cfg.whats():
                pre_src = _preprocess_sources(cfg, work)
        if current:
            gan_data, pre_src = hdist.broadcast_object((gan_data, pre_src))
            n = cfg.ranks[0]
            tasks = _tasks_for(cfg, n, work, gan_data, pre_src) if hdist.is_rank0() else None
            tasks = hdist.broadcast_object(tasks)
            got = run_worker({"tasks": tasks, "threads": cfg.threads, "out": None, "warmup": cfg.warmup})
            if not hdist.is_rank0():
                return None
            raw += got
        else:
            for n in cfg.ranks:
                raw += _launch(cfg, n, _tasks_for(cfg, n, work, gan_data, pre_src), work)
        rows = aggregate(cfg, raw)
    finally:
        if own_tmp and work is not None and hdist.is_rank0():
            shutil.rmtree(work, ignore_errors=True)
    import torch

    meta = {"host": platform.node(), "machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "launcher": cfg.launcher, "threads_per_rank": cfg.threads, "load_avg_start": load_start,
            "load_avg_end": _loadavg(), "started": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)), "seconds": round(time.time() - t_start, 1),
            "model": "ring all-reduce: 2(N-1)/N * bytes/bw + 2(N-1)*latency per call; "
                     "strong T_N = T1/N + (1-overlap) comm, weak T_N = T1 + (1-overlap) comm"}
    return {"meta": meta, "config": dataclasses.asdict(cfg), "rows": rows, "raw": raw}


# --------------------------------------------------------------------------- reporting


def format_markdown(result: dict) -> str:
    """The measurements (medians, min-max over repeats) next to the model's predictions, as markdown."""
    c, m = result["config"], result["meta"]
    lines = [f"Scaling on {m['host']} ({m['cpus']} CPUs, {m['threads_per_rank']} thread(s) per rank, launcher "
             f"{m['launcher']}, torch {m['torch']}, 1-min load average {m.get('load_avg_start')} at the start and "
             f"{m.get('load_avg_end')} at the end); {c['repeats']} repeat(s), median [min-max]. Model interconnect: "
             f"{c['bandwidth_gbps']:g} Gbit/s, {c['latency_us']:g} us, overlap {c['overlap']:g}.", ""]
    for what in WHATS:
        rows = [r for r in result["rows"] if r["what"] == what]
        if not rows:
            continue
        if what == "gan-step":
            lines += [f"GAN training step ({c['resolution']} px, {rows[0]['bytes_per_step'] / 2**20:.2f} MiB and "
                      f"{rows[0]['allreduce_calls_per_step']:.2f} gradient all-reduces per step; {c['steps']} timed "
                      f"steps after {c['warmup']} warm-up):", "",
                      "| mode | ranks | nodes | global batch | time/step (s) | compute | wait | comm | img/s "
                      "| efficiency | model: comm | model: time/step | model: efficiency | measured bus bw |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
                      "| ---: |"]
        else:
            lines += ["Preprocessing (MPI ranks, one worker process each):", "",
                      "| mode | ranks | nodes | images | time (s) | compute | wait | comm | img/s | efficiency "
                      "| model: comm | model: time | model: efficiency | collectives |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
                      "| ---: |"]
        for r in rows:
            p = r["predicted"]
            extra = (f"{r['measured_busbw_gbs']:.2f} GB/s" if "measured_busbw_gbs" in r else "-") \
                if what == "gan-step" else f"{r['collectives']} ({r['collective_bytes'] / 1024:.0f} KiB)"
            lines.append(
                f"| {r['mode']} | {r['ranks']} | {r.get('nodes', 1)} | {r['images']} | {r['time_s']:.3f} [{r['time_min_s']:.3f}-"
                f"{r['time_max_s']:.3f}] | {r['compute_s']:.3f} | {r['wait_s']:.4f} | {r['comm_s']:.4f} | "
                f"{r['img_per_s']:.1f} | {r['efficiency']:.2f} | {p['comm_s'] * 1e3:.2f} ms | {p['time_s']:.3f} | "
                f"{p['efficiency']:.2f} | {extra} |")
        lines.append("")
    return "\n".join(lines)


def plot(result: dict, path: str | os.PathLike) -> Path:
    """PNG: throughput, efficiency (measured vs model) and the time split per workload and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    whats = [w for w in WHATS if any(r["what"] == w for r in rows)]
    fig, axes = plt.subplots(len(whats), 3, figsize=(15, 4.2 * len(whats)), squeeze=False)
    for i, what in enumerate(whats):
        ax_t, ax_e, ax_s = axes[i]
        for mode, color in (("strong", "tab:blue"), ("weak", "tab:orange")):
            rs = [r for r in rows if r["what"] == what and r["mode"] == mode]
            if not rs:
                continue
            ns = [r["ranks"] for r in rs]
            ax_t.errorbar(ns, [r["img_per_s"] for r in rs], marker="o", color=color, label=mode,
                          yerr=[[r["img_per_s"] - r["images"] / r["time_max_s"] for r in rs],
                                [r["images"] / r["time_min_s"] - r["img_per_s"] for r in rs]], capsize=3)
            ax_e.plot(ns, [r["efficiency"] for r in rs], marker="o", color=color, label=f"{mode} measured")
            ax_e.plot(ns, [r["predicted"]["efficiency"] for r in rs], ls="--", marker="x", color=color,
                      label=f"{mode} model")
        labels, comp, wait, comm = [], [], [], []
        for r in rows:
            if r["what"] == what:
                labels.append(f"{r['mode'][0]}{r['ranks']}")
                comp.append(r["compute_s"])
                wait.append(r["wait_s"])
                comm.append(r["comm_s"])
        x = range(len(labels))
        ax_s.bar(x, comp, label="compute", color="tab:green")
        ax_s.bar(x, wait, bottom=comp, label="wait", color="tab:gray")
        ax_s.bar(x, comm, bottom=[a + b for a, b in zip(comp, wait)], label="comm", color="tab:red")
        ax_s.set_xticks(list(x), labels)
        unit = "s per step" if what == "gan-step" else "s per run"
        ax_t.set(title=f"{what}: throughput", xlabel="ranks", ylabel="images/s")
        ax_e.set(title=f"{what}: parallel efficiency", xlabel="ranks", ylabel="efficiency", ylim=(0, 1.3))
        ax_s.set(title=f"{what}: time split (s=strong, w=weak; ranks)", ylabel=unit)
        for ax in (ax_t, ax_e):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({r["ranks"] for r in rows}), [str(n) for n in sorted({r["ranks"] for r in rows})])
            ax.grid(alpha=0.3)
        for ax in (ax_t, ax_e, ax_s):
            ax.legend(fontsize=8)
    m = result["meta"]
    fig.suptitle(f"hpcgan scaling on {m['host']} ({m['cpus']} CPUs, {m['threads_per_rank']} thread/rank, "
                 f"{m['launcher']})", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def write_json(result: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=1))
    return path


def scaling_main(overrides: dict, json_path: str | None = None, plot_path: str | None = None) -> int:
    """CLI entry: config from flags, run, print the markdown table on rank 0, write JSON/PNG when asked."""
    from hpcgan.config import load

    cfg = load(ScalingConfig, None, overrides)
    result = run_scaling(cfg)
    if result is None:
        return 0
    print(format_markdown(result))
    if json_path:
        print(f"wrote {write_json(result, json_path)}")
    if plot_path:
        print(f"wrote {plot(result, plot_path)}")
    return 0


def model_main(kwargs: dict, json_path: str | None = None) -> int:
    """CLI entry of ``--model-only``: the predicted multi-node table of a preset."""
    m = model_table(**kwargs)
    print(format_model_markdown(m))
    if json_path:
        print(f"wrote {write_json(m, json_path)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m hpcgan.launch.scaling SPEC.json  (the worker; use `hpcgan bench scaling`)",
              file=sys.stderr)
        sys.exit(2)
    try:
        run_worker(json.loads(Path(sys.argv[1]).read_text()))
    except HpcganError as exc:
        print(f"{hdist.log_prefix()}scaling worker: error: {exc}", file=sys.stderr)
        sys.exit(2)
