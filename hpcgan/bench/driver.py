"""The driver of ``hpcgan bench scaling``: its settings, the inputs, one launch of the rank worker per rank count
(mpirun, srun or the current job), and the aggregation of the measurements next to the model."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hpcgan import dist as hdist
from hpcgan.atomic import atomic_write_text
from hpcgan.bench.model import MODES, WHATS, _comm_model, allgather_seconds, efficiency, model_table, predict_step
from hpcgan.bench.report import format_markdown, format_model_markdown, plot, write_json
from hpcgan.bench.worker import run_worker
from hpcgan.config import csv_list, int_list, setting
from hpcgan.dist import DEVICES
from hpcgan.errors import HpcganError
from hpcgan.ops._native import IMPLS

LAUNCHERS = ("mpirun", "srun", "current")


def _modes(value: str) -> list[str]:
    """``--modes``: strong, weak or both."""
    return list(MODES) if value == "both" else [value]


@dataclass
class ScalingConfig:
    """Settings of ``hpcgan bench scaling`` (each field is a flag of the same name unless ``setting`` names another)."""

    what: str = setting("both", choices=(*WHATS, "both"), help="workload to scale")
    ranks: list = setting([1, 2], type=int_list, help="comma-separated rank counts")
    modes: list = setting(list(MODES), choices=(*MODES, "both"), convert=_modes, default_text="both",
                          help="strong: fixed total work split over the ranks; weak: fixed work per rank")
    repeats: int = setting(2, help="measurements per point; the median is reported with the min-max spread")
    launcher: str = setting("mpirun", choices=LAUNCHERS,
                            help="how to start N ranks: mpirun -np N, srun -n N --mpi=pmix (inside an allocation), "
                            "or current (this job's ranks)")
    launcher_args: list = setting([], convert=str.split, help="extra arguments for mpirun/srun, one string (e.g. "
                                  "'--overcommit' or '--map-by node')")
    threads: int = setting(1, help="torch/OpenMP threads per rank")
    timeout_s: float = setting(1800.0, flag="--timeout", help="seconds per launch")
    workdir: str | None = setting(None, default_text="a temporary one, removed", help="folder for the inputs and runs")

    # gan-step
    preset: str | None = setting(None, default_text="small CPU networks (channel_base 1024, channel_max 64)",
                                 help="GAN preset YAML for the networks (e.g. configs/gan/cpu-smoke.yaml)")
    resolution: int = setting(32, default_text="32; --model-only: 256", help="GAN image side in pixels")
    batch: int = setting(8, help="GAN images per step on one rank: strong keeps this global batch, weak gives every "
                         "rank this many")
    steps: int = setting(16, default_text="16: one D-regularisation period", help="timed GAN steps per measurement")
    warmup: int = setting(1, help="untimed GAN steps before them")
    channel_base: int | None = setting(None, type=int, help="override the networks' channel_base")
    channel_max: int | None = setting(None, type=int, help="override the networks' channel_max")
    z_dim: int | None = setting(None, type=int, help="override z_dim and w_dim")
    cond: bool = setting(True, flag="--uncond", const=False, default_text="conditional on 2 classes",
                         help="unconditional networks")
    device: str = setting("cpu", choices=DEVICES, help="GAN device: cpu uses gloo, cuda nccl")
    impl: str = setting("auto", choices=IMPLS, help="op implementation")

    # preprocess
    source: str = setting("phantom", default_text="phantom",
                          help="preprocessing input: 'phantom' (generated) or a dataset root with class folders (flat "
                          "<Class>/*.png such as kaggle224, or Kaggle <Class>/images)")
    classes: list | None = setting(None, type=csv_list, default_text="all", help="comma-separated class folders of "
                                   "--source (phantoms: Clear,Opacity)")
    images: int = setting(64, help="preprocessing images at one rank: strong keeps the total, weak gives every rank "
                          "this many (split evenly over the classes)")
    preprocess_resolution: int = setting(64, help="preprocessing output side in pixels")

    # the model's interconnect
    bandwidth_gbps: float = setting(200.0, flag="--bandwidth", help="model: interconnect bandwidth per node in Gbit/s")
    latency_us: float = setting(5.0, flag="--latency", help="model: per-message latency in microseconds")
    overlap: float = setting(0.0, default_text="0: hpcgan all-reduces after the backward pass",
                             help="model: fraction of communication hidden behind compute, in [0, 1)")

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


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _mpi_self():
    """mpi4py's COMM_SELF (a communicator of this process alone), or None without mpi4py."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_SELF


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
    worker = [sys.executable, "-m", "hpcgan.bench.worker", str(spec_path)]
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
            group = _group(raw, what, mode)
            if not group:
                continue
            ns = sorted(group)
            n0 = ns[0]
            key = "step_s" if what == "gan-step" else "seconds"
            # the baseline: the smallest N's time and compute (time - comm - wait)
            base_reps, t0, *_ = _rep_stats(group[n0], key)
            base_compute = t0 - statistics.median(x["comm_s"] for x in base_reps) - \
                statistics.median(x["wait_s"] for x in base_reps)
            t1_compute = base_compute * n0 if mode == "strong" else base_compute  # one rank's compute
            for n in ns:
                reps, t, lo, hi, comm, wait = _rep_stats(group[n], key)
                r0 = reps[0]
                row = {"what": what, "mode": mode, "ranks": n, "nodes": r0.get("nodes", 1), "repeats": len(reps),
                       "time_s": t, "time_min_s": lo,
                       "time_max_s": hi, "comm_s": comm, "wait_s": wait, "compute_s": max(0.0, t - comm - wait),
                       "efficiency": efficiency(t0, t, n, mode, n0), "all_s": [x[key] for x in reps]}
                # the workload's own numbers and the model's communication time
                if what == "gan-step":
                    pred_comm = _gan_step_fields(row, r0, n, comm, bw, lat)
                else:
                    pred_comm = _preprocess_fields(row, r0, n, bw, lat)
                pred = predict_step(t1_compute, n, mode, pred_comm, cfg.overlap)
                row["predicted"] = {"comm_s": pred_comm, "time_s": pred["step_s"], "efficiency": pred["efficiency"]}
                rows.append(row)
    return rows


def _group(raw: list[dict], what: str, mode: str) -> dict[int, list[dict]]:
    """The repeats of one workload and mode by rank count (the one-rank run of strong scaling counts for both)."""
    group: dict[int, list[dict]] = {}
    for r in raw:
        if r["what"] != what:
            continue
        if r["mode"] == mode or (r["ranks"] == 1 and r["mode"] == "strong"):
            group.setdefault(r["ranks"], []).append(r)
    return group


def _rep_stats(reps: list[dict], key: str):
    """(reps, median time, min, max, median comm, median wait) over the repeats of one N."""
    t, lo, hi = _median_spread([x[key] for x in reps])
    comm = statistics.median(x["comm_s"] for x in reps)
    wait = statistics.median(x["wait_s"] for x in reps)
    return reps, t, lo, hi, comm, wait


def _gan_step_fields(row: dict, r0: dict, n: int, comm: float, bw: float, lat: float) -> float:
    """The GAN step's images, bytes and all-reduce counts into ``row``; returns the model's comm seconds."""
    row["images"] = r0["global_batch"]
    row["batch_gpu"] = r0["batch_gpu"]
    row["img_per_s"] = r0["global_batch"] / row["time_s"]
    row["bytes_per_step"] = r0["bytes_per_step"]
    row["allreduce_calls_per_step"] = r0["allreduce_calls_per_step"]
    row["sync_bytes_per_step"] = r0["sync_bytes_per_step"]
    if n > 1 and comm > 0:  # the bus bandwidth the measured all-reduces achieved
        row["measured_busbw_gbs"] = 2 * (n - 1) / n * r0["sync_bytes_per_step"] / comm / 1e9
    return _comm_model(r0["bytes_per_step"], r0["allreduce_calls_per_step"], n, bw, lat)


def _preprocess_fields(row: dict, r0: dict, n: int, bw: float, lat: float) -> float:
    """Preprocessing's images and collectives into ``row``; returns the model's comm seconds (its all-gathers)."""
    row["images"] = r0["inputs"]
    row["img_per_s"] = r0["inputs"] / row["time_s"]
    sizes = r0.get("collective_max_bytes", [])
    row["collectives"] = len(sizes)
    row["collective_bytes"] = int(sum(sizes))
    return sum(allgather_seconds(b, n, bw, lat) for b in sizes)


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
    work = _workdir(cfg, current)
    t_start = time.time()
    load_start = _loadavg()
    try:
        raw = _measure(cfg, current, work)
        if raw is None:
            return None
        rows = aggregate(cfg, raw)
    finally:
        if own_tmp and work is not None and hdist.is_rank0():
            shutil.rmtree(work, ignore_errors=True)
    return {"meta": _meta(cfg, t_start, load_start), "config": dataclasses.asdict(cfg), "rows": rows, "raw": raw}


def _workdir(cfg: ScalingConfig, current: bool) -> Path | None:
    """The working folder (``cfg.workdir`` or a new temporary one), made by the driver; with the current launch
    every rank gets rank 0's."""
    work = None
    if hdist.is_rank0() or not current:
        work = Path(cfg.workdir) if cfg.workdir else Path(tempfile.mkdtemp(prefix="hpcgan-scaling-"))
        work.mkdir(parents=True, exist_ok=True)
    if current:
        work = Path(hdist.broadcast_object(str(work) if work else None))
    return work


def _measure(cfg: ScalingConfig, current: bool, work: Path) -> list[dict] | None:
    """Every measurement's raw numbers: in this launch's ranks (``current``) or one launch per rank count;
    None on the ranks other than 0 of the current launch."""
    # the inputs, made once by rank 0: the resolved config, the GAN's shards, preprocessing's sources
    gan_data = pre_src = None
    if hdist.is_rank0():
        from hpcgan.config import write_resolved

        write_resolved(cfg, work, "scaling-config.yaml")
        if "gan-step" in cfg.whats():
            gan_data = _prepare_gan_data(cfg, work)
        if "preprocess" in cfg.whats():
            pre_src = _preprocess_sources(cfg, work)
    if not current:
        raw: list[dict] = []
        for n in cfg.ranks:
            raw += _launch(cfg, n, _tasks_for(cfg, n, work, gan_data, pre_src), work)
        return raw
    # the current launch: every rank runs the worker in this process
    gan_data, pre_src = hdist.broadcast_object((gan_data, pre_src))
    n = cfg.ranks[0]
    tasks = _tasks_for(cfg, n, work, gan_data, pre_src) if hdist.is_rank0() else None
    tasks = hdist.broadcast_object(tasks)
    got = run_worker({"tasks": tasks, "threads": cfg.threads, "out": None, "warmup": cfg.warmup})
    return list(got) if hdist.is_rank0() else None


def _meta(cfg: ScalingConfig, t_start: float, load_start: float | None) -> dict:
    """Where and how the benchmark ran: host, CPUs, torch, launcher, load average, start time and duration."""
    import torch

    return {"host": platform.node(), "machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "launcher": cfg.launcher, "threads_per_rank": cfg.threads, "load_avg_start": load_start,
            "load_avg_end": _loadavg(), "started": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)), "seconds": round(time.time() - t_start, 1),
            "model": "ring all-reduce: 2(N-1)/N * bytes/bw + 2(N-1)*latency per call; "
                     "strong T_N = T1/N + (1-overlap) comm, weak T_N = T1 + (1-overlap) comm"}


def scaling_main(overrides: dict, json_path: str | None = None, plot_path: str | None = None) -> int:
    """CLI entry: config from flags, run, print the markdown table on rank 0, write JSON/PNG when asked."""
    from hpcgan.config import load

    scaling_and_write(load(ScalingConfig, None, overrides), json_path, plot_path)
    return 0


def scaling_and_write(cfg: ScalingConfig, json_path: str | None = None, plot_path: str | None = None) -> list[str]:
    """:func:`run_scaling`, its markdown table on rank 0 and the JSON/PNG when asked; returns the paths written
    (none on the other ranks of a ``--launcher current`` run)."""
    result = run_scaling(cfg)
    if result is None:  # not rank 0 of a --launcher current run
        return []
    print(format_markdown(result))
    written = []
    if json_path:
        written.append(str(write_json(result, json_path)))
        print(f"wrote {written[-1]}")
    if plot_path:
        written.append(str(plot(result, plot_path)))
        print(f"wrote {written[-1]}")
    return written


def model_main(kwargs: dict, json_path: str | None = None) -> int:
    """CLI entry of ``--model-only``: the predicted multi-node table of a preset."""
    model_and_write(kwargs, json_path)
    return 0


def model_and_write(kwargs: dict, json_path: str | None = None) -> list[str]:
    """:func:`model_table` of ``kwargs``, printed, and its JSON when asked; returns the paths written."""
    m = model_table(**kwargs)
    print(format_model_markdown(m))
    if not json_path:
        return []
    path = str(write_json(m, json_path))
    print(f"wrote {path}")
    return [path]
