"""Exact resume of a 2-rank (mpirun, gloo) run mid-way through an ADA interval."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hpcgan.gan.snapshot import list_snapshots, load_snapshot
from hpcgan.gan.train import train

from .helpers import TINY_FLAGS, cli, tiny_train_config

TIMING = ("sec_per_tick", "sec_per_kimg", "time", "peak_gpu_mem_gb")  # the only stats allowed to differ


def _stats(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["counters"] == b["counters"]
    for key in ("G", "D", "G_ema"):
        assert a[key].keys() == b[key].keys()
        for k, v in a[key].items():
            torch.testing.assert_close(v, b[key][k], atol=1e-6, rtol=1e-5, msg=f"{key}.{k}")
    for opt in ("opt_G", "opt_D"):
        for k, st in a[opt]["state"].items():
            for name in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(st[name], b[opt]["state"][k][name], atol=1e-9, rtol=1e-4)
    torch.testing.assert_close(a["loss"]["pl_mean"], b["loss"]["pl_mean"])
    assert float(a["ada"]["p"]) == float(b["ada"]["p"]) and a["ada"]["steps"] == b["ada"]["steps"]
    assert torch.equal(a["ada"]["acc"], b["ada"]["acc"])


@pytest.mark.mpi
def test_two_rank_resume_mid_interval_equals_uninterrupted(gan_shards, tmp_path, data_mpirun):
    """2 ranks to kimg 0.048 straight == 2 ranks resumed from the snapshot at 0.024 (3 steps into a 4-step
    ADA interval): weights, Adam, ADA p and counters, pl_mean, kimg and the stats lines.

    The mid snapshot holds the ADA sums of both ranks: the same as one process computing the whole batch.
    """
    yaml = tmp_path / "tiny-ada4.yaml"
    yaml.write_text(Path(__file__).with_name("tiny.yaml").read_text().replace("ada_interval: 1", "ada_interval: 4"))
    flags = ["--data", gan_shards, *TINY_FLAGS, "--cond", "--config", yaml]  # 6 steps of 8 images
    cli("train-gan", "--outdir", tmp_path / "full", *flags, mpirun=data_mpirun, np_=2, timeout=240)
    (full,) = (tmp_path / "full").iterdir()
    mid = full / "snapshot-0000000024.pt"
    snap = load_snapshot(mid)
    assert snap["counters"]["step"] == 3 and snap["ada"]["steps"] % 4 == 3  # mid-interval: partial sums in it

    # The partial sums are both ranks': one process with the same global batch has the same accumulator.
    single = train(tiny_train_config(gan_shards, tmp_path / "single", cond=True, kimg=0.024, batch_gpu=4,
                                     ada_interval=4, snap=0))
    one = load_snapshot(single["snapshot"])["ada"]
    assert float(snap["ada"]["acc"][1]) == float(one["acc"][1]) == 8 * 4  # 3 Dmain + 1 Dreg phases of 8 reals
    assert torch.equal(snap["ada"]["acc"], one["acc"])

    run = tmp_path / "resumed" / full.name
    run.mkdir(parents=True)
    shutil.copy(mid, run / mid.name)
    shutil.copy(full / "stats.jsonl", run / "stats.jsonl")  # lines after the snapshot are trimmed and redone
    proc = cli("train-gan", "--outdir", tmp_path / "resumed", "--resume", "latest", "--no-progress",
               mpirun=data_mpirun, np_=2, timeout=240)
    assert "done:" in proc.stdout
    a, b = load_snapshot(list_snapshots(full)[-1]), load_snapshot(list_snapshots(run)[-1])
    assert a["counters"]["kimg"] == b["counters"]["kimg"] == pytest.approx(0.048)
    assert float(a["ada"]["p"]) != float(snap["ada"]["p"])  # p moved after the resume point
    _assert_same_state(a, b)
    assert _stats(full) == _stats(run)
    assert [r["nimg"] for r in _stats(run)] == [8, 24, 40, 48]
