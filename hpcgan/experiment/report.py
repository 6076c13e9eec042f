"""The experiment's report (``hpcgan report EXPERIMENT_DIR``): tables, paired tests, plots, image metrics.

Writes into ``EXPERIMENT_DIR/report/``:

* ``report.md``: what was run (n runs, seeds, data counts, settings), the study's table
  (mean ± std over runs of accuracy, TPR, TNR, FPR per model x aug x class set), the
  paired comparisons, the image-metric table (FID/KID, RMSE, PSNR, SRE, SAM, SSIM,
  memorisation) of every gan_data folder;
* ``table.csv``: one row per cell with ``<metric>_mean`` and ``<metric>_std``;
* ``runs.csv``: one row per run (accuracy, TPR, TNR, FPR, ...);
* ``comparisons.csv``: the paired tests;
* ``accuracy.png``: mean accuracy per cell with std error bars; ``roc.png``: mean ROC per cell.

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

__all__ = ["paired_comparison", "verdict", "write_report", "report_main", "TABLE_METRICS"]

TABLE_METRICS = ("accuracy", "tpr", "tnr", "fpr")
LABEL = {"accuracy": "accuracy", "tpr": "TPR", "tnr": "TNR", "fpr": "FPR", "fnr": "FNR", "precision": "precision",
         "f1": "F1", "roc_auc": "ROC AUC"}


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


def _f(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def _pm(cell: dict, k: str) -> str:
    m, s = cell.get(f"{k}_mean"), cell.get(f"{k}_std")
    return "-" if m is None else f"{m:.4f} ± {s:.4f}"


def comparisons(results: dict, alpha: float = 0.05) -> list[dict]:
    """Paired accuracy comparisons: each aug against ``none``, and gan / classic+gan against classic."""
    augs = results["augs"]
    pairs = [(a, "none") for a in augs if a != "none" and "none" in augs]
    pairs += [(a, "classic") for a in ("gan", "classic+gan") if a in augs and "classic" in augs]
    out = []
    for cset in results["class_sets"]:
        for model in results["models"]:
            for a, b in pairs:
                ra = {r["seed"]: r["accuracy"] for r in results["rows"]
                      if (r["class_set"], r["model"], r["aug"]) == (cset, model, a) and r["accuracy"] is not None}
                rb = {r["seed"]: r["accuracy"] for r in results["rows"]
                      if (r["class_set"], r["model"], r["aug"]) == (cset, model, b) and r["accuracy"] is not None}
                seeds = sorted(set(ra) & set(rb))
                c = paired_comparison([ra[s] for s in seeds], [rb[s] for s in seeds], alpha=alpha)
                c.update(class_set=cset, model=model, a=a, b=b, seeds=seeds)
                out.append(c)
    return out


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


def plot_accuracy(results: dict, path: Path) -> None:
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
        ax.set_ylabel("test accuracy (mean ± std over runs)")
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


def write_report(experiment_dir, alpha: float = 0.05, compute_image_metrics: bool = True) -> Path:
    """Aggregate and write ``report/`` (see the module docstring); returns the path of report.md."""
    import yaml

    from hpcgan.experiment.grid import _from_dict, aggregate, ensure_image_metrics, expand
    from hpcgan.metrics.compare import format_markdown

    exp = Path(experiment_dir)
    results = aggregate(exp)
    cfg = _from_dict(yaml.safe_load((exp / "experiment.yaml").read_text()))
    cfg.outdir, cfg.name = str(exp.parent), exp.name
    out = exp / "report"
    out.mkdir(parents=True, exist_ok=True)
    if results["n_done"] == 0:
        raise HpcganError(f"{exp}: no task has finished yet ({results['n_tasks']} tasks); run `hpcgan experiment` first")

    rocs: dict = {}
    for t in expand(cfg):
        p = Path(t.outdir) / "test_metrics.json"
        if p.is_file():
            rocs.setdefault((t.class_set, t.model, t.aug), []).append(json.loads(p.read_text()).get("roc"))
    comps = comparisons(results, alpha=alpha)
    imetrics = None
    if cfg.gan_data and cfg.image_metrics:
        if compute_image_metrics:
            imetrics = ensure_image_metrics(cfg)
        elif (exp / "image_metrics.json").is_file():
            imetrics = json.loads((exp / "image_metrics.json").read_text())

    seeds = sorted({r["seed"] for r in results["rows"]})
    L = [f"# Experiment report: {results['experiment']}", ""]
    L.append(f"- experiment directory: `{exp}`")
    L.append(f"- tasks: {results['n_done']} of {results['n_tasks']} finished"
             + (f"; missing: {', '.join(results['missing'])}" if results["missing"] else ""))
    L.append(f"- grid: models {', '.join(results['models'])} x augmentation {', '.join(results['augs'])} x "
             f"class sets {' | '.join(results['class_sets'])} x {results['runs']} runs; run r uses seed r "
             f"(seeds {', '.join(map(str, seeds))}): same seeds in every cell, so cells are paired")
    L.append(f"- classifier: {cfg.epochs} epochs, batch {cfg.batch}, lr {cfg.lr}, image size "
             f"{cfg.image_size or 'model default'}, pretrained {cfg.pretrained}, real images per class capped at "
             f"{cfg.limit_per_class if cfg.limit_per_class else 'no cap'}; the best-validation epoch is tested")
    L.append(f"- real data `{cfg.data}`: {_data_counts(cfg.data)}")
    n_test = sorted({r["n_test"] for r in results["rows"] if r.get("n_test") is not None})
    if n_test:
        L.append(f"- test images per run: {', '.join(map(str, n_test))}")
    for g in cfg.gan_data or []:
        L.append(f"- synthetic data {_gan_summary(g)}; used by gan modes: {cfg.gan_n} images"
                 + (f" of {', '.join(cfg.gan_classes)}" if cfg.gan_classes else ""))
    mixes = [r["train_mix"] for r in results["rows"] if r.get("train_mix") and r["aug"] in ("gan", "classic+gan")]
    if mixes:
        m = mixes[0]
        L.append(f"- training mix of a gan run: real {m.get('real')}, synthetic {m.get('synthetic')}")
    L.append(f"- std is the sample standard deviation over runs (ddof=1)")
    L.append("")

    for cset in results["class_sets"]:
        cells = [c for c in results["cells"] if c["class_set"] == cset]
        pos = {r.get("positive_class") for r in results["rows"] if r["class_set"] == cset} - {None}
        L.append(f"## Classes {cset}" + (f" (positive class for TPR/TNR/FPR: {', '.join(sorted(pos))})" if pos else ""))
        L.append("")
        L.append("Mean test accuracy over runs (the study's table):")
        L.append("")
        L.append("| augmentation | " + " | ".join(results["models"]) + " |")
        L.append("| --- |" + " --- |" * len(results["models"]))
        for aug in results["augs"]:
            row = [_pm(next(c for c in cells if c["model"] == m and c["aug"] == aug), "accuracy")
                   for m in results["models"]]
            L.append(f"| {aug} | " + " | ".join(row) + " |")
        L.append("")
        L.append("| model | augmentation | runs | " + " | ".join(LABEL[k] for k in TABLE_METRICS) + " | ROC AUC |")
        L.append("| --- | --- | --- |" + " --- |" * (len(TABLE_METRICS) + 1))
        for c in cells:
            L.append(f"| {c['model']} | {c['aug']} | {c['n_runs']} | "
                     + " | ".join(_pm(c, k) for k in TABLE_METRICS) + f" | {_pm(c, 'roc_auc')} |")
        L.append("")
        cc = [c for c in comps if c["class_set"] == cset]
        if cc:
            L.append(f"Paired comparisons of accuracy (same seeds; t-test `scipy.stats.ttest_rel`, "
                     f"{int(100 * cc[0]['confidence'])}% percentile bootstrap CI of the mean difference):")
            L.append("")
            L.append("| model | A vs B | pairs | mean A - B | 95% CI | t | p | verdict |")
            L.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
            for c in cc:
                ci = "-" if c["ci_low"] is None else f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]"
                md = "-" if c["mean_diff"] is None else f"{c['mean_diff']:+.4f}"
                L.append(f"| {c['model']} | {c['a']} vs {c['b']} | {c['n']} | {md} | {ci} | "
                         f"{_f(c['t'], 3)} | {_f(c['p'], 4)} | {c['verdict']} |")
            L.append("")
    L.append("Per-run numbers: `runs.csv`; cells: `table.csv`; tests: `comparisons.csv`.")
    L.append("")
    L.append("![accuracy](accuracy.png)")
    L.append("")
    L.append("![roc](roc.png)")
    L.append("")
    if imetrics:
        L.append("## Generated against real images")
        L.append("")
        for g, res in imetrics.items():
            L.append(f"`{g}`:")
            L.append("")
            L.append(format_markdown(res))
            L.append("")
    elif cfg.gan_data:
        L.append("## Generated against real images")
        L.append("")
        L.append("not computed (image_metrics is off in the experiment config)")
        L.append("")

    table_cols = ["class_set", "model", "aug", "n_runs"] + [f"{k}_{s}" for k in
                                                             ("accuracy", "tpr", "tnr", "fpr", "fnr", "precision",
                                                              "f1", "roc_auc") for s in ("mean", "std")]
    cells = [dict(c, seeds=None) for c in results["cells"]]
    atomic_write_text(out / "table.csv", _csv_text(cells, table_cols))
    atomic_write_text(out / "runs.csv", _csv_text(results["rows"], ["class_set", "model", "aug", "run", "seed",
                                                                    "accuracy", "tpr", "tnr", "fpr", "fnr",
                                                                    "precision", "f1", "roc_auc", "best_epoch",
                                                                    "n_test", "name"]))
    atomic_write_text(out / "comparisons.csv", _csv_text(
        [dict(c, seeds=" ".join(map(str, c["seeds"]))) for c in comps],
        ["class_set", "model", "a", "b", "n", "seeds", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "t", "p",
         "significant", "verdict"]))
    plot_accuracy(results, out / "accuracy.png")
    plot_roc(results, rocs, out / "roc.png")
    atomic_write_text(out / "comparisons.json", json.dumps(comps, indent=1))
    atomic_write_text(out / "report.md", "\n".join(L))
    return out / "report.md"


def report_main(experiment_dir: str, alpha: float = 0.05, no_image_metrics: bool = False) -> int:
    """Entry of ``hpcgan report``: write the report, print its table and where it is."""
    path = write_report(experiment_dir, alpha=alpha, compute_image_metrics=not no_image_metrics)
    print(f"report: {path} (tables table.csv, runs.csv, comparisons.csv; plots accuracy.png, roc.png in {path.parent})")
    return 0
