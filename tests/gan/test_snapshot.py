"""Snapshots: atomic and weights_only, exact resume, SIGTERM, NaN stop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hpcgan.errors import HpcganError
from hpcgan.gan.snapshot import list_snapshots, load_snapshot, resolve_resume, save_snapshot
from hpcgan.gan.train import resolve_config, train

from .helpers import TINY_FLAGS, cli, tiny_train_config

REPO = Path(__file__).resolve().parents[2]


def test_save_is_atomic_and_load_checks(tmp_path):
    path = save_snapshot(tmp_path / "snapshot-0000000008.pt", {"format": "hpcgan-gan-snapshot", "version": 1,
                                                               "x": torch.ones(2), "cfg": {"a": [1, "b", None]}})
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert load_snapshot(path)["cfg"] == {"a": [1, "b", None]}
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(HpcganError, match="not an hpcgan GAN snapshot"):
        load_snapshot(tmp_path / "other.pt")
    with pytest.raises(HpcganError, match="not found"):
        load_snapshot(tmp_path / "nope.pt")
    assert resolve_resume(str(tmp_path), None) == path


def test_resume_is_exact(gan_shards, tmp_path):
    """Snapshot at kimg 0.024 + resume to 0.048 == straight to 0.048 (weights, Adam, ADA p, pl_mean)."""
    cfg = tiny_train_config(gan_shards, tmp_path / "a", cond=True)
    straight = train(cfg)
    a_run = Path(straight["run_dir"])
    mid = a_run / "snapshot-0000000024.pt"
    b_run = tmp_path / "b" / "00000-resumed"
    b_run.mkdir(parents=True)
    shutil.copy(mid, b_run / mid.name)
    lines = (a_run / "stats.jsonl").read_text().splitlines()
    (b_run / "stats.jsonl").write_text("\n".join(lines) + "\n")  # includes lines after the snapshot: trimmed
    resumed = train(tiny_train_config(gan_shards, tmp_path / "b", cond=True, resume="latest"))
    assert resumed["run_dir"] == str(b_run) and resumed["kimg"] == pytest.approx(0.048)
    a, b = load_snapshot(straight["snapshot"]), load_snapshot(resumed["snapshot"])
    assert a["counters"] == b["counters"]
    for key in ("G", "D", "G_ema"):
        for k, v in a[key].items():
            torch.testing.assert_close(v, b[key][k], atol=1e-6, rtol=1e-5, msg=f"{key}.{k}")
    for k, st in a["opt_G"]["state"].items():
        torch.testing.assert_close(st["exp_avg_sq"], b["opt_G"]["state"][k]["exp_avg_sq"], atol=1e-9, rtol=1e-4)
    assert float(a["ada"]["p"]) == float(b["ada"]["p"]) > 0
    torch.testing.assert_close(a["loss"]["pl_mean"], b["loss"]["pl_mean"])
    got = [json.loads(x)["nimg"] for x in (b_run / "stats.jsonl").read_text().splitlines()]
    assert got == [8, 24, 40, 48]  # re-done ticks are not duplicated


@pytest.mark.parametrize("snap", [1, 2])
def test_stop_signal_at_a_tick_boundary_keeps_the_ticks(gan_shards, tmp_path, snap):
    """SIGTERM on the step that ends tick 1 (nimg 24): the tick completes, the snapshot is written, and the
    resumed run has the uninterrupted run's ticks and final state (snap 2: the tick itself writes no snapshot)."""
    straight = train(tiny_train_config(gan_shards, tmp_path / "a", snap=snap))

    def stop_at_24(ctx):
        if ctx["cur_nimg"] == 24:
            os.kill(os.getpid(), signal.SIGTERM)

    first = train(tiny_train_config(gan_shards, tmp_path / "b", snap=snap), on_step=stop_at_24)
    assert first["status"] == "interrupted" and first["kimg"] == pytest.approx(0.024)
    resumed = train(tiny_train_config(gan_shards, tmp_path / "b", snap=snap, resume="latest"))
    ticks = [[(r["tick"], r["nimg"]) for r in map(json.loads, (Path(run["run_dir"]) / "stats.jsonl").read_text().splitlines())]
             for run in (straight, resumed)]
    assert ticks[0] == ticks[1] == [(0, 8), (1, 24), (2, 40), (3, 48)]
    a, b = load_snapshot(straight["snapshot"]), load_snapshot(resumed["snapshot"])
    assert a["counters"] == b["counters"] and float(a["ada"]["p"]) == float(b["ada"]["p"])
    for k, v in a["G"].items():
        torch.testing.assert_close(v, b["G"][k], atol=1e-6, rtol=1e-5, msg=f"G.{k}")


def test_resume_refuses_changed_settings(gan_cond_run):
    snap = gan_cond_run["snapshot"]
    cfg = resolve_config({"resume": snap, "kimg": 1.0, "snap": 3})
    assert cfg.kimg == 1.0 and cfg.snap == 3 and cfg.cond and cfg.batch == 8 and cfg.resume == snap
    with pytest.raises(HpcganError, match="cannot change batch"):
        resolve_config({"resume": snap, "batch": 16})


def test_sigterm_writes_a_loadable_snapshot_and_resume_continues(gan_shards, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "hpcgan.cli", "train-gan", "--data", str(gan_shards), "--outdir", str(tmp_path),
           "--config", str(REPO / "tests" / "gan" / "tiny.yaml"), *TINY_FLAGS, "--kimg", "100", "--snap", "0"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait for the first tick: training is under way
            stats = list(tmp_path.glob("*/stats.jsonl"))
            if stats and stats[0].read_text().strip():
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, (out, err)
    assert "interrupted by SIGTERM" in out and "--resume latest" in out
    (run,) = tmp_path.iterdir()
    snaps = list_snapshots(run)
    assert len(snaps) == 1 and not list(run.glob(".*tmp*"))
    snap = load_snapshot(snaps[-1])
    step = snap["counters"]["step"]
    assert step >= 1 and snap["counters"]["cur_nimg"] == 8 * step
    target = (snap["counters"]["cur_nimg"] + 16) / 1000
    proc = cli("train-gan", "--outdir", tmp_path, "--resume", "latest", "--kimg", target, "--no-progress")
    assert "done:" in proc.stdout
    assert load_snapshot(list_snapshots(run)[-1])["counters"]["step"] == step + 2


def test_nan_stops_with_the_term_and_keeps_the_last_good_snapshot(gan_shards, tmp_path):
    def poison(ctx):
        if ctx["step"] == 4:  # after the snapshot at tick 1 (step 3): break G
            with torch.no_grad():
                ctx["trainer"].G.synthesis.blocks[0].const.fill_(float("nan"))

    with pytest.raises(HpcganError, match=r"loss term loss_\w+ is nan.*last good snapshot is .*snapshot-0000000024"):
        train(tiny_train_config(gan_shards, tmp_path), on_step=poison)
    (run,) = tmp_path.iterdir()
    snaps = list_snapshots(run)
    assert [p.name for p in snaps] == ["snapshot-0000000008.pt", "snapshot-0000000024.pt"]
    last = load_snapshot(snaps[-1])
    assert all(torch.isfinite(v).all() for v in last["G"].values() if v.is_floating_point())
    events = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "nonfinite" and events[-1]["term"].startswith("loss_")
