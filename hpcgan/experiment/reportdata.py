"""What the report shows, shared by report.md (:mod:`hpcgan.experiment.report`) and report.html
(:mod:`hpcgan.experiment.html`): :class:`ReportData`, the metric labels, the number formats, the summary
lines and the column choices.

Both writers import this module; it imports neither, so the imports run one way
(report -> html -> reportdata, report -> reportdata).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ReportData", "TABLE_METRICS", "LABEL", "SELECT_LABEL", "RUN_COLS", "fmt_num", "fmt_mean_std",
           "summary_lines", "positive_classes", "table_metrics", "comparison_cells", "run_columns", "fid_floors"]

TABLE_METRICS = ("accuracy", "balanced_accuracy", "tpr", "tnr", "fpr")
LABEL = {"accuracy": "accuracy", "tpr": "TPR", "tnr": "TNR", "fpr": "FPR", "fnr": "FNR", "precision": "precision",
         "f1": "F1", "roc_auc": "ROC AUC", "balanced_accuracy": "balanced accuracy"}
SELECT_LABEL = {"balanced": "balanced accuracy", "accuracy": "accuracy", "auc": "ROC AUC"}


def fmt_num(v, digits: int = 4) -> str:
    """``v`` with ``digits`` decimals; ``-`` for None or a non-finite float."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def fmt_mean_std(cell: dict, k: str) -> str:
    """``mean ± std`` of metric ``k`` of an aggregated cell (``<k>_mean``, ``<k>_std``); ``-`` without a mean."""
    m, s = cell.get(f"{k}_mean"), cell.get(f"{k}_std")
    return "-" if m is None else f"{m:.4f} ± {s:.4f}"


def _data_counts(data: str) -> str:
    try:
        m = json.loads((Path(data) / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return f"(manifest of {data} not readable)"
    parts = []
    for split in ("train", "val", "test"):
        c = m.get("counts", {}).get(split, {})
        parts.append(f"{split} " + ", ".join(f"{k} {v}" for k, v in c.items()))
    res = m.get("settings", {}).get("resolution")
    return "; ".join(parts) + (f" ({res} px)" if res else "")


def _gan_summary(g: str) -> str:
    try:
        m = json.loads((Path(g) / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return f"{g} (manifest not readable)"
    gen = m.get("generator", {})
    counts = ", ".join(f"{k} {v}" for k, v in m.get("counts", {}).get("train", {}).items() if v)
    return (f"{g}: {counts}; {gen.get('arch', '?')} at kimg {gen.get('kimg', '?')}, trunc {gen.get('trunc', '?')}, "
            f"snapshot {gen.get('snapshot', '?')}")


@dataclass
class ReportData:
    """Everything the report shows, gathered once: the markdown, the CSVs, the plots and report.html use it."""

    exp: Path
    out: Path
    cfg: object                      # the experiment's ExperimentConfig
    results: dict                    # hpcgan.experiment.grid.aggregate
    rocs: dict                       # (class set, model, aug) -> [roc of each run]
    comps: list                      # paired comparisons
    imetrics: dict | None            # gan_data folder -> compare_shards result
    gan_runs: dict = field(default_factory=dict)  # gan_data folder -> {"manifest", "run_dir", "stats"}
    plots: dict = field(default_factory=dict)     # plot name -> path of the PNG in out
    alpha: float = 0.05


def summary_lines(d: ReportData) -> list[str]:
    """What was run, one fact per line (markdown inline code in backticks): report.md's and report.html's list."""
    results, cfg = d.results, d.cfg
    seeds = sorted({r["seed"] for r in results["rows"]})
    L = [f"experiment directory: `{d.exp}`",
         f"tasks: {results['n_done']} of {results['n_tasks']} finished"
         + (f"; missing: {', '.join(results['missing'])}" if results["missing"] else ""),
         f"grid: models {', '.join(results['models'])} x augmentation {', '.join(results['augs'])} x "
         f"class sets {' | '.join(results['class_sets'])} x {results['runs']} runs; run r uses seed r "
         f"(seeds {', '.join(map(str, seeds))}): same seeds in every cell, so cells are paired",
         f"classifier: {cfg.epochs} epochs, batch {cfg.batch}, lr {cfg.lr}, image size "
         f"{cfg.image_size or 'model default'}, pretrained {cfg.pretrained}, real images per class capped at "
         f"{cfg.limit_per_class if cfg.limit_per_class else 'no cap'}; class-balance correction {cfg.balance}; "
         f"the epoch with the best validation {SELECT_LABEL[cfg.select]} is tested",
         f"real data `{cfg.data}`: {_data_counts(cfg.data)}"]
    n_test = sorted({r["n_test"] for r in results["rows"] if r.get("n_test") is not None})
    if n_test:
        L.append(f"test images per run: {', '.join(map(str, n_test))}")
    for g in cfg.gan_data or []:
        L.append(f"synthetic data {_gan_summary(g)}; used by gan modes: {cfg.gan_n} images"
                 + (f" of {', '.join(cfg.gan_classes)}" if cfg.gan_classes else ""))
    mixes = [r["train_mix"] for r in results["rows"] if r.get("train_mix") and r["aug"] in ("gan", "classic+gan")]
    if mixes:
        L.append(f"training mix of a gan run: real {mixes[0].get('real')}, synthetic {mixes[0].get('synthetic')}")
    mixes = [r["train_mix"] for r in results["rows"] if r.get("train_mix") and r["aug"] == "rebalance"]
    if mixes:
        L.append(f"training mix of a rebalance run: real {mixes[0].get('real')}, copies of real images "
                 f"{mixes[0].get('oversampled')} (the gan arm's class counts)")
    L.append("std is the sample standard deviation over runs (ddof=1)")
    return L


def positive_classes(d: ReportData, cset: str) -> list[str]:
    """The positive class(es) the runs of class set ``cset`` measured TPR/TNR/FPR against."""
    return sorted({r.get("positive_class") for r in d.results["rows"] if r["class_set"] == cset} - {None})


def table_metrics(d: ReportData) -> list[str]:
    """The per-cell metrics that hold a value somewhere (grid.METRIC_KEYS order), for the full tables."""
    from hpcgan.experiment.grid import METRIC_KEYS

    return [k for k in METRIC_KEYS if any(c.get(f"{k}_mean") is not None for c in d.results["cells"])]


def comparison_cells(c: dict) -> str:
    """``mean A - B | CI | t | p`` of one comparison, formatted as in report.md."""
    ci = "-" if c["ci_low"] is None else f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]"
    md = "-" if c["mean_diff"] is None else f"{c['mean_diff']:+.4f}"
    return f"{md} | {ci} | {fmt_num(c['t'], 3)} | {fmt_num(c['p'], 4)}"


RUN_COLS = ["class_set", "model", "aug", "run", "seed", "accuracy", "tpr", "tnr", "fpr", "fnr", "precision", "f1",
            "roc_auc", "best_epoch", "n_test", "name"]


def run_columns(d: ReportData) -> list[str]:
    """runs.csv's columns: the fixed ones plus any metric of grid.METRIC_KEYS the rows carry."""
    from hpcgan.experiment.grid import EXTERNAL_KEYS

    extra = [k for k in table_metrics(d) if k not in RUN_COLS]
    i = RUN_COLS.index("best_epoch")
    ext = [f"external_{n}_{k}" for n in (d.results.get("external") or {}) for k in EXTERNAL_KEYS]
    return RUN_COLS[:i] + extra + RUN_COLS[i:] + ext


def fid_floors(d: ReportData, g: str) -> dict:
    """Real-vs-real floors for the FID curve of gan_data ``g``: the image metrics' baseline FID/KID."""
    base = ((d.imetrics or {}).get(g) or {}).get("baseline") or {}
    floors = {}
    for k, v in base.items():
        if k.lower().startswith("fid") and isinstance(v, (int, float)):
            floors[k] = float(v)
        elif k.lower().startswith("kid") and isinstance(v, dict) and isinstance(v.get("mean"), (int, float)):
            floors[k] = float(v["mean"])
    return floors
