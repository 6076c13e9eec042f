"""report.html: the experiment's report as one self-contained page (``hpcgan report``).

Everything is inside the file: the plots and image grids are PNG data URIs, the
style sheet and a small script are inline, nothing is fetched from a network. Written
with the standard library only; every text from a file or a config goes through
``html.escape``. The page holds, in order: what was run; per class set the study's
table, every metric per cell and the paired comparisons; the accuracy, balanced
accuracy and ROC charts; per class real images next to generated ones; the GAN's
FID/KID curve with the real-vs-real floor and the image metrics; the memorisation
check as pictures; the per-run table; the resolved configs and software versions.

The script at the end writes, once the page has loaded, each image's natural width
into ``#image-check`` (``data-widths``, ``data-broken``): a headless browser's DOM
dump shows whether every image decoded.
"""

from __future__ import annotations

import base64
import html
import json
import platform
import re
import time
from pathlib import Path

from hpcgan.atomic import atomic_write_text
from hpcgan.experiment.reportdata import (LABEL, comparison_cells, fid_floors, fmt_mean_std, fmt_num,
                                          positive_classes, run_columns, summary_lines, table_metrics)

__all__ = ["write_html", "data_uri", "table"]

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #111; background: #fff; max-width: none; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #bbb; margin-top: 2em; } h3 { margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pair { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.pair.scroll { flex-wrap: nowrap; } caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; }
figure { margin: 0.5em 0; } figcaption { font-size: 0.85em; color: #333; max-width: 60em; }
.scroll { overflow-x: auto; } img.px { image-rendering: pixelated; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
.note { color: #555; font-style: italic; } .flag { color: #a00; font-weight: bold; }
"""

CHECK_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.images, widths = [], broken = 0;
  for (var i = 0; i < imgs.length; i++) {
    var w = imgs[i].complete ? imgs[i].naturalWidth : 0;
    widths.push(w);
    if (!w) broken++;
  }
  var el = document.getElementById('image-check');
  el.setAttribute('data-widths', widths.join(','));
  el.setAttribute('data-broken', String(broken));
  el.textContent = imgs.length + ' images, ' + broken + ' failed to load';
});
"""

E = html.escape


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _inline(text: str) -> str:
    """Escape ``text``; markdown inline code (`x`) becomes <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", E(str(text)))


def _img(png: bytes, alt: str, width: int | None = None, pixelated: bool = False) -> str:
    style = f' style="width:{width}px;max-width:none"' if width else ""
    cls = ' class="px"' if pixelated else ""
    return f'<img src="{data_uri(png)}" alt="{E(alt)}"{cls}{style}>'


def _file_img(path: Path, alt: str) -> str:
    return _img(Path(path).read_bytes(), alt)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def table(header: list[str], rows: list[list], caption: str | None = None, numeric: set | None = None) -> str:
    """An HTML table; cells are escaped text (``numeric``: column indexes right-aligned)."""
    numeric = numeric or set()
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{_inline(caption)}</caption>")
    out.append("<tr>" + "".join(f"<th>{E(str(h))}</th>" for h in header) + "</tr>")
    for r in rows:
        out.append("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{_inline("" if v is None else v)}</td>'
                                    for i, v in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


# -- sections -------------------------------------------------------------------------------------------


def _class_set_section(d, cset: str) -> str:
    res = d.results
    cells = [c for c in res["cells"] if c["class_set"] == cset]
    pos = positive_classes(d, cset)
    out = [f"<h2>Classes {E(cset)}</h2>"]
    if pos:
        out.append(f"<p>positive class for TPR/TNR/FPR and ROC: <b>{E(', '.join(pos))}</b></p>")
    study = [[aug] + [fmt_mean_std(next(c for c in cells if c["model"] == m and c["aug"] == aug), "accuracy")
                      for m in res["models"]] for aug in res["augs"]]
    out.append(table(["augmentation"] + res["models"], study, "Mean test accuracy ± std over runs (the study's table)",
                     numeric=set(range(1, len(res["models"]) + 1))))
    keys = table_metrics(d)
    full = [[c["model"], c["aug"], c["n_runs"]] + [fmt_mean_std(c, k) for k in keys] for c in cells]
    out.append(table(["model", "augmentation", "runs"] + [LABEL.get(k, k) for k in keys], full,
                     "Every metric per cell (mean ± std over runs)", numeric=set(range(2, len(keys) + 3))))
    ext = _external_keys(cells, "_mean")
    if ext:  # external test sets: every external_<set>_<metric> the cells carry
        rows = [[c["model"], c["aug"]] + [fmt_mean_std(c, k) for k in ext] for c in cells]
        out.append(table(["model", "augmentation"] + [k.replace("external_", "", 1) for k in ext], rows,
                         "External test sets (mean ± std over runs)", numeric=set(range(2, len(ext) + 2))))
    cc = [c for c in d.comps if c["class_set"] == cset]
    if cc:
        rows = []
        for c in cc:
            md, ci, t, p = comparison_cells(c).split(" | ")
            rows.append([c["model"], f"{c['a']} vs {c['b']}" + (f" ({c['metric']})" if c.get("metric") else ""),
                         c["n"], md, ci, t, p, c["verdict"]])
        out.append(table(["model", "A vs B", "pairs", "mean A - B", f"{int(100 * cc[0]['confidence'])}% CI", "t", "p",
                          "verdict"], rows, "Paired comparisons (same seeds; `scipy.stats.ttest_rel`, percentile "
                          "bootstrap CI of the mean difference)", numeric={2, 3, 5, 6}))
    return "\n".join(out)


def _external_keys(items: list[dict], suffix: str = "") -> list[str]:
    """Keys ``external_<set>_<metric><suffix>`` present in ``items`` (without the suffix), in first-seen order."""
    keys: dict = {}
    for it in items:
        for k in it:
            if k.startswith("external_") and k.endswith(suffix):
                keys[k[: len(k) - len(suffix)] if suffix else k] = True
    return list(keys)


def _charts_section(d) -> str:
    out = ["<h2>Charts</h2>", '<div class="pair">']
    for name, path in d.plots.items():
        if not name.startswith("FID"):
            out.append(f"<figure>{_file_img(path, name)}<figcaption>{E(name)}: mean over runs"
                       f"{'' if name == 'roc' else ', error bars: std over runs'}</figcaption></figure>")
    out.append("</div>")
    return "\n".join(out)


def _grid_figure(grid: dict | None, what: str) -> str:
    if grid is None:
        return f'<figure><p class="note">no {E(what)} images</p></figure>'
    cap = (f"{what}: {grid['n']} images ({grid['rows']} x {grid['cols']}), {grid['resolution']} px shown at "
           f"{grid['cell_px']} px (nearest-neighbour)")
    return f"<figure>{_img(grid['png'], what, width=grid['width'], pixelated=True)}<figcaption>{E(cap)}</figcaption></figure>"


def _samples_section(d) -> str:
    from hpcgan.experiment.pictures import class_grids

    classes = sorted({n for r in d.results["rows"] for n in (r.get("class_names") or [])}) or \
        _manifest_classes(d.cfg.data)
    out = ["<h2>Real and generated images</h2>",
           f"<p>Left: real images of the training split of <code>{E(str(d.cfg.data))}</code> (a seeded pick); "
           "right: generated images of each synthetic folder (the first seeds).</p>"]
    for item in class_grids(d.cfg.data, d.cfg.gan_data, classes):
        out.append(f"<h3>{E(item['class'])}</h3>")
        out.append('<div class="pair scroll">' + _grid_figure(item["real"], f"real {item['class']}"))
        for g, grid in item["generated"].items():
            out.append(_grid_figure(grid, f"generated {item['class']} ({g})"))
        out.append("</div>")
    return "\n".join(out)


def _manifest_classes(data: str) -> list[str]:
    try:
        return list(json.loads((Path(data) / "manifest.json").read_text()).get("class_names", []))
    except (OSError, json.JSONDecodeError):
        return []


def _metric_value(v) -> str:
    if isinstance(v, dict):
        if "mean" in v:
            s = f"{fmt_num(v['mean'], 4)} ± {fmt_num(v.get('std'), 4)}"
            return s + (f" ({v['n_infinite']} inf)" if v.get("n_infinite") else "")
        return "; ".join(f"{k}: {_metric_value(x)}" for k, x in v.items())
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if _num(v):
        return fmt_num(float(v), 4)
    return "-" if v is None else str(v)


def _image_metrics_table(res: dict) -> str:
    """Every key of ``generated`` / ``baseline`` of a compare_shards result, as found (labels included)."""
    gen, base = res.get("generated") or {}, res.get("baseline") or {}
    keys = list(dict.fromkeys(list(gen) + list(base)))
    rows = [[k, _metric_value(gen.get(k)), _metric_value(base.get(k)) if base else "-"] for k in keys]
    head = ["metric", f"generated vs real {res.get('split_real', '?')}",
            f"real {res.get('split_train', '?')} vs real {res.get('split_real', '?')} (baseline)"]
    parts = [table(head, rows, f"extractor: {res.get('extractor') or '-'}; image counts: "
                   + ", ".join(f"{k} {_metric_value(v)}" for k, v in (res.get("n") or {}).items()))]
    for k, v in res.items():  # anything else numeric-keyed the metrics add (per-class FID, labels)
        if k not in ("generated", "baseline", "memorisation", "n", "notes", "metrics") and isinstance(v, dict) and v:
            parts.append(f"<p><b>{E(k)}</b>: {E(_metric_value(v))}</p>")
    for note in res.get("notes") or []:
        parts.append(f'<p class="note">note: {E(str(note))}</p>')
    return "\n".join(parts)


def _gan_section(d) -> str:
    out = ["<h2>The GAN: training curve and image metrics</h2>"]
    if not d.cfg.gan_data:
        return "\n".join(out + ['<p class="note">this experiment has no synthetic data (gan_data)</p>'])
    fid_plots = {n: p for n, p in d.plots.items() if n.startswith("FID")}
    for g, run in d.gan_runs.items():
        out.append(f"<h3>{E(g)}</h3><p>GAN run: <code>{E(str(run['run_dir']))}</code>, "
                   f"{len(run['stats'])} ticks in stats.jsonl</p>")
        name = f"FID/KID during training of {g}"
        if name in fid_plots:
            floors = fid_floors(d, g)
            cap = "FID/KID of G_ema over training; dashed: " + (
                ", ".join(f"{k} {v:.4g}" for k, v in floors.items()) + " of real train vs real test (the floor)"
                if floors else "no real-vs-real floor (the image metrics have no FID/KID baseline)")
            out.append(f"<figure>{_file_img(fid_plots[name], name)}<figcaption>{E(cap)}</figcaption></figure>")
        else:
            out.append('<p class="note">no FID/KID was measured during this training (stats.jsonl has none: '
                       "train with --metric-every N to get the curve)</p>")
        res = (d.imetrics or {}).get(g)
        out.append(_image_metrics_table(res) if res else
                   '<p class="note">image metrics not computed (image_metrics is off in the experiment config)</p>')
    return "\n".join(out)


def _memorisation_section(d) -> str:
    from hpcgan.experiment.pictures import closest_pairs

    out = ["<h2>Memorisation check</h2>",
           "<p>The generated images closest to a real training image of their class (RMSE in [0, 1] pixel units), "
           "each on the left of its nearest training image. Copies of training images would show as identical "
           "pairs with a distance near 0.</p>"]
    for g in d.cfg.gan_data or []:
        memo = ((d.imetrics or {}).get(g) or {}).get("memorisation")
        try:
            found = closest_pairs(d.cfg.data, g, d.cfg.metrics_num)
        except Exception as exc:  # noqa: BLE001 - a broken folder leaves a note, the report still renders
            out.append(f'<p class="flag">{E(g)}: cannot compute the closest pairs: {E(str(exc))}</p>')
            continue
        out.append(f"<h3>{E(g)}</h3>")
        if memo:
            flag = "FLAGGED" if memo.get("flagged") else "not flagged"
            out.append(f"<p><span class=\"{'flag' if memo.get('flagged') else ''}\">{flag}</span>: "
                       f"{_metric_value(memo.get('fraction_closer_than_real_median'))} of generated images are "
                       f"closer than the real test images' median {_metric_value(memo.get('reference_median'))}; "
                       f"{memo.get('near_copies')} near copies (distance &lt; "
                       f"{_metric_value(memo.get('near_copy_threshold'))}). {E(str(memo.get('criterion', '')))}</p>")
        out.append(f"<p>{found['n_generated']} generated against {found['n_train']} training images; median "
                   f"nearest distance {_metric_value(found['median_distance'])}.</p>")
        out.append('<div class="pair">')
        for k, p in enumerate(found["pairs"]):
            out.append(f"<figure>{_img(p['png'], f'closest pair {k + 1}', pixelated=True)}<figcaption>"
                       f"#{k + 1} {E(p['class'])}: distance {p['distance']:.4f}<br>generated {p['generated']} | "
                       f"train {p['train']}</figcaption></figure>")
        out.append("</div>")
    return "\n".join(out)


def _runs_section(d) -> str:
    cols = run_columns(d)
    cols += [k for k in _external_keys(d.results["rows"]) if k not in cols]
    rows = [[_metric_value(r.get(k)) if _num(r.get(k)) and not isinstance(r.get(k), int) else r.get(k)
             for k in cols] for r in d.results["rows"]]
    return "<h2>Every run</h2>\n" + table(cols, rows, "One row per finished task (runs.csv)",
                                         numeric={i for i, k in enumerate(cols) if k not in ("class_set", "model",
                                                                                              "aug", "name")})


def _read_text(path) -> str | None:
    try:
        return Path(path).read_text()
    except (OSError, TypeError):
        return None


def software_versions() -> dict:
    """torch, hpcgan, the native extension's build and the Python stack, as `hpcgan doctor` reports them."""
    import numpy

    from hpcgan import doctor

    info = doctor.report()
    keep = ("hpcgan", "torch", "torch_cuda", "native_extension", "native_backends", "cuda_devices", "threads")
    out = {k: info.get(k) for k in keep}
    out.update(python=platform.python_version(), numpy=numpy.__version__, platform=platform.platform())
    return out


def _configs_section(d) -> str:
    import yaml

    out = ["<h2>Configs and software</h2>", "<h3>Software</h3>",
           table(["package", "version"], [[k, v] for k, v in software_versions().items()])]
    out.append(f"<h3>experiment.yaml</h3><pre>{E(_read_text(d.exp / 'experiment.yaml') or '(missing)')}</pre>")
    for g, run in d.gan_runs.items():
        gen = run["manifest"].get("generator")
        if gen:
            text = yaml.safe_dump(gen, sort_keys=False, default_flow_style=None, width=110)
            out.append(f"<h3>generation of {E(g)} (its manifest.json)</h3><pre>{E(text)}</pre>")
        text = _read_text(Path(run["run_dir"]) / "config.yaml") if run["run_dir"] else None
        if text:
            out.append(f"<h3>GAN training config ({E(str(run['run_dir']))}/config.yaml)</h3><pre>{E(text)}</pre>")
    return "\n".join(out)


def _page(d, body: list[str]) -> str:
    title = f"Experiment report: {d.results['experiment']}"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{E(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{E(title)}</h1>",
        f"<p class=note>written {E(time.strftime('%Y-%m-%d %H:%M:%S %Z'))} by hpcgan report; the same numbers are "
        "in report.md, table.csv, runs.csv and comparisons.csv beside this file</p>",
        *body,
        '<p id="image-check" data-widths="" data-broken="">images not checked yet</p>',
        f"<script>{CHECK_SCRIPT}</script>", "</body></html>", ""])


def write_html(d) -> Path:
    """Step 4 of the report: ``report.html`` beside report.md (see the module docstring); returns its path."""
    body = ["<h2>What was run</h2><ul>" + "".join(f"<li>{_inline(s)}</li>" for s in summary_lines(d)) + "</ul>"]
    body += [_class_set_section(d, cset) for cset in d.results["class_sets"]]
    body += [_charts_section(d), _samples_section(d), _gan_section(d), _memorisation_section(d), _runs_section(d),
             _configs_section(d)]
    path = d.out / "report.html"
    atomic_write_text(path, _page(d, body))
    return path
