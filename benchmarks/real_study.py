"""The study's arms on real chest X-rays: EfficientNet-B0 from scratch, none / classic / rebalance x 3 runs.

Data (``--cxr``, default ``../shared/data/cxr`` or $HPCGAN_CXR_ROOT; never copied into the repository):

* training/validation/test: ``kaggle224`` COVID and Normal. Every ``--covid-step``-th COVID image is kept
  (default 3: 402 COVID, 1,107 Normal), which gives the study's class ratio (3,616 COVID to 10,192 Normal
  in the Kaggle database: 1 to 2.8), so that the training set is Normal-heavy as the study's was and the
  rebalance arm has something to rebalance. The test split is balanced (``--test-per-class``), the
  validation split keeps the training ratio, as in the study;
* external: ``hannover/png`` (243 COVID X-rays of another hospital, lung masks for 77 of them, patients from
  ``data.csv``), every image in the train split of its own shards, tested with ``hpcgan evaluate --split all``
  (COVID only: the sensitivity).

Both are preprocessed at ``--resolution`` px with annotations kept. The grid is ``hpcgan experiment`` on the
config this script writes (``<workdir>/real-study.yaml``): efficientnet_b0, pretrained no, augs none, classic,
rebalance, ``--runs`` runs (run r = seed r in every arm), ``--epochs`` epochs (default 2), batch 32, Adam lr
1e-3, ``--parallel`` runs at once with one torch thread each, best epoch by validation
balanced accuracy. Rebalance copies real COVID training images until COVID has as many training images as
Normal (gan_n = Normal - COVID training images): the class counts a gan arm with that many synthetic COVID
images would have. There is no gan arm: no generator trained on these images is at hand.

Prints a markdown table and writes ``--json`` (default benchmarks/results/real-study-cpu-2core.json). Re-runs
resume (finished tasks are kept). Run on a 2-core machine as

    nice -n 5 python benchmarks/real_study.py --workdir /tmp/real-study
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import yaml

from hpcgan.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def _link(src: Path, dst: Path, step: int = 1) -> int:
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(src.glob("*.png"))[::step]
    for f in files:
        if not (dst / f.name).exists():
            (dst / f.name).symlink_to(f)
    return len(files)


def prepare(cxr: Path, work: Path, res: int, covid_step: int, test_per_class: int) -> tuple[Path, Path]:
    """Kaggle and Hannover shards under ``work`` (made once; a re-run reuses them)."""
    from hpcgan.data.preprocess import PreprocessConfig, run_preprocess

    kaggle, hannover = work / f"kaggle-{res}", work / f"hannover-{res}"
    if not (kaggle / "manifest.json").is_file():
        src = work / "kaggle-src"
        _link(cxr / "kaggle224" / "COVID", src / "COVID", covid_step)
        _link(cxr / "kaggle224" / "Normal", src / "Normal")
        run_preprocess(PreprocessConfig(str(src), str(kaggle), classes=["COVID", "Normal"], layout="flat",
                                        resolution=res, test_per_class=test_per_class, val_fraction=0.1,
                                        annotations="keep", workers=1, progress=False))
    if not (hannover / "manifest.json").is_file():
        src = work / "hannover-src"
        _link(cxr / "hannover" / "png", src / "COVID")
        run_preprocess(PreprocessConfig(str(src), str(hannover), classes=["COVID"], layout="plain",
                                        masks=str(cxr / "hannover" / "masks_v7labs"),
                                        metadata=str(cxr / "hannover" / "data.csv"), resolution=res,
                                        test_per_class=0, val_fraction=0.0, annotations="keep", workers=1,
                                        progress=False))
    return kaggle, hannover


def _mean_std(v: list[float]) -> tuple[float, float]:
    m = sum(v) / len(v)
    return m, (math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cxr", default=os.environ.get("HPCGAN_CXR_ROOT", str(REPO.parent / "shared" / "data" / "cxr")),
                    help="folder holding kaggle224/ and hannover/")
    ap.add_argument("--workdir", default="/tmp/real-study", help="shards and the experiment go here")
    ap.add_argument("--resolution", type=int, default=64, help="preprocessing and model input side (default 64)")
    ap.add_argument("--covid-step", type=int, default=3, help="keep every N-th COVID image (default 3: the study's "
                    "COVID:Normal ratio)")
    ap.add_argument("--test-per-class", type=int, default=100, help="balanced test split (default 100 per class)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per run (default 2: the 9 runs take about an "
                    "hour at nice 5 on a 2-core machine with a load average near 16)")
    ap.add_argument("--runs", type=int, default=3, help="runs per arm (default 3)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam lr (default 1e-3: from scratch)")
    ap.add_argument("--augs", default="none,classic,rebalance")
    ap.add_argument("--parallel", type=int, default=2, help="runs at once, each with cores/N torch threads "
                    "(default 2: on a shared, loaded machine two 1-thread runs get more done than one 2-thread run)")
    ap.add_argument("--no-external", action="store_true", help="do not evaluate on the Hannover set")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "real-study-cpu-2core.json"))
    args = ap.parse_args(argv)

    from hpcgan.data.shards import read_manifest
    from hpcgan.experiment.grid import aggregate, load_experiment, run_local

    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    kaggle, hannover = prepare(Path(args.cxr), work, args.resolution, args.covid_step, args.test_per_class)
    counts = read_manifest(kaggle)["counts"]
    gan_n = counts["train"]["Normal"] - counts["train"]["COVID"]
    conf = {"name": f"real-study-{args.resolution}px-{args.epochs}ep", "data": str(kaggle),
            "outdir": str(work / "experiments"),
            "models": ["efficientnet_b0"], "augs": args.augs.split(","), "runs": args.runs,
            "class_sets": [["COVID", "Normal"]], "positive_class": "COVID", "epochs": args.epochs,
            "batch": args.batch, "lr": args.lr, "image_size": args.resolution, "pretrained": "no",
            "gan_n": gan_n, "gan_classes": ["COVID"], "select": "balanced", "image_metrics": False,
            "progress": False, "device": "cpu"}
    if not args.no_external:
        conf["external"] = {"hannover": str(hannover)}
    path = work / "real-study.yaml"
    atomic_write_text(path, yaml.safe_dump(conf, sort_keys=False))
    cfg = load_experiment(path)
    summary = run_local(cfg, parallel=args.parallel)
    res = aggregate(Path(summary["experiment_dir"]))
    wall = time.time() - t0

    arms = []
    for aug in cfg.augs:
        rows = [r for r in res["rows"] if r["aug"] == aug]
        arm = {"aug": aug, "n_runs": len(rows), "seeds": [r["seed"] for r in rows]}
        for k in ("accuracy", "balanced_accuracy", "tpr", "tnr"):
            arm[f"{k}_runs"] = [r[k] for r in rows]
            arm[f"{k}_mean"], arm[f"{k}_std"] = _mean_std(arm[f"{k}_runs"]) if rows else (None, None)
        ext = [r.get("external", {}).get("hannover") for r in rows]
        sens = [e["sensitivity"] for e in ext if e]
        arm["hannover_sensitivity_runs"] = sens
        arm["hannover_sensitivity_mean"], arm["hannover_sensitivity_std"] = _mean_std(sens) if sens else (None, None)
        arm["train_mix"] = rows[0]["train_mix"] if rows else None
        arm["best_epochs"] = [r["best_epoch"] for r in rows]
        arms.append(arm)
    out = {"what": "efficientnet_b0 from scratch on kaggle224 COVID vs Normal; external test on Hannover COVID",
           "settings": {**conf, "covid_step": args.covid_step, "test_per_class": args.test_per_class},
           "data_counts": counts, "hannover_counts": read_manifest(hannover)["counts"],
           "gan_arm": "none: no generator trained on these images is at hand",
           "arms": arms, "failed": summary["failed"], "wall_s": round(wall, 1), "parallel": args.parallel,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "loadavg_end": open("/proc/loadavg").read().split()[:3]}}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.json), json.dumps(out, indent=1))

    def pm(a, k):
        return "-" if a[f"{k}_mean"] is None else f"{a[f'{k}_mean']:.3f} ± {a[f'{k}_std']:.3f}"

    print("| arm | runs | test accuracy | test balanced accuracy | test TPR (COVID) | test TNR | "
          "Hannover sensitivity |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for a in arms:
        print(f"| {a['aug']} | {a['n_runs']} | {pm(a, 'accuracy')} | {pm(a, 'balanced_accuracy')} | {pm(a, 'tpr')} | "
              f"{pm(a, 'tnr')} | {pm(a, 'hannover_sensitivity')} |")
    print(f"wall {wall / 60:.1f} min; {args.json}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
