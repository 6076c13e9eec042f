"""`hpcgan demo --quick` end to end through the CLI: every stage for real, the report complete; a re-run skips."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "hpcgan.cli", "demo", "--quick", "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = out / "experiments" / "demo" / "report" / "report.md"
    assert f"report: {report}" in proc.stdout
    for name in ("report.md", "table.csv", "runs.csv", "comparisons.csv", "accuracy.png", "roc.png"):
        assert (report.parent / name).stat().st_size > 0, name
    with open(report.parent / "table.csv") as fh:
        table = list(csv.DictReader(fh))
    augs = ["none", "classic", "gan", "classic+gan"]
    assert [(r["model"], r["aug"]) for r in table] == [("small_cnn", a) for a in augs]
    assert all(int(r["n_runs"]) == 2 and r["accuracy_mean"] != "" for r in table)
    with open(report.parent / "runs.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 8
    text = report.read_text()
    assert "## Generated against real images" in text and "memorisation" in text
    assert "not distinguishable from noise" in text or "significant at alpha" in text or "equal" in text
    # the synthetic images really went into the gan runs
    mix = json.loads((out / "experiments" / "demo" / "tasks" / "small_cnn-gan-all-run1" / "test_metrics.json")
                     .read_text())["train_mix"]
    assert mix["synthetic"] == {"Opacity": 24}
    gen = json.loads((out / "synthetic" / "manifest.json").read_text())
    assert gen["counts"]["train"] == {"Clear": 24, "Opacity": 24}

    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done earlier, skipped") == 6
