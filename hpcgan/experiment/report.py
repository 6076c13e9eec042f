"""The experiment's report (``hpcgan report EXPERIMENT_DIR``): tables, paired tests, plots, image metrics.

Writes into ``EXPERIMENT_DIR/report/``:

* ``report.md``: what was run (n runs, seeds, data counts, settings), the study's table
  (mean ± std over runs of accuracy, balanced accuracy, TPR, TNR, FPR per model x aug x class set),
  the paired comparisons (accuracy and balanced accuracy; gan modes also against rebalance), the
  image-metric table (FID/KID, RMSE, PSNR, SRE, SAM, SSIM, memorisation) of every gan_data folder,
  one table per external set (sensitivity, specificity, accuracy, balanced accuracy, AUC);
* ``table.csv``: one row per cell with ``<metric>_mean`` and ``<metric>_std``;
* ``runs.csv``: one row per run (accuracy, balanced accuracy, TPR, TNR, FPR, ..., external sets);
* ``comparisons.csv``: the paired tests, one row per metric x pair;
* ``external.csv``, ``external.json``: the external sets' cells (with ``external`` in the config);
* ``accuracy.png``: mean accuracy per cell with std error bars (``balanced_accuracy.png`` likewise
  when the runs measured it); ``roc.png``: mean ROC per cell; ``fid-<k>.png``: FID/KID over the
  training of the k-th gan_data folder's GAN run, when its stats.jsonl holds FIDs;
* ``report.html``: all of it with pictures, one self-contained page (:mod:`hpcgan.experiment.html`).

:func:`write_report` runs the steps in order: :func:`collect` (aggregate, ROC curves, paired
tests, image metrics, the GAN runs' stats) into a :class:`ReportData`, :func:`write_tables`,
:func:`write_plots`, :func:`markdown`, and :func:`hpcgan.experiment.html.write_html`. What both the
markdown and the HTML page show (:class:`ReportData`, labels, number formats, summary lines) lives in
:mod:`hpcgan.experiment.reportdata`, which imports neither writer.

Paired comparison of mode A against mode B (same model and class set): the runs
with the same seed in both cells form pairs (a_i, b_i), d_i = a_i - b_i. The
paired t-test is ``scipy.stats.ttest_rel(a, b)``: t = mean(d) / (std(d, ddof=1) /
sqrt(n)) with n - 1 degrees of freedom, two-sided p. The bootstrap CI is the
percentile interval of mean(d) over resamples of the n differences with
replacement (``scipy.stats.bootstrap``, 9999 resamples, seed 0). With n runs the
smallest |mean(d)| the test can call significant is large; the verdict says so.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from pathlib import Path

import numpy as np

from hpcgan.atomic import atomic_path, atomic_write_text
from hpcgan.errors import HpcganError
from hpcgan.experiment.html import write_html
from hpcgan.experiment.reportdata import (LABEL, TABLE_METRICS, ReportData, comparison_cells, fid_floors, fmt_mean_std,
                                          positive_classes, run_columns, summary_lines, table_metrics)

__all__ = ["paired_comparison", "verdict", "write_report", "report_main", "collect", "write_tables", "write_plots",
           "markdown", "ReportData", "plot_fid_curve", "read_stats", "TABLE_METRICS"]

# Metrics of the paired comparisons (one row per metric and pair of modes).
COMPARE_METRICS = ("accuracy", "balanced_accuracy")


def paired_comparison(a, b, alpha: float = 0.05, n_boot: int = 9999, seed: int = 0,
                      confidence: float = 0.95) -> dict:
    """Paired test of ``a`` against ``b`` (equal-length sequences, pair i = same seed).

    Returns ``{n, mean_a, mean_b, mean_diff, t, p, ci_low, ci_high, alpha, significant, verdict}``;
    ``t``/``p`` are None with fewer than 2 pairs or when every difference is equal
    (the t statistic is undefined), the CI is None with fewer than 2 pairs.
    """
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples need equal 1-D shapes, got {a.shape} and {b.shape}")
    n = int(len(a))
    d = a - b
    out = {"n": n, "mean_a": float(a.mean()) if n else None, "mean_b": float(b.mean()) if n else None,
           "mean_diff": float(d.mean()) if n else None, "t": None, "p": None, "ci_low": None, "ci_high": None,
           "alpha": alpha, "confidence": confidence}
    if n >= 2:
        if np.ptp(d) > 1e-9:  # accuracies are k/n: equal differences can differ by rounding
            res = stats.ttest_rel(a, b)
            out["t"], out["p"] = float(res.statistic), float(res.pvalue)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bs = stats.bootstrap((d,), np.mean, n_resamples=n_boot, confidence_level=confidence,
                                     method="percentile", rng=np.random.default_rng(seed))
            out["ci_low"], out["ci_high"] = float(bs.confidence_interval.low), float(bs.confidence_interval.high)
        else:
            out["ci_low"] = out["ci_high"] = float(d[0])
    out["significant"] = out["p"] is not None and out["p"] < alpha
    out["verdict"] = verdict(out)
    return out


def verdict(c: dict) -> str:
    """Plain words for a :func:`paired_comparison` result."""
    n, alpha = c["n"], c["alpha"]
    if n < 2:
        return f"cannot be tested: {n} paired run(s), a paired test needs at least 2"
    if c["p"] is None:
        return (f"all {n} paired differences are equal ({c['mean_diff']:+.4f}); no spread to test against, "
                "so no verdict")
    if c["significant"]:
        better = "higher" if c["mean_diff"] > 0 else "lower"
        return (f"{better} by {abs(c['mean_diff']):.4f} on average; significant at alpha={alpha:g} "
                f"(p={c['p']:.3g}, {n} paired runs)")
    return f"not distinguishable from noise at alpha={alpha:g} with {n} runs (p={c['p']:.3g})"


def comparison_pairs(augs: list[str]) -> list[tuple[str, str]]:
    """(A, B) pairs tested: each aug against ``none``; gan / classic+gan against classic and against rebalance
    (the control with the gan arm's class counts made of real copies: a gain over rebalance is not balance)."""
    pairs = [(a, "none") for a in augs if a != "none" and "none" in augs]
    pairs += [(a, "classic") for a in ("gan", "classic+gan") if a in augs and "classic" in augs]
    pairs += [(a, "rebalance") for a in ("gan", "classic+gan") if a in augs and "rebalance" in augs]
    return pairs


def comparisons(results: dict, alpha: float = 0.05) -> list[dict]:
    """Paired comparisons of :func:`comparison_pairs` on each metric of :data:`COMPARE_METRICS` the rows hold."""
    pairs = comparison_pairs(results["augs"])
    out = []
    for metric in COMPARE_METRICS:
        if metric != "accuracy" and not any(r.get(metric) is not None for r in results["rows"]):
            continue  # runs made before the metric existed
        for cset in results["class_sets"]:
            for model in results["models"]:
                for a, b in pairs:
                    ra, rb = ({r["seed"]: r.get(metric) for r in results["rows"]
                               if (r["class_set"], r["model"], r["aug"]) == (cset, model, m)
                               and r.get(metric) is not None} for m in (a, b))
                    seeds = sorted(set(ra) & set(rb))
                    c = paired_comparison([ra[s] for s in seeds], [rb[s] for s in seeds], alpha=alpha)
                    c.update(metric=metric, class_set=cset, model=model, a=a, b=b, seeds=seeds)
                    out.append(c)
    return out


def external_tables(results: dict) -> list[str]:
    """report.md: one table per external set of the experiment (``results["external"]``)."""
    L = []
    for name, ext in (results.get("external") or {}).items():
        L += [f"## External set {name}", "",
              f"`{ext['data']}`, split {ext['split']}: the tested model of every run (`hpcgan evaluate`, "
              "`tasks/<task>/external_metrics.json`); n/a where the set lacks a class (a one-class set has a "
              "sensitivity or a specificity only).", "",
              "| class set | model | augmentation | runs | images | sensitivity | specificity | accuracy | "
              "balanced accuracy | ROC AUC |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for c in ext["cells"]:
            vals = ["n/a" if c.get(f"{k}_mean") is None else fmt_mean_std(c, k)
                    for k in ("sensitivity", "specificity", "accuracy", "balanced_accuracy", "roc_auc")]
            L.append(f"| {c['class_set']} | {c['model']} | {c['aug']} | {c['n_runs']} | {c['n'] or '-'} | "
                     + " | ".join(vals) + " |")
        L.append("")
    return L


def _csv_text(rows: list[dict], cols: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return buf.getvalue()


def _savefig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_accuracy(results: dict, path: Path, label: str = "accuracy") -> None:
    """Grouped bars: mean accuracy per model (groups) and aug (bars), std over runs as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets, models, augs = results["class_sets"], results["models"], results["augs"]
    fig, axes = plt.subplots(1, len(sets), figsize=(max(5, 1.2 * len(models) * len(augs)) * len(sets) ** 0.5 + 1,
                                                    4), squeeze=False)
    width = 0.8 / len(augs)
    for ax, cset in zip(axes[0], sets):
        for j, aug in enumerate(augs):
            cells = [next(c for c in results["cells"] if (c["class_set"], c["model"], c["aug"]) == (cset, m, aug))
                     for m in models]
            means = [c["accuracy_mean"] if c["accuracy_mean"] is not None else np.nan for c in cells]
            stds = [c["accuracy_std"] if c["accuracy_std"] is not None else 0 for c in cells]
            x = np.arange(len(models)) + (j - (len(augs) - 1) / 2) * width
            ax.bar(x, means, width, yerr=stds, capsize=3, label=aug)
        ax.set_xticks(np.arange(len(models)), models)
        ax.set_ylim(0, 1.0)
        ax.set_ylabel(f"test {label} (mean ± std over runs)")
        ax.set_title(f"classes: {cset}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(title="augmentation", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.suptitle(f"{results['experiment']}: {results['runs']} runs per cell")
    _savefig(fig, path)
    plt.close(fig)


def mean_roc(rocs: list[dict], grid: np.ndarray) -> np.ndarray | None:
    """Vertical average of ROC curves: mean over runs of TPR interpolated at FPR = ``grid``."""
    curves = []
    for roc in rocs:
        if not roc or not roc.get("fpr"):
            continue
        fpr, tpr = np.asarray(roc["fpr"], float), np.asarray(roc["tpr"], float)
        order = np.argsort(fpr, kind="stable")
        curves.append(np.interp(grid, fpr[order], tpr[order]))
    return np.mean(curves, axis=0) if curves else None


def plot_roc(results: dict, rocs: dict, path: Path) -> None:
    """One panel per class set x model, one mean ROC curve per aug."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets, models, augs = results["class_sets"], results["models"], results["augs"]
    fig, axes = plt.subplots(len(sets), len(models), figsize=(3.6 * len(models), 3.4 * len(sets)), squeeze=False)
    grid = np.linspace(0, 1, 201)
    for i, cset in enumerate(sets):
        for j, model in enumerate(models):
            ax = axes[i][j]
            for aug in augs:
                cell = next(c for c in results["cells"] if (c["class_set"], c["model"], c["aug"]) == (cset, model, aug))
                m = mean_roc(rocs.get((cset, model, aug), []), grid)
                if m is not None:
                    auc = cell.get("roc_auc_mean")
                    ax.plot(grid, m, label=f"{aug}" + (f" (AUC {auc:.3f})" if auc is not None else ""))
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            ax.set_title(f"{model}, {cset}", fontsize=9)
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("mean ROC over runs (TPR averaged at fixed FPR)")
    fig.tight_layout()
    _savefig(fig, path)
    plt.close(fig)


def plot_metric(results: dict, metric: str, path: Path) -> bool:
    """Grouped bars of ``metric`` (e.g. balanced_accuracy) like :func:`plot_accuracy`; False when no cell has it."""
    if not any(c.get(f"{metric}_mean") is not None for c in results["cells"]):
        return False
    cells = [dict(c, accuracy_mean=c.get(f"{metric}_mean"), accuracy_std=c.get(f"{metric}_std"))
             for c in results["cells"]]
    plot_accuracy(dict(results, cells=cells), path, label=LABEL.get(metric, metric))
    return True


def read_stats(run_dir: str | Path) -> list[dict]:
    """The tick records of a GAN run's ``stats.jsonl`` (unreadable lines skipped); [] without the file."""
    path = Path(run_dir) / "stats.jsonl"
    if not path.is_file():
        return []
    out = []
    for ln in path.read_text().splitlines():
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "kimg" in rec and "event" not in rec:
            out.append(rec)
    return out


def _curve_keys(records: list[dict]) -> list[str]:
    """Numeric FID/KID keys of the tick records (``fid``, ``kid``, per-class or labelled variants)."""
    keys: dict = {}
    for r in records:
        for k, v in r.items():
            low = k.lower()
            if (low.startswith("fid") or low.startswith("kid")) and isinstance(v, (int, float)) \
                    and not isinstance(v, bool) and not low.endswith("_sec"):
                keys[k] = True
    return list(keys)


def plot_fid_curve(records: list[dict], floors: dict, path: Path, title: str = "") -> bool:
    """FID/KID of G_ema over training (kimg) from stats.jsonl records, real-vs-real floors as dashed lines.

    ``floors``: ``{label: value}`` keyed like the curve (``fid``, ``kid``) or free labels for FID.
    Returns False (nothing written) when no record holds an FID or KID.
    """
    keys = _curve_keys(records)
    if not keys:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in ("fid", "kid") if any(k.lower().startswith(g) for k in keys)]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.8), squeeze=False)
    for ax, g in zip(axes[0], groups):
        for k in (k for k in keys if k.lower().startswith(g)):
            pts = [(r["kimg"], r[k]) for r in records if isinstance(r.get(k), (int, float))]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=k)
        for label, v in floors.items():
            if label.lower().startswith(g) and v is not None and math.isfinite(v):
                ax.axhline(v, color="grey", ls="--", lw=1.2, label=f"real vs real floor: {label} {v:.4g}")
        ax.set_xlabel("kimg (thousands of real images shown)")
        ax.set_ylabel(g.upper())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title or "FID/KID of G_ema during GAN training (stats.jsonl)")
    fig.tight_layout()
    _savefig(fig, path)
    plt.close(fig)
    return True


def _gan_runs(gan_data: list | None) -> dict:
    """Per synthetic folder: its manifest and the GAN run (directory of its snapshot) with its stats.jsonl."""
    runs = {}
    for g in gan_data or []:
        try:
            m = json.loads((Path(g) / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError):
            m = {}
        snap = m.get("generator", {}).get("snapshot")
        run_dir = Path(snap).parent if snap else None
        runs[g] = {"manifest": m, "run_dir": run_dir, "stats": read_stats(run_dir) if run_dir else []}
    return runs


def collect(experiment_dir, alpha: float = 0.05, compute_image_metrics: bool = True) -> ReportData:
    """Step 1 of the report: aggregate the grid, read the ROC curves, test the pairs, load the image metrics."""
    from hpcgan.experiment.grid import aggregate, ensure_image_metrics, expand, read_experiment_config

    exp = Path(experiment_dir)
    results = aggregate(exp)
    cfg = read_experiment_config(exp)
    if results["n_done"] == 0:
        raise HpcganError(f"{exp}: no task has finished yet ({results['n_tasks']} tasks); run `hpcgan experiment` first")
    rocs: dict = {}
    for t in expand(cfg):
        p = Path(t.outdir) / "test_metrics.json"
        if p.is_file():
            rocs.setdefault((t.class_set, t.model, t.aug), []).append(json.loads(p.read_text()).get("roc"))
    imetrics = None
    if cfg.gan_data and cfg.image_metrics:
        if compute_image_metrics:
            imetrics = ensure_image_metrics(cfg)
        elif (exp / "image_metrics.json").is_file():
            imetrics = json.loads((exp / "image_metrics.json").read_text())
    out = exp / "report"
    out.mkdir(parents=True, exist_ok=True)
    return ReportData(exp=exp, out=out, cfg=cfg, results=results, rocs=rocs, comps=comparisons(results, alpha=alpha),
                      imetrics=imetrics, gan_runs=_gan_runs(cfg.gan_data), alpha=alpha)


def _md_class_set(d: ReportData, cset: str) -> list[str]:
    """report.md: the study's table, the full cell table and the paired comparisons of one class set."""
    results = d.results
    cells = [c for c in results["cells"] if c["class_set"] == cset]
    pos = positive_classes(d, cset)
    L = [f"## Classes {cset}" + (f" (positive class for TPR/TNR/FPR: {', '.join(pos)})" if pos else ""), "",
         "Mean test accuracy and balanced accuracy over runs (the study's table):", "",
         "| augmentation | " + " | ".join(f"{m} {w}" for m in results["models"] for w in ("accuracy", "balanced acc."))
         + " |", "| --- |" + " --- |" * (2 * len(results["models"]))]
    for aug in results["augs"]:
        row = [fmt_mean_std(next(c for c in cells if c["model"] == m and c["aug"] == aug), k) for m in results["models"]
               for k in ("accuracy", "balanced_accuracy")]
        L.append(f"| {aug} | " + " | ".join(row) + " |")
    L += ["", "| model | augmentation | runs | " + " | ".join(LABEL[k] for k in TABLE_METRICS) + " | ROC AUC |",
          "| --- | --- | --- |" + " --- |" * (len(TABLE_METRICS) + 1)]
    for c in cells:
        L.append(f"| {c['model']} | {c['aug']} | {c['n_runs']} | "
                 + " | ".join(fmt_mean_std(c, k) for k in TABLE_METRICS) + f" | {fmt_mean_std(c, 'roc_auc')} |")
    L.append("")
    cc = [c for c in d.comps if c["class_set"] == cset]
    if cc:
        L += [f"Paired comparisons of accuracy and balanced accuracy (same seeds; t-test `scipy.stats.ttest_rel`, "
              f"{int(100 * cc[0]['confidence'])}% percentile bootstrap CI of the mean difference)"
              + ("; gan vs rebalance separates realism from rebalancing:" if any(c["b"] == "rebalance" for c in cc)
                 else ":"), "",
              "| metric | model | A vs B | pairs | mean A - B | 95% CI | t | p | verdict |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for c in cc:
            L.append(f"| {LABEL[c['metric']]} | {c['model']} | {c['a']} vs {c['b']} | {c['n']} | {comparison_cells(c)} "
                     f"| {c['verdict']} |")
        L.append("")
    return L


def markdown(d: ReportData) -> str:
    """Step 3: report.md."""
    from hpcgan.metrics.compare import format_markdown

    L = [f"# Experiment report: {d.results['experiment']}", ""] + [f"- {s}" for s in summary_lines(d)] + [""]
    for cset in d.results["class_sets"]:
        L += _md_class_set(d, cset)
    L += external_tables(d.results)
    if d.results.get("external"):
        L += ["External sets: `external.csv`, `external.json`.", ""]
    L += ["Per-run numbers: `runs.csv`; cells: `table.csv`; tests: `comparisons.csv`. With pictures (sample grids, "
          "FID curve, memorisation pairs, configs): `report.html`.", ""]
    L += [f"![{name}]({Path(path).name})\n" for name, path in d.plots.items()]
    if d.imetrics:
        L += ["## Generated against real images", ""]
        for g, res in d.imetrics.items():
            L += [f"`{g}`:", "", format_markdown(res), ""]
    elif d.cfg.gan_data:
        L += ["## Generated against real images", "", "not computed (image_metrics is off in the experiment config)", ""]
    return "\n".join(L)


COMPARISON_COLS = ["metric", "class_set", "model", "a", "b", "n", "seeds", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high",
                   "t", "p", "significant", "verdict"]


def write_tables(d: ReportData) -> None:
    """Step 2: table.csv, runs.csv, comparisons.csv and comparisons.json."""
    table_cols = ["class_set", "model", "aug", "n_runs"] + [f"{k}_{s}" for k in
                                                             ("accuracy", "tpr", "tnr", "fpr", "fnr", "precision",
                                                              "f1", "roc_auc") for s in ("mean", "std")]
    table_cols += [f"{k}_{s}" for k in table_metrics(d) if f"{k}_mean" not in table_cols for s in ("mean", "std")]
    atomic_write_text(d.out / "table.csv", _csv_text([dict(c, seeds=None) for c in d.results["cells"]], table_cols))
    atomic_write_text(d.out / "runs.csv", _csv_text(d.results["rows"], run_columns(d)))
    atomic_write_text(d.out / "comparisons.csv", _csv_text(
        [dict(c, seeds=" ".join(map(str, c["seeds"]))) for c in d.comps], COMPARISON_COLS))
    atomic_write_text(d.out / "comparisons.json", json.dumps(d.comps, indent=1))
    write_external_tables(d)


def write_external_tables(d: ReportData) -> None:
    """external.csv (one row per external set x cell) and external.json (``results["external"]``)."""
    from hpcgan.experiment.grid import EXTERNAL_KEYS

    ext = d.results.get("external") or {}
    if not ext:
        return
    rows = [dict(c, set=n, data=e["data"], split=e["split"], seeds=" ".join(map(str, c["seeds"])))
            for n, e in ext.items() for c in e["cells"]]
    cols = ["set", "data", "split", "class_set", "model", "aug", "n_runs", "seeds", "n"]
    cols += [f"{k}_{s}" for k in EXTERNAL_KEYS if k != "n" for s in ("mean", "std")]
    atomic_write_text(d.out / "external.csv", _csv_text(rows, cols))
    atomic_write_text(d.out / "external.json", json.dumps(ext, indent=1))


def write_plots(d: ReportData) -> None:
    """Step 2: accuracy.png, balanced_accuracy.png (when measured), roc.png, fid-<k>.png per GAN run with FIDs."""
    plot_accuracy(d.results, d.out / "accuracy.png")
    d.plots["accuracy"] = d.out / "accuracy.png"
    if plot_metric(d.results, "balanced_accuracy", d.out / "balanced_accuracy.png"):
        d.plots["balanced accuracy"] = d.out / "balanced_accuracy.png"
    plot_roc(d.results, d.rocs, d.out / "roc.png")
    d.plots["roc"] = d.out / "roc.png"
    for k, (g, run) in enumerate(d.gan_runs.items()):
        path = d.out / f"fid-{k}.png"
        if plot_fid_curve(run["stats"], fid_floors(d, g), path, title=f"GAN run {run['run_dir']}"):
            d.plots[f"FID/KID during training of {g}"] = path


def write_report(experiment_dir, alpha: float = 0.05, compute_image_metrics: bool = True) -> Path:
    """Aggregate and write ``report/`` (see the module docstring); returns the path of report.md."""
    d = collect(experiment_dir, alpha=alpha, compute_image_metrics=compute_image_metrics)
    write_tables(d)
    write_plots(d)
    atomic_write_text(d.out / "report.md", markdown(d))
    write_html(d)
    return d.out / "report.md"


def report_and_summarise(experiment_dir, alpha: float = 0.05, compute_image_metrics: bool = True) -> dict:
    """:func:`write_report` and where it went; returns {"experiment_dir", "report", "n_done" (of results.json)}."""
    path = write_report(experiment_dir, alpha=alpha, compute_image_metrics=compute_image_metrics)
    print(f"report: {path} (tables table.csv, runs.csv, comparisons.csv; plots accuracy.png, roc.png in {path.parent})")
    print(f"open in a browser: {path.parent / 'report.html'}")
    results = json.loads((Path(experiment_dir) / "results.json").read_text())
    return {"experiment_dir": str(experiment_dir), "report": str(path), "n_done": results.get("n_done")}


def report_main(experiment_dir: str, alpha: float = 0.05, no_image_metrics: bool = False) -> int:
    """Entry of ``hpcgan report``: write the report, print its table and where it is."""
    report_and_summarise(experiment_dir, alpha=alpha, compute_image_metrics=not no_image_metrics)
    return 0
