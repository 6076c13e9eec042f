"""`hpcgan demo --quick` end to end through the CLI: every stage for real, the report complete, a log-friendly
output when piped; a re-run skips."""

from __future__ import annotations

import csv
import json
import re
import subprocess

ESCAPES = re.compile(r"\r|\x1b")


def test_demo_quick_end_to_end(exp_demo_quick):
    out, proc, report = exp_demo_quick["out"], exp_demo_quick["proc"], exp_demo_quick["report"]
    assert f"report: {report}" in proc.stdout
    for name in ("report.md", "report.html", "table.csv", "runs.csv", "comparisons.csv", "accuracy.png", "roc.png"):
        assert (report.parent / name).stat().st_size > 0, name
    with open(report.parent / "table.csv") as fh:
        table = list(csv.DictReader(fh))
    augs = ["none", "classic", "gan", "classic+gan", "rebalance"]
    assert [(r["model"], r["aug"]) for r in table] == [("small_cnn", a) for a in augs]
    assert all(int(r["n_runs"]) == 2 and r["accuracy_mean"] != "" and r["balanced_accuracy_mean"] != ""
               for r in table)
    with open(report.parent / "runs.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 10
    with open(report.parent / "comparisons.csv") as fh:
        pairs = {(c["metric"], c["a"], c["b"]) for c in csv.DictReader(fh)}
    assert {(m, "gan", "rebalance") for m in ("accuracy", "balanced_accuracy")} <= pairs
    text = report.read_text()
    assert "positive class for TPR/TNR/FPR: Opacity" in text  # TPR is about finding the disease
    assert "## Generated against real images" in text and "memorisation" in text
    assert "not distinguishable from noise" in text or "significant at alpha" in text or "equal" in text
    # the synthetic images really went into the gan runs
    mix = json.loads((out / "experiments" / "demo" / "tasks" / "small_cnn-gan-all-run1" / "test_metrics.json")
                     .read_text())["train_mix"]
    assert mix["synthetic"] == {"Opacity": 24}
    tasks = out / "experiments" / "demo" / "tasks"
    reb = json.loads((tasks / "small_cnn-rebalance-all-run1" / "test_metrics.json").read_text())
    assert reb["train_mix"]["oversampled"] == {"Opacity": 24} and reb["train_mix"]["real"] == mix["real"]
    assert reb["positive_class"] == "Opacity" and reb["class_names"] == ["Clear", "Opacity"]
    gen = json.loads((out / "synthetic" / "manifest.json").read_text())
    assert gen["counts"]["train"] == {"Clear": 24, "Opacity": 24}


def test_demo_piped_output_is_a_readable_log(exp_demo_quick):
    proc, report = exp_demo_quick["proc"], exp_demo_quick["report"]
    both = proc.stdout + proc.stderr
    assert not ESCAPES.search(both), [ln for ln in both.splitlines(True) if ESCAPES.search(ln)][:3]
    lines = both.splitlines()
    assert 20 <= len(lines) <= 100, len(lines)  # a line per stage, tick and task (+ one per 30 s), no bar redraws
    # the loops report in plain lines: what, how far, rate (and the GAN's tick lines)
    assert re.search(r"^stylegan2 32px: 64/64 img done in [\dhms]+ \([\d.]+ img/s\)$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^demo: tasks: 10/10 task done in ", proc.stdout, re.M)  # 5 modes x 2 runs
    assert proc.stdout.splitlines()[-1] == f"open in a browser: {report.with_name('report.html')}"


def test_demo_rerun_skips_every_stage(exp_demo_quick):
    again = subprocess.run(exp_demo_quick["cmd"] + ["--progress", "off"], cwd=exp_demo_quick["repo"],
                           env=exp_demo_quick["env"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done earlier, skipped") == 6
    assert again.stdout.splitlines()[-1].endswith("report.html")
