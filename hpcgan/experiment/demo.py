"""The whole study on generated phantoms, in one command (``hpcgan demo``).

Stages, each writing its own folder under ``OUT`` (default ``demo``):

1. ``phantoms/``: chest-X-ray-like phantoms, classes Clear and Opacity (hpcgan.data.phantom);
2. ``shards/``: ``hpcgan preprocess`` at 32 px;
3. ``gan/``: a short conditional StyleGAN2-ADA run on the CPU preset ``configs/gan/cpu-smoke.yaml``;
4. ``synthetic/``: ``hpcgan generate``, the same number of images for each class;
5. ``experiments/demo/``: the grid of ``configs/demo.yaml`` (small CNN x none, classic, gan,
   classic+gan, rebalance x runs), with the image metrics of ``synthetic/`` against ``shards/``.
   The positive class is Opacity, the disease: TPR is the share of Opacity images found;
6. ``experiments/demo/report/``: ``hpcgan report`` (report.md, the CSVs, and report.html, whose path the
   demo prints last).

Resumable: ``OUT/demo-stages.json`` records every finished stage with its settings,
and a re-run skips those whose settings are unchanged (the GAN stage continues a
killed training from its newest snapshot; the grid skips finished tasks). When a
stage is redone, the stages after it are redone too, from scratch.
``quick`` is a much smaller version of every stage (the end-to-end test).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from hpcgan.atomic import atomic_write_text
from hpcgan.errors import HpcganError

__all__ = ["demo", "demo_main", "SETTINGS"]

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
GAN_PRESET = REPO / "configs" / "gan" / "cpu-smoke.yaml"

# Pipeline sizes; the grid itself comes from configs/demo.yaml (+ "grid" overrides).
SETTINGS = {
    # full: FID of G_ema at the first tick, tick 12 and the end (64 generated images each): the report's FID curve
    "full": {"phantoms": 200, "test_per_class": 40, "resolution": 32, "kimg": 12.0,
             "gan": {"metric_every": 12, "fid_num_fake": 64},
             "gen_n": 200, "grid": {}},
    "quick": {"phantoms": 24, "test_per_class": 6, "resolution": 32, "kimg": 0.064,
              "gan": {"z_dim": 32, "w_dim": 32, "channel_base": 512, "channel_max": 32, "mapping_layers": 2,
                      "tick_kimg": 0.032, "snap": 0, "batch": 8},
              "gen_n": 24,
              "grid": {"runs": 2, "epochs": 1, "gan_n": 24, "metrics": "rmse,psnr,sre,sam,ssim,memorisation",
                       "metrics_num": 24}},
}


def _load_state(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# Stage names in pipeline order (the keys of demo-stages.json).
ORDER = ["phantoms", "preprocess", "train-gan", "generate", "experiment", "report"]


class _Stages:
    """The resumable record ``OUT/demo-stages.json``: runs a stage unless it finished earlier with the same settings.

    ``stale``: outputs a stage would resume from rather than overwrite (the GAN run, the grid); they are removed
    when an earlier stage ran in this call. A re-done stage drops the records of the stages after it.
    """

    def __init__(self, root: Path, stale: dict):
        self.path = root / "demo-stages.json"
        self.state = _load_state(self.path)
        self.stale = stale
        self.seconds: dict = {}
        self.ran = False  # a stage ran in this call

    def run(self, name: str, params: dict, fn):
        rec = self.state.get(name)
        if rec and rec.get("params") == params:
            print(f"demo: {name}: done earlier, skipped")
            return rec.get("result")
        if self.ran and name in self.stale:  # an earlier stage was redone: this stage's old output is stale
            shutil.rmtree(self.stale[name], ignore_errors=True)
        self.ran = True
        print(f"demo: {name} ...", flush=True)
        t0 = time.perf_counter()
        result = fn()
        self.seconds[name] = round(time.perf_counter() - t0, 1)
        self.state[name] = {"params": params, "result": result, "seconds": self.seconds[name]}
        for later in [k for k in list(self.state) if k not in ORDER[: ORDER.index(name) + 1]]:
            self.state.pop(later)  # a re-done stage invalidates the ones after it
        atomic_write_text(self.path, json.dumps(self.state, indent=1))
        print(f"demo: {name}: {self.seconds[name]} s", flush=True)
        return result


def _phantoms(ph: Path, S: dict) -> str:
    """Stage 1: the phantom images (classes Clear and Opacity)."""
    from hpcgan.data.phantom import generate_phantoms

    generate_phantoms(ph, S["phantoms"], seed=0)
    return str(ph)


def _preprocess(ph: Path, sh: Path, S: dict, progress) -> str:
    """Stage 2: the phantoms as shards (train/val/test)."""
    from hpcgan.data.preprocess import PreprocessConfig, run_preprocess

    run_preprocess(PreprocessConfig(source=str(ph), out=str(sh), classes=["Clear", "Opacity"],
                                    resolution=S["resolution"], test_per_class=S["test_per_class"],
                                    progress=progress))
    return str(sh)


def _train_gan(sh: Path, gan: Path, S: dict, progress) -> str:
    """Stage 3: a conditional StyleGAN2-ADA run on the CPU preset; returns its final snapshot."""
    from hpcgan.config import load as load_config
    from hpcgan.gan.config import TrainConfig
    from hpcgan.gan.snapshot import list_snapshots
    from hpcgan.gan.train import train

    over = {"data": str(sh), "outdir": str(gan), "cond": True, "kimg": S["kimg"], "progress": progress,
            "seed": 0, **S["gan"]}
    runs = sorted(p for p in gan.iterdir() if p.is_dir()) if gan.is_dir() else []
    if runs and list_snapshots(runs[-1]):
        over["resume"] = str(runs[-1])  # a killed training continues from its newest snapshot
    res = train(load_config(TrainConfig, GAN_PRESET, over))
    if res["status"] != "done":
        raise HpcganError(f"GAN training stopped ({res['status']}); run the demo again to continue")
    return res["snapshot"]


def _generate(snapshot: str, syn: Path, S: dict, progress) -> str:
    """Stage 4: synthetic shards from the snapshot, the same number of images per class."""
    from hpcgan.gan.generate import GenerateConfig, generate

    generate(GenerateConfig(network=snapshot, out=str(syn), n=S["gen_n"], png=True, progress=progress))
    return str(syn)


def _experiment(sh: Path, syn: Path, experiments: Path, S: dict, progress, parallel: int) -> str:
    """Stage 5: the grid of configs/demo.yaml over the shards and the synthetic folder; returns its directory."""
    from hpcgan.experiment.grid import experiment_dir, load_experiment, run_local

    cfg = load_experiment(DEMO_CONFIG, {"data": str(sh), "gan_data": [str(syn)], "outdir": str(experiments),
                                        "progress": progress, **S["grid"]})
    s = run_local(cfg, parallel=parallel)
    if s["failed"]:
        raise HpcganError("demo grid: " + "; ".join(f"task {f['name']} failed: {f['error']} (log {f['log']})"
                                                    for f in s["failed"]) + "; fix it and run the demo again")
    return str(experiment_dir(cfg))


def _report(exp: str) -> str:
    """Stage 6: the experiment's report; returns the path of report.md."""
    from hpcgan.experiment.report import write_report

    return str(write_report(exp))


def demo(out: str = "demo", quick: bool = False, parallel: int = 1, progress: str | bool | None = "auto") -> dict:
    """Run (or resume) the demo pipeline under ``out``; returns {"report": path, "html": path, "stages": {...}, ...}.

    ``progress``: auto | bar | lines | off (hpcgan.progress), passed to every stage.
    """
    from hpcgan.progress import normalize

    progress = normalize(progress)
    if not DEMO_CONFIG.is_file() or not GAN_PRESET.is_file():
        raise HpcganError(f"the demo needs {DEMO_CONFIG} and {GAN_PRESET} (part of the hpcgan repository); "
                          "run it from a checkout installed with scripts/install.sh")
    S = SETTINGS["quick" if quick else "full"]
    root = Path(out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    ph, sh, gan, syn, experiments = (root / "phantoms", root / "shards", root / "gan", root / "synthetic",
                                     root / "experiments")
    stages = _Stages(root, stale={"train-gan": gan, "experiment": experiments})

    t_all = time.perf_counter()
    stages.run("phantoms", {"n": S["phantoms"]}, lambda: _phantoms(ph, S))
    stages.run("preprocess", {"resolution": S["resolution"], "test_per_class": S["test_per_class"]},
               lambda: _preprocess(ph, sh, S, progress))
    snapshot = stages.run("train-gan", {"kimg": S["kimg"], "gan": S["gan"]}, lambda: _train_gan(sh, gan, S, progress))
    stages.run("generate", {"n": S["gen_n"], "snapshot": snapshot}, lambda: _generate(snapshot, syn, S, progress))
    exp = stages.run("experiment", {"grid": S["grid"], "config": DEMO_CONFIG.read_text()},
                     lambda: _experiment(sh, syn, experiments, S, progress, parallel))
    report = stages.run("report", {"experiment": exp, "html": True}, lambda: _report(exp))
    total = round(time.perf_counter() - t_all, 1)
    return {"report": report, "html": str(Path(report).with_name("report.html")), "experiment_dir": exp,
            "stages": list(stages.state), "seconds": stages.seconds, "total_seconds": total}


def demo_main(out: str | None = None, quick: bool = False, parallel: int = 1, progress: str | bool | None = "auto") -> int:
    """Entry of ``hpcgan demo``: run it (default folder demo, or demo-quick); the last line is report.html's path."""
    out = out or ("demo-quick" if quick else "demo")
    res = demo(out, quick=quick, parallel=parallel, progress=progress)
    print(f"demo done in {res['total_seconds']} s (this call); report: {res['report']}")
    print(f"  tables and plots: {Path(res['report']).parent}/ (table.csv, runs.csv, accuracy.png, roc.png)")
    print(f"open in a browser: {res['html']}")
    return 0
