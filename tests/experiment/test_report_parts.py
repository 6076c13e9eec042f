"""Parts of the report that the quick demo does not reach: the FID/KID curve of stats.jsonl, and the HTML helpers."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from hpcgan.experiment.html import _image_metrics_table, table
from hpcgan.experiment.report import plot_fid_curve, read_stats


def _stats(path, fids):
    """A stats.jsonl as train-gan writes it: every tick a record, FID on some; an event line; a torn last line."""
    lines = []
    for tick, fid in enumerate(fids):
        rec = {"tick": tick, "nimg": 500 * tick, "kimg": 0.5 * tick, "loss_G": 1.0, "sec_per_kimg": 3.0}
        if fid is not None:
            rec.update(fid=fid, fid_extractor="fid-inception-2015-12-05", fid_sec=4.0)
        lines.append(json.dumps(rec))
    lines.append(json.dumps({"event": "nonfinite", "term": "loss_G", "kimg": 9.9}))
    path.write_text("\n".join(lines) + '\n{"tick": 9, "ki')
    return path


def test_read_stats_keeps_tick_records_only(tmp_path):
    _stats(tmp_path / "stats.jsonl", [300.0, None, 250.0])
    recs = read_stats(tmp_path)
    assert [r["tick"] for r in recs] == [0, 1, 2]
    assert read_stats(tmp_path / "missing") == []


def test_fid_curve_has_the_curve_and_the_floor(tmp_path):
    recs = read_stats(_stats(tmp_path / "stats.jsonl", [300.0, 280.0, None, 200.0]).parent)
    path = tmp_path / "fid.png"
    assert plot_fid_curve(recs, {"fid": 40.0, "kid": 0.01}, path, title="t")
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert img.shape[0] > 200 and img.shape[1] > 300
    blue = (img[..., 2] > 150) & (img[..., 0] < 100)  # matplotlib's first line colour: the FID curve
    assert blue.sum() > 50
    assert not plot_fid_curve([{"kimg": 0.5, "loss_G": 1.0}], {}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_html_tables_escape_and_render_new_metric_keys():
    t = table(["a<b", "n"], [["<script>x</script>", 3]], caption="`code` & more", numeric={1})
    assert "<script>" not in t and "&lt;script&gt;" in t and "<code>code</code> &amp; more" in t
    assert "<td class=num>3</td>" in t
    res = {"split_real": "test", "split_train": "train", "n": {"generated": 10}, "extractor": "net",
           "generated": {"FID (5k gen / 400 real)": 12.5, "fid_per_class": {"COVID": 20.0, "Normal": 15.25}},
           "baseline": {"FID (5k gen / 400 real)": 3.0}, "notes": ["a note"]}
    html = _image_metrics_table(res)
    assert "FID (5k gen / 400 real)" in html and "12.5000" in html and "3.0000" in html
    assert "COVID: 20.0000; Normal: 15.2500" in html and "note: a note" in html


def test_external_set_keys_are_found_generically():
    from hpcgan.experiment.html import _external_keys

    cells = [{"model": "m", "external_hannover_accuracy_mean": 0.5, "external_hannover_accuracy_std": 0.1,
              "external_hannover_n_mean": 40.0, "accuracy_mean": 0.9}]
    assert _external_keys(cells, "_mean") == ["external_hannover_accuracy", "external_hannover_n"]
    assert _external_keys([{"external_x_auc": 1.0, "seed": 1}]) == ["external_x_auc"]
