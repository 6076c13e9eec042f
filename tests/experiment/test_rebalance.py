"""The rebalance arm and external sets in a real grid (small_cnn, 32 px phantoms): tasks, aggregate, report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from hpcgan.errors import HpcganError
from hpcgan.experiment.grid import ExperimentConfig, expand, prepare_dir, run_local, validate

from .conftest import small_grid


@pytest.fixture(scope="module")
def gan_vs_rebalance(exp_shards, tmp_path_factory):
    """gan (6 of the shards' own Opacity images as 'synthetic') and rebalance x 2 runs, with the shards as an
    external set; then the report."""
    from hpcgan.experiment.report import write_report

    cfg = validate(ExperimentConfig(**small_grid(exp_shards, tmp_path_factory.mktemp("exp_reb"), augs=["gan",
                                    "rebalance"], gan_data=[str(exp_shards)], gan_n=6, gan_classes=["Opacity"],
                                    positive_class="Opacity", external={"ph": str(exp_shards)},
                                    external_split="test")))
    summary = run_local(cfg)
    return cfg, summary, write_report(summary["experiment_dir"])


def _task_json(t, name: str) -> dict:
    return json.loads((Path(t.outdir) / name).read_text())


def test_rebalance_tasks_train_on_the_gan_arms_class_counts(gan_vs_rebalance):
    cfg, s, _ = gan_vs_rebalance
    assert s["failed"] == [] and s["results"]["n_done"] == 4
    tasks = {(t.aug, t.seed): t for t in expand(cfg)}
    for seed in (1, 2):
        gan, reb = (_task_json(tasks[a, seed], "test_metrics.json")["train_mix"] for a in ("gan", "rebalance"))
        assert gan["synthetic"] == reb["oversampled"] == {"Opacity": 6}
        assert reb["synthetic"] == {} and reb["real"] == gan["real"]
    kw = tasks["rebalance", 1].classify
    assert kw["gan_data"] == [str(cfg.gan_data[0])] and kw["select"] == "balanced" and kw["balance"] == "none"


def test_report_compares_gan_with_rebalance_on_both_accuracies(gan_vs_rebalance):
    cfg, _, md = gan_vs_rebalance
    with open(md.parent / "comparisons.csv") as fh:
        comp = list(csv.DictReader(fh))
    assert [(c["metric"], c["a"], c["b"]) for c in comp] == [("accuracy", "gan", "rebalance"),
                                                            ("balanced_accuracy", "gan", "rebalance")]
    tasks = {(t.aug, t.seed): t for t in expand(cfg)}
    for c in comp:
        vals = {k: _task_json(t, "test_metrics.json")[c["metric"]] for k, t in tasks.items()}
        assert float(c["mean_diff"]) == pytest.approx(np.mean([vals["gan", s] - vals["rebalance", s] for s in (1, 2)]))
    text = md.read_text()
    assert "gan vs rebalance" in text and "balanced accuracy" in text
    assert "positive class for TPR/TNR/FPR: Opacity" in text
    with open(md.parent / "table.csv") as fh:
        assert all(r["balanced_accuracy_mean"] != "" for r in csv.DictReader(fh))


def test_external_set_per_task_and_in_the_report(gan_vs_rebalance):
    cfg, s, md = gan_vs_rebalance
    for t in expand(cfg):
        e = _task_json(t, "external_metrics.json")["ph"]
        own = _task_json(t, "test_metrics.json")
        assert e["split"] == "test" and e["n"] == own["n_test"]
        assert e["sensitivity"] == pytest.approx(own["tpr"]) and e["specificity"] == pytest.approx(own["tnr"])
    ext = s["results"]["external"]["ph"]
    assert [c["aug"] for c in ext["cells"]] == ["gan", "rebalance"] and all(c["n_runs"] == 2 for c in ext["cells"])
    with open(md.parent / "external.csv") as fh:
        rows = list(csv.DictReader(fh))
    cells = {c["aug"]: c for c in s["results"]["cells"]}
    for r in rows:  # the external set is the test split: its table repeats the test numbers
        assert float(r["sensitivity_mean"]) == pytest.approx(cells[r["aug"]]["tpr_mean"])
    assert "## External set ph" in md.read_text()


def test_adding_an_external_set_keeps_the_finished_tasks(gan_vs_rebalance, exp_shards):
    cfg, _, _ = gan_vs_rebalance
    before = {t.name: (Path(t.outdir) / "test_metrics.json").stat().st_mtime_ns for t in expand(cfg)}
    more = validate(ExperimentConfig(**{**cfg.__dict__, "external": {"ph": str(exp_shards), "all": str(exp_shards)},
                                        "external_split": "test"}))
    prepare_dir(more)  # not refused: external sets only add
    s = run_local(more)
    assert s["ran"] == [] and s["failed"] == [] and s["skipped"] == 4
    assert set(s["results"]["external"]) == {"ph", "all"}
    for t in expand(more):
        assert (Path(t.outdir) / "test_metrics.json").stat().st_mtime_ns == before[t.name]
        assert set(_task_json(t, "external_metrics.json")) == {"ph", "all"}
    with pytest.raises(HpcganError, match="different config"):
        prepare_dir(validate(ExperimentConfig(**{**cfg.__dict__, "select": "accuracy"})))


@pytest.mark.parametrize("over, words", [(dict(external=["a"]), "external"), (dict(external={"a/b": "x"}), "names"),
                                         (dict(external_split="val"), "external_split"),
                                         (dict(balance="x"), "balance"), (dict(select="x"), "select")])
def test_external_and_balance_config_errors(tmp_path, over, words):
    with pytest.raises(HpcganError, match=words):
        validate(ExperimentConfig(**small_grid(tmp_path, tmp_path, **over)))
