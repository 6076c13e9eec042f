"""The experiment grid: classifiers x augmentation modes x class sets x runs (``hpcgan experiment``).

An :class:`ExperimentConfig` (YAML, loaded by :func:`load_experiment`) names the real
shards (``data``), the generator outputs (``gan_data``), the grid (``models``,
``augs``, ``class_sets``, ``runs``) and the classifier's scale settings. Expansion and
execution are separate:

* :func:`expand` turns the config into a deterministic list of :class:`Task`; task
  ``index`` is its position. Order: class set, then model, then aug, then run
  (run varies fastest). Run ``r`` (1-based) trains with seed ``r`` in every cell, so
  two cells with the same run number differ only in the factor being varied (a paired
  design: cell A's run r and cell B's run r share data order and initialisation).
* :func:`run_task` runs one task (what a SLURM array element does) and
  :func:`run_local` runs all missing tasks here, one after another or in ``parallel``
  spawned worker processes, then :func:`aggregate`.

Experiment directory ``<outdir>/<name>/``::

    experiment.yaml           resolved config (a re-run with a changed config is refused)
    tasks/<task-name>/        one hpcgan.classify run directory per task (test_metrics.json = done)
    logs/<task-name>.log      output of a task run by a worker process, traceback of a failure
    image_metrics.json        compare_shards(gan_data vs data) once per gan_data folder
    results.json, results.csv per-task rows and per-cell mean / std (aggregate)
    report/                   hpcgan report

Std over runs is the sample standard deviation (ddof=1; 0 with one run).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hpcgan.atomic import atomic_write_text
from hpcgan.classify.config import AMPS, AUGS, MODELS
from hpcgan.classify.evaluate import SPLITS as EXTERNAL_SPLITS
from hpcgan.config import load as load_config
from hpcgan.config import progress_setting, setting
from hpcgan.errors import HpcganError
from hpcgan.metrics.fid import FID_METHODS

__all__ = ["ExperimentConfig", "Task", "load_experiment", "expand", "experiment_dir", "prepare_dir", "run_task",
           "run_local", "aggregate", "ensure_image_metrics", "list_text", "experiment_main", "METRIC_KEYS",
           "experiment_config_from_dict", "read_experiment_config"]

GAN_AUGS = ("gan", "classic+gan")
# Settings that change how, not what, is computed: they may differ between runs into one directory.
EXECUTION_KEYS = ("workers", "device", "progress", "outdir")
# Settings that only add to a finished experiment (external test sets): changing them keeps the tasks.
ADDITIVE_KEYS = ("external", "external_split")
# Per-task numbers carried into results.json / results.csv.
METRIC_KEYS = ("accuracy", "balanced_accuracy", "tpr", "tnr", "fpr", "fnr", "precision", "f1", "roc_auc")
# Per-task numbers of each external set (hpcgan.classify.evaluate), carried as external_<set>_<key>.
EXTERNAL_KEYS = ("sensitivity", "specificity", "accuracy", "balanced_accuracy", "roc_auc", "n")
RESULT_FILE = "test_metrics.json"


@dataclass
class ExperimentConfig:
    """One experiment grid; every field is a YAML key (see configs/paper.yaml), outdir and progress also flags."""

    name: str = "experiment"          # the experiment directory is <outdir>/<name>
    data: str = ""                    # real shards (hpcgan preprocess output)
    gan_data: list | None = None      # hpcgan generate output folders (needed by aug gan / classic+gan)
    outdir: str = setting("experiments", help="parent folder of the experiment directory (overrides the config's "
                          "outdir; the directory is OUTDIR/<name>)")
    models: list = field(default_factory=lambda: ["inception_v3", "efficientnet_b0"])
    augs: list = field(default_factory=lambda: ["none", "classic", "gan"])
    runs: int = 4                     # run r = 1..runs trains with seed r (same seeds in every cell)
    class_sets: list | None = None    # list of class-name lists (2 or 4 each); None: all classes of the manifest
    # the classifier's scale settings (hpcgan.classify.config.ClassifyConfig fields of the same name)
    epochs: int = 6
    batch: int = 32
    lr: float = 1e-4
    image_size: int | None = None
    pretrained: str = "auto"
    limit_per_class: int | None = None
    gan_n: int = 2000                 # gan modes: synthetic images added; rebalance: copies of real ones
    gan_classes: list | None = None
    positive_class: str | None = None
    balance: str = "none"             # classifier's class-balance correction: none | weight | oversample
    select: str = "balanced"          # validation score picking the tested epoch: accuracy | balanced | auc
    # external test sets, {name: hpcgan preprocess output}: every finished task's best model is tested on each
    # (hpcgan.classify.evaluate, <task>/external_metrics.json); external_split: all (every split) or test
    external: dict | None = None
    external_split: str = "all"
    workers: int = 0
    device: str = "auto"
    amp: str = "off"                  # classifier mixed precision: off | bf16 | fp16 (ClassifyConfig.amp)
    channels_last: bool = False       # classifier memory layout (ClassifyConfig.channels_last)
    progress: str | bool = progress_setting()  # true/false (older configs) = auto/off
    # image metrics of gan_data against data (hpcgan.metrics.compare.compare_shards), stored as image_metrics.json
    image_metrics: bool = True
    metrics: str = "fid,kid,rmse,psnr,sre,sam,ssim,memorisation"
    feature_net: str = "auto"
    metrics_num: int | None = None    # cap of every image set for the metrics (None: all)
    fid_method: str = "eigh"          # sqrtm | eigh (same FID to rounding; eigh is much faster on CPUs)


@dataclass
class Task:
    index: int
    name: str          # e.g. "efficientnet_b0-classic-COVID,Normal-run1"
    outdir: str        # the classify run directory
    classify: dict     # ClassifyConfig keyword arguments
    model: str = ""
    aug: str = ""
    class_set: str = ""
    run: int = 0
    seed: int = 0


def _as_list(v, what: str) -> list:
    if isinstance(v, str):
        v = [s.strip() for s in v.split(",") if s.strip()]
    if not isinstance(v, (list, tuple)) or not v:
        raise HpcganError(f"experiment setting {what} must be a non-empty list, got {v!r}")
    return list(v)


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    """Check values and normalise lists; returns ``cfg`` (modified in place)."""
    _validate_grid(cfg)
    _validate_classifier(cfg)
    _validate_external(cfg)
    _validate_metrics(cfg)
    return cfg


def _validate_grid(cfg: ExperimentConfig) -> None:
    """The grid's axes: name, data, models, augs, runs, gan_data, class sets, gan classes."""
    if not cfg.name or not re.fullmatch(r"[A-Za-z0-9_.+-]+", str(cfg.name)):
        raise HpcganError(f"experiment name {cfg.name!r} must be non-empty letters, digits, _ . + - (a folder name)")
    if not cfg.data:
        raise HpcganError("experiment setting data is required: a folder written by `hpcgan preprocess`")
    cfg.models = _as_list(cfg.models, "models")
    cfg.augs = _as_list(cfg.augs, "augs")
    bad = [m for m in cfg.models if m not in MODELS]
    if bad:
        raise HpcganError(f"experiment setting models: unknown {bad}; choose from {list(MODELS)}")
    bad = [a for a in cfg.augs if a not in AUGS]
    if bad:
        raise HpcganError(f"experiment setting augs: unknown {bad}; choose from {list(AUGS)}")
    for what, v in (("models", cfg.models), ("augs", cfg.augs)):
        if len(set(v)) != len(v):
            raise HpcganError(f"experiment setting {what} lists a value twice: {v}")
    if not isinstance(cfg.runs, int) or isinstance(cfg.runs, bool) or cfg.runs < 1:
        raise HpcganError(f"experiment setting runs must be an integer >= 1, got {cfg.runs!r}")
    if cfg.gan_data is not None:
        cfg.gan_data = [str(g) for g in _as_list(cfg.gan_data, "gan_data")]
    if any(a in GAN_AUGS for a in cfg.augs) and not cfg.gan_data:
        raise HpcganError(f"augs {[a for a in cfg.augs if a in GAN_AUGS]} need gan_data: the output folder(s) of "
                          "`hpcgan generate`; set gan_data or drop those modes")
    if cfg.class_sets is not None:
        sets = []
        for s in _as_list(cfg.class_sets, "class_sets"):
            s = _as_list(s, "class_sets entry")
            if len(s) not in (2, 4) or len(set(s)) != len(s):
                raise HpcganError(f"experiment setting class_sets: {s} must name 2 or 4 different classes")
            sets.append([str(c) for c in s])
        if len({tuple(s) for s in sets}) != len(sets):
            raise HpcganError(f"experiment setting class_sets lists a set twice: {sets}")
        cfg.class_sets = sets
    if cfg.gan_classes is not None:
        cfg.gan_classes = [str(c) for c in _as_list(cfg.gan_classes, "gan_classes")]


def _validate_classifier(cfg: ExperimentConfig) -> None:
    """The classifier's settings: sizes, lr, amp, pretrained, balance, select."""
    for what in ("epochs", "batch", "gan_n"):
        v = getattr(cfg, what)
        if not isinstance(v, int) or v < (0 if what == "gan_n" else 1):
            raise HpcganError(f"experiment setting {what} must be a positive integer, got {v!r}")
    if not (isinstance(cfg.lr, (int, float)) and cfg.lr > 0):
        raise HpcganError(f"experiment setting lr must be > 0, got {cfg.lr!r}")
    if cfg.amp not in AMPS:
        raise HpcganError(f"experiment setting amp must be one of {', '.join(AMPS)}, got {cfg.amp!r}")
    if cfg.pretrained not in ("auto", "yes", "no"):
        raise HpcganError(f"experiment setting pretrained must be auto, yes or no, got {cfg.pretrained!r}")
    if cfg.balance not in ("none", "weight", "oversample"):
        raise HpcganError(f"experiment setting balance must be none, weight or oversample, got {cfg.balance!r}")
    if cfg.select not in ("accuracy", "balanced", "auc"):
        raise HpcganError(f"experiment setting select must be accuracy, balanced or auc, got {cfg.select!r}")


def _validate_external(cfg: ExperimentConfig) -> None:
    """The external test sets (``{name: shard folder}``) and their split."""
    if cfg.external is not None:
        if not isinstance(cfg.external, dict) or not cfg.external:
            raise HpcganError(f"experiment setting external must map set names to shard folders, e.g. "
                              f"{{hannover: shards/hannover}}; got {cfg.external!r}")
        bad = [k for k in cfg.external if not re.fullmatch(r"[A-Za-z0-9_.+-]+", str(k))]
        if bad:
            raise HpcganError(f"experiment setting external: set names {bad} must be letters, digits, _ . + -")
        cfg.external = {str(k): str(v) for k, v in cfg.external.items()}
    if cfg.external_split not in EXTERNAL_SPLITS:
        raise HpcganError(f"experiment setting external_split must be all or test, got {cfg.external_split!r}")


def _validate_metrics(cfg: ExperimentConfig) -> None:
    """The image metrics' settings."""
    if cfg.fid_method not in FID_METHODS:
        raise HpcganError(f"experiment setting fid_method must be sqrtm or eigh, got {cfg.fid_method!r}")
    if cfg.metrics_num is not None and cfg.metrics_num < 2:
        raise HpcganError(f"experiment setting metrics_num must be >= 2 (or null), got {cfg.metrics_num}")


def load_experiment(path, overrides: dict | None = None) -> ExperimentConfig:
    """The experiment config from YAML ``path`` and non-None ``overrides``; paths made absolute.

    ``data``, ``gan_data`` and ``outdir`` are resolved against the current directory
    (relative ones in the YAML are relative to where the command runs), so worker
    processes and SLURM array tasks started elsewhere see the same folders.
    """
    cfg = validate(load_config(ExperimentConfig, path, overrides))
    cfg.data = str(Path(cfg.data).resolve())
    cfg.outdir = str(Path(cfg.outdir).resolve())
    if cfg.gan_data:
        cfg.gan_data = [str(Path(g).resolve()) for g in cfg.gan_data]
    if cfg.external:
        cfg.external = {k: str(Path(v).resolve()) for k, v in cfg.external.items()}
    return cfg


def experiment_config_from_dict(d: dict) -> ExperimentConfig:
    """The validated :class:`ExperimentConfig` of a mapping (an experiment.yaml as read, a worker's copy).

    Paths are taken as they are (no resolving against the current directory, unlike :func:`load_experiment`).
    """
    return validate(load_config(ExperimentConfig, None, d))


def experiment_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.outdir) / cfg.name


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_,.+-]", "_", s)


def expand(cfg: ExperimentConfig) -> list[Task]:
    """The grid as tasks, in a fixed order (class set, model, aug, run); ``index`` = position.

    Task name: ``<model>-<aug>-<classes joined by ','>-run<r>`` (classes ``all`` when
    no class sets are given; characters other than letters, digits and ``_,.+-``
    become ``_``); seed = run number r.
    """
    cfg = validate(cfg)
    root = experiment_dir(cfg) / "tasks"
    tasks: list[Task] = []
    for cset in cfg.class_sets or [None]:
        cname = ",".join(cset) if cset else "all"
        for model in cfg.models:
            for aug in cfg.augs:
                for r in range(1, cfg.runs + 1):
                    name = _safe(f"{model}-{aug}-{cname}-run{r}")
                    # rebalance reads gan_data too: it copies as many real images per class as gan adds
                    gan = aug in GAN_AUGS or (aug == "rebalance" and bool(cfg.gan_data))
                    kw = dict(data=cfg.data, outdir=str(root / name), model=model, aug=aug,
                              gan_data=list(cfg.gan_data) if gan else None, gan_n=cfg.gan_n,
                              gan_classes=list(cfg.gan_classes) if (gan or aug == "rebalance") and cfg.gan_classes
                              else None, balance=cfg.balance, select=cfg.select,
                              classes=list(cset) if cset else None, positive_class=cfg.positive_class,
                              epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr, image_size=cfg.image_size,
                              pretrained=cfg.pretrained, limit_per_class=cfg.limit_per_class, seed=r,
                              workers=cfg.workers, device=cfg.device, amp=cfg.amp,
                              channels_last=cfg.channels_last, progress=cfg.progress)
                    tasks.append(Task(index=len(tasks), name=name, outdir=kw["outdir"], classify=kw, model=model,
                                      aug=aug, class_set=cname, run=r, seed=r))
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise HpcganError("two tasks of the grid have the same folder name (class names that differ only in "
                          "characters other than letters, digits and _,.+-); rename the classes")
    return tasks


def list_text(cfg: ExperimentConfig) -> str:
    """One line per task (``index name``) and the count: what ``--list`` prints."""
    tasks = expand(cfg)
    lines = [f"{t.index}\t{t.name}" for t in tasks]
    lines.append(f"{len(tasks)} tasks (sbatch --array=0-{len(tasks) - 1}); experiment directory {experiment_dir(cfg)}")
    return "\n".join(lines)


def _comparable(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in EXECUTION_KEYS + ADDITIVE_KEYS}


def prepare_dir(cfg: ExperimentConfig) -> Path:
    """Make the experiment directory and write experiment.yaml; refuse a changed config.

    Checks that ``data`` and every ``gan_data`` folder holds a manifest.json.
    """
    for what, d in [("data", cfg.data)] + [("gan_data", g) for g in (cfg.gan_data or [])]:
        if not (Path(d) / "manifest.json").is_file():
            raise HpcganError(f"experiment setting {what}: {d} has no manifest.json; give a folder written by "
                              f"`hpcgan {'preprocess' if what == 'data' else 'generate'}`")
    exp = experiment_dir(cfg)
    exp.mkdir(parents=True, exist_ok=True)
    path = exp / "experiment.yaml"
    new = dataclasses.asdict(cfg)
    if path.is_file():
        try:
            old = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise HpcganError(f"{path} is not valid YAML ({exc}); delete it or use another experiment name") from exc
        a, b = _comparable(old), _comparable(new)
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if changed:
            raise HpcganError(
                f"{exp} was made with a different config: " + "; ".join(
                    f"{k}: was {a.get(k)!r}, now {b.get(k)!r}" for k in changed)
                + ". Its results would mix two experiments: use another name (or --outdir), or delete the folder")
        if old == new:
            return exp  # array tasks on many nodes: do not rewrite an identical file
    atomic_write_text(path, yaml.safe_dump(new, sort_keys=False))
    return exp


def _read_result(task: Task) -> dict | None:
    p = Path(task.outdir) / RESULT_FILE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_task(cfg: ExperimentConfig, index: int, threads: int | None = None) -> dict:
    """Run task ``index`` of ``expand(cfg)``; returns its test metrics.

    Idempotent: a task whose ``test_metrics.json`` exists is not run again (its
    result is returned). ``threads`` sets torch's intra-op threads for the task.
    """
    tasks = expand(cfg)
    if not isinstance(index, int) or not 0 <= index < len(tasks):
        raise HpcganError(f"--task-index {index} is out of range: the grid has {len(tasks)} tasks (0-{len(tasks) - 1})")
    prepare_dir(cfg)
    task = tasks[index]
    done = _read_result(task)
    if done is not None:
        ensure_task_external(cfg, task)
        return done
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    from hpcgan.classify.config import ClassifyConfig
    from hpcgan.classify.train import run_classify

    res = run_classify(ClassifyConfig(**task.classify))
    ensure_task_external(cfg, task)
    return res


def ensure_task_external(cfg: ExperimentConfig, task: Task) -> dict:
    """The external-set entries of a finished task (``external_metrics.json``), evaluated where missing."""
    if not cfg.external:
        return {}
    from hpcgan.classify.evaluate import ensure_external

    return ensure_external(task.outdir, cfg.external, split=cfg.external_split, device=cfg.device)


def _log_path(cfg: ExperimentConfig, task: Task) -> Path:
    return experiment_dir(cfg) / "logs" / f"{task.name}.log"


def _worker(cfg_dict: dict, index: int, threads: int, log: str) -> dict:
    """Run one task in a worker process with its output in ``log``; never raises."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            run_task(experiment_config_from_dict(cfg_dict), index, threads=threads)
            return {"index": index, "ok": True}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
            traceback.print_exc()
            return {"index": index, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_local(cfg: ExperimentConfig, parallel: int = 1) -> dict:
    """Run every task without a result here, then :func:`aggregate`; returns a summary.

    ``parallel`` > 1 runs tasks in that many spawned worker processes, each with
    ``cores // parallel`` torch threads and its output in ``logs/<task>.log``.
    A failing task does not stop the others; the summary's ``failed`` lists
    ``{index, name, log, error}`` (the caller exits non-zero when it is not empty).
    Returns ``{"experiment_dir", "n_tasks", "skipped", "ran", "failed", "results"}``.
    """
    if not isinstance(parallel, int) or parallel < 1:
        raise HpcganError(f"--parallel must be an integer >= 1, got {parallel!r}")
    tasks = expand(cfg)
    exp = prepare_dir(cfg)
    todo = [t for t in tasks if _read_result(t) is None]
    skipped = len(tasks) - len(todo)
    failed: list[dict] = []
    ran: list[str] = []
    from hpcgan.progress import Progress

    bar = Progress(total=len(todo), desc=f"{cfg.name}: tasks", unit="task", mode=cfg.progress if todo else "off")
    if skipped:
        print(f"{exp}: {skipped} of {len(tasks)} tasks already have results; running {len(todo)}")

    def done(t: Task, res: dict) -> None:
        if res.get("ok"):
            ran.append(t.name)
        else:
            log = str(_log_path(cfg, t))
            failed.append({"index": t.index, "name": t.name, "log": log, "error": res.get("error", "?")})
            bar.write(f"task {t.index} {t.name} FAILED: {res.get('error')} (log: {log})")
        bar.update(1)

    # the missing tasks: here, one after another, or in spawned worker processes
    if parallel == 1 or len(todo) <= 1:
        _run_here(cfg, todo, done)
    else:
        _run_in_workers(cfg, todo, parallel, done)
    bar.close()
    # what finished tasks add: the external sets, then the image metrics of gan_data
    _ensure_extras(cfg, tasks, failed)
    results = aggregate(exp)
    return {"experiment_dir": str(exp), "n_tasks": len(tasks), "skipped": skipped, "ran": ran, "failed": failed,
            "results": results}


def _run_here(cfg: ExperimentConfig, todo: list[Task], done) -> None:
    """Run ``todo`` in this process, one after another; a failure's traceback goes to the task's log."""
    for t in todo:
        try:
            run_task(cfg, t.index)
            res = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - a failing task must not stop the others
            log = _log_path(cfg, t)
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as fh:
                traceback.print_exc(file=fh)
            res = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        done(t, res)


def _run_in_workers(cfg: ExperimentConfig, todo: list[Task], parallel: int, done) -> None:
    """Run ``todo`` in ``parallel`` spawned worker processes (:func:`_worker`), ``cores // parallel`` threads each."""
    import concurrent.futures as cf
    import multiprocessing as mp

    threads = max(1, _cores() // parallel)
    cfg_dict = dataclasses.asdict(dataclasses.replace(cfg, progress="off"))
    with cf.ProcessPoolExecutor(max_workers=parallel, mp_context=mp.get_context("spawn")) as pool:
        futs = {pool.submit(_worker, cfg_dict, t.index, threads, str(_log_path(cfg, t))): t for t in todo}
        for fut in cf.as_completed(futs):
            t = futs[fut]
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - the worker process died (killed, out of memory)
                res = {"ok": False, "error": f"worker process died: {type(exc).__name__}: {exc}"}
            done(t, res)


def _ensure_extras(cfg: ExperimentConfig, tasks: list[Task], failed: list[dict]) -> None:
    """External-set entries of every finished task and the image metrics, computed where missing; a failure is
    appended to ``failed``, and the other tasks go on."""
    for t in tasks:  # external sets of tasks finished earlier (or added to the config since)
        if cfg.external and _read_result(t) is not None and t.name not in {f["name"] for f in failed}:
            try:
                ensure_task_external(cfg, t)
            except HpcganError as exc:
                failed.append({"index": t.index, "name": t.name, "log": None, "error": f"external: {exc}"})
                print(f"task {t.index} {t.name}: external evaluation FAILED: {exc}", file=sys.stderr)
    if cfg.image_metrics and cfg.gan_data:
        try:
            ensure_image_metrics(cfg)
        except HpcganError as exc:
            failed.append({"index": None, "name": "image_metrics", "log": None, "error": str(exc)})
            print(f"image metrics FAILED: {exc}", file=sys.stderr)


def ensure_image_metrics(cfg: ExperimentConfig) -> dict | None:
    """``image_metrics.json``: compare_shards(data, g) for every gan_data folder g, computed once.

    Returns ``{gan_data folder: compare_shards result}`` (None without gan_data).
    """
    if not cfg.gan_data:
        return None
    exp = experiment_dir(cfg)
    path = exp / "image_metrics.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if set(old) == set(cfg.gan_data):
            return old
    from hpcgan.metrics.compare import compare_shards

    out = {}
    for g in cfg.gan_data:
        out[g] = compare_shards(cfg.data, g, metrics=cfg.metrics, feature_net=cfg.feature_net, num=cfg.metrics_num,
                                fid_method=cfg.fid_method, progress=cfg.progress)
    atomic_write_text(path, json.dumps(_clean(out), indent=1))
    return out


def _clean(o):
    """JSON-safe: infinities and NaN become strings (as hpcgan.metrics.compare.write_json does)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    return o


def _task_external(cfg: ExperimentConfig, task: Task) -> dict:
    """{set: entry} of the task's external_metrics.json for the sets of the config whose entry is current."""
    if not cfg.external:
        return {}
    p = Path(task.outdir) / "external_metrics.json"
    try:
        have = json.loads(p.read_text()) if p.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}
    return {n: have[n] for n, d in cfg.external.items()
            if n in have and have[n].get("split") == cfg.external_split and have[n].get("data") == d}


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return None, None
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s


def read_experiment_config(experiment_dir) -> ExperimentConfig:
    """The :class:`ExperimentConfig` of an experiment directory (its experiment.yaml), located where it is now."""
    exp = Path(experiment_dir)
    path = exp / "experiment.yaml"
    if not path.is_file():
        raise HpcganError(f"{exp} is not an experiment directory (no experiment.yaml); give <outdir>/<name> of "
                          "an `hpcgan experiment` run")
    try:
        cfg = experiment_config_from_dict(yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError as exc:
        raise HpcganError(f"{path} is not valid YAML: {exc}") from exc
    cfg.outdir = str(exp.parent)  # the folder may have been moved
    cfg.name = exp.name
    return cfg


def aggregate(experiment_dir) -> dict:
    """Collect the tasks' test metrics; write ``results.json`` and ``results.csv``; return the results.

    ``rows``: one per finished task (index, name, model, aug, class_set, run, seed,
    the metrics of :data:`METRIC_KEYS`, best_epoch, n_test, train_mix).
    ``cells``: one per model x aug x class set with ``n_runs``, ``seeds`` and, per
    metric, ``<m>_mean`` and ``<m>_std`` (sample std, ddof=1) over the finished runs.
    ``missing``: names of tasks without a result.
    """
    exp = Path(experiment_dir)
    cfg = read_experiment_config(exp)
    tasks = expand(cfg)
    rows, missing = [], []
    for t in tasks:
        res = _read_result(t)
        if res is None:
            missing.append(t.name)
        else:
            rows.append(_row(cfg, t, res))
    class_sets = list(dict.fromkeys(t.class_set for t in tasks))
    cells = _cells(cfg, class_sets, rows)
    results = {"experiment": cfg.name, "experiment_dir": str(exp), "n_tasks": len(tasks), "n_done": len(rows),
               "missing": missing, "runs": cfg.runs, "models": cfg.models, "augs": cfg.augs,
               "class_sets": class_sets, "std": "sample (ddof=1)",
               "rows": rows, "cells": cells, "external": _external_cells(cfg, cells, rows)}
    atomic_write_text(exp / "results.json", json.dumps(_clean(results), indent=1))
    atomic_write_text(exp / "results.csv", _results_csv(cfg, rows))
    return results


def _row(cfg: ExperimentConfig, t: Task, res: dict) -> dict:
    """results.json's row of a finished task: what it is, its test metrics, its external sets (nested and flat)."""
    row = {"index": t.index, "name": t.name, "model": t.model, "aug": t.aug, "class_set": t.class_set,
           "run": t.run, "seed": t.seed}
    row.update({k: res.get(k) for k in METRIC_KEYS})
    row.update(best_epoch=res.get("best_epoch"), n_test=res.get("n_test"), train_mix=res.get("train_mix"),
               positive_class=res.get("positive_class"), class_names=res.get("class_names"))
    row["external"] = {n: {k: e.get(k) for k in EXTERNAL_KEYS} for n, e in _task_external(cfg, t).items()}
    for name, e in row["external"].items():
        row.update({f"external_{name}_{k}": e.get(k) for k in EXTERNAL_KEYS})
    return row


def _cells(cfg: ExperimentConfig, class_sets: list[str], rows: list[dict]) -> list[dict]:
    """One cell per class set x model x aug: the finished runs' seeds, mean and std of each metric."""
    cells = []
    for cset in class_sets:
        for model in cfg.models:
            for aug in cfg.augs:
                rs = [r for r in rows if (r["class_set"], r["model"], r["aug"]) == (cset, model, aug)]
                cell = {"class_set": cset, "model": model, "aug": aug, "n_runs": len(rs),
                        "seeds": [r["seed"] for r in rs]}
                for k in METRIC_KEYS:
                    cell[f"{k}_mean"], cell[f"{k}_std"] = _mean_std([r[k] for r in rs if r[k] is not None])
                cells.append(cell)
    return cells


def _external_cells(cfg: ExperimentConfig, cells: list[dict], rows: list[dict]) -> dict:
    """Per external set: its folder, split and cells (like :func:`_cells`, over the runs that tested on it)."""
    external = {}
    for name, data in (cfg.external or {}).items():
        ecells = []
        for c in cells:
            rs = [r for r in rows if (r["class_set"], r["model"], r["aug"]) == (c["class_set"], c["model"], c["aug"])
                  and name in r["external"]]
            ec = {"class_set": c["class_set"], "model": c["model"], "aug": c["aug"], "n_runs": len(rs),
                  "seeds": [r["seed"] for r in rs], "n": rs[0]["external"][name].get("n") if rs else None}
            for k in EXTERNAL_KEYS[:-1]:
                ec[f"{k}_mean"], ec[f"{k}_std"] = _mean_std([r["external"][name].get(k) for r in rs
                                                             if r["external"][name].get(k) is not None])
            ecells.append(ec)
        external[name] = {"data": data, "split": cfg.external_split, "cells": ecells}
    return external


def _results_csv(cfg: ExperimentConfig, rows: list[dict]) -> str:
    """results.csv: one line per finished task (the metrics and the external sets flat)."""
    buf = io.StringIO()
    cols = ["index", "name", "model", "aug", "class_set", "run", "seed", *METRIC_KEYS, "best_epoch", "n_test"]
    cols += [f"external_{name}_{k}" for name in (cfg.external or {}) for k in EXTERNAL_KEYS]
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def experiment_main(config: str, overrides: dict | None = None, parallel: int = 1, task_index: int | None = None,
                    list_only: bool = False) -> int:
    """Entry of ``hpcgan experiment``; returns the exit status (1 when a task failed)."""
    cfg = load_experiment(config, overrides)
    if list_only:
        print(list_text(cfg))
        return 0
    if task_index is not None:
        res = run_task(cfg, task_index)  # checks the index
        t = expand(cfg)[task_index]
        print(f"task {task_index} {t.name}: accuracy {res.get('accuracy')} ({t.outdir})")
        return 0
    s = run_local(cfg, parallel=parallel)
    r = s["results"]
    print(f"{s['experiment_dir']}: {r['n_done']}/{s['n_tasks']} tasks done ({s['skipped']} already, "
          f"{len(s['ran'])} now, {len(s['failed'])} failed); results.json, results.csv")
    for f in s["failed"]:
        print(f"FAILED task {f['index']} {f['name']}: {f['error']}" + (f" (log: {f['log']})" if f["log"] else ""),
              file=sys.stderr)
    if not s["failed"]:
        print(f"report: hpcgan report {s['experiment_dir']}")
    return 1 if s["failed"] else 0
