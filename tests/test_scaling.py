"""hpcgan.bench (scaling): the model's formulas by hand, and a real mpirun run of the scaling worker at tiny size."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hpcgan.errors import HpcganError
from hpcgan import bench as sc
from hpcgan.bench import driver

REPO = Path(__file__).resolve().parents[1]


def test_ring_allreduce_against_hand_computation():
    # 1 GB over 4 ranks, 25 GB/s, 5 us: 2*3/4 * 1e9/25e9 = 0.06 s, plus 2*3*5e-6 = 3e-5 s
    assert sc.ring_allreduce_seconds(1e9, 4, 25e9, 5e-6) == pytest.approx(0.06 + 3e-5, rel=1e-12)
    # 2 ranks: each sends and receives half twice: 2*1/2 * b/bw + 2*lat
    assert sc.ring_allreduce_seconds(8e6, 2, 1e9, 1e-6) == pytest.approx(8e-3 + 2e-6, rel=1e-12)
    assert sc.ring_allreduce_seconds(1e9, 1, 25e9, 5e-6) == 0.0
    # the bandwidth term tends to 2 b / bw for many ranks
    assert sc.ring_allreduce_seconds(1e9, 10**6, 1e9, 0.0) == pytest.approx(2.0, rel=1e-5)


def test_hierarchical_allreduce_and_allgather():
    b, bw, lat, ibw, ilat = 2.4e8, 25e9, 5e-6, 200e9, 2e-6
    # 8 nodes of 4: intra ring 2*3/4*b/ibw + 2*3*ilat; inter 2*7/8 * b/bw + 2*7*lat (4 rings of b/4 at bw/4)
    hand = (1.5 * b / ibw + 6 * ilat) + (1.75 * b / bw + 14 * lat)
    assert sc.hierarchical_allreduce_seconds(b, 8, 4, bw, lat, ibw, ilat) == pytest.approx(hand, rel=1e-12)
    # one GPU per node is the flat ring; one node is the intra ring
    assert sc.hierarchical_allreduce_seconds(b, 8, 1, bw, lat, ibw, ilat) == sc.ring_allreduce_seconds(b, 8, bw, lat)
    assert sc.hierarchical_allreduce_seconds(b, 1, 4, bw, lat, ibw, ilat) == sc.ring_allreduce_seconds(b, 4, ibw, ilat)
    # all-gather of 1 kB from each of 5 ranks: 4 * (1e3/1e9 + 1e-5)
    assert sc.allgather_seconds(1e3, 5, 1e9, 1e-5) == pytest.approx(4 * (1e-6 + 1e-5), rel=1e-12)


def test_predict_step_and_efficiency_by_hand():
    p = sc.predict_step(1.0, 4, "strong", 0.05)
    assert p["step_s"] == pytest.approx(0.25 + 0.05) and p["efficiency"] == pytest.approx(1.0 / (4 * 0.30))
    p = sc.predict_step(1.0, 4, "weak", 0.05, overlap=0.6)
    assert p["step_s"] == pytest.approx(1.0 + 0.4 * 0.05) and p["efficiency"] == pytest.approx(1.0 / 1.02)
    assert sc.predict_step(2.0, 8, "strong", 0.0)["efficiency"] == pytest.approx(1.0)
    # efficiency against a base of 2 ranks
    assert sc.efficiency(3.0, 1.0, 4, "strong", n_base=2) == pytest.approx(2 * 3.0 / (4 * 1.0))
    assert sc.efficiency(3.0, 4.0, 4, "weak", n_base=2) == pytest.approx(0.75)


def test_gan_comm_profile_by_hand():
    # G 10, D 20 parameters, 3 buffer values; step 0 has both regularisers, step 1 none
    prof = sc.gan_comm_profile(10, 20, 3, [["Gmain", "Greg", "Dmain", "Dreg"], ["Gmain", "Dmain"]])
    g, d = 4 * (10 + 3 + 1), 4 * (20 + 3 + 1)
    assert prof["bytes_per_step"] == pytest.approx((2 * g + 2 * d + g + d) / 2)
    assert prof["allreduce_calls_per_step"] == pytest.approx(3.0)


def test_aggregate_computes_efficiency_and_the_model():
    cfg = sc.ScalingConfig(what="gan-step", ranks=[1, 2], repeats=2, bandwidth_gbps=8.0, latency_us=10.0)

    def raw(n, mode, rep, step, comm, wait):
        return {"what": "gan-step", "mode": mode, "ranks": n, "repeat": rep, "step_s": step, "comm_s": comm,
                "wait_s": wait, "global_batch": 8 if mode == "strong" else 8 * n, "batch_gpu": 8 // n if mode ==
                "strong" else 8, "bytes_per_step": 1e6, "allreduce_calls_per_step": 2.0,
                "sync_bytes_per_step": 1e6 if n > 1 else 0}

    rows = sc.aggregate(cfg, [raw(1, "strong", 0, 1.0, 0, 0), raw(1, "strong", 1, 1.2, 0, 0),
                              raw(2, "strong", 0, 0.7, 0.1, 0.05), raw(2, "strong", 1, 0.6, 0.1, 0.05),
                              raw(2, "weak", 0, 1.3, 0.1, 0.0), raw(2, "weak", 1, 1.5, 0.2, 0.0)])
    by = {(r["mode"], r["ranks"]): r for r in rows}
    assert set(by) == {("strong", 1), ("strong", 2), ("weak", 1), ("weak", 2)}
    t1 = (1.0 + 1.2) / 2
    assert by["strong", 2]["efficiency"] == pytest.approx(t1 / (2 * 0.65))
    assert by["weak", 2]["efficiency"] == pytest.approx(t1 / 1.4)
    assert by["strong", 2]["compute_s"] == pytest.approx(0.65 - 0.1 - 0.05)
    assert by["strong", 2]["time_min_s"] == 0.6 and by["strong", 2]["time_max_s"] == 0.7
    comm = 2 * 1 / 2 * 1e6 / 1e9 + 2.0 * 2 * 1 * 1e-5  # bandwidth term on all bytes, latency per all-reduce
    assert by["weak", 2]["predicted"]["comm_s"] == pytest.approx(comm)
    assert by["weak", 2]["predicted"]["efficiency"] == pytest.approx(t1 / (t1 + comm))
    assert by["strong", 2]["measured_busbw_gbs"] == pytest.approx(2 * 1 / 2 * 1e6 / 0.1 / 1e9)


def test_config_errors_name_the_setting(tmp_path):
    with pytest.raises(HpcganError, match="--batch 6"):
        sc.ScalingConfig(what="gan-step", ranks=[1, 4], batch=6).validate()
    with pytest.raises(HpcganError, match="--source"):
        sc.ScalingConfig(source=str(tmp_path / "missing")).validate()
    with pytest.raises(HpcganError, match="--launcher"):
        sc.ScalingConfig(launcher="pbs").validate()


def test_cli_model_only_matches_the_functions(tmp_path, capsys):
    from hpcgan.cli import main

    out = tmp_path / "model.json"
    assert main(["bench", "scaling", "--model-only", "--preset", str(REPO / "configs/gan/cpu-smoke.yaml"),
                 "--resolution", "32", "--nodes", "1,2,4", "--step-time", "0.2", "--bandwidth", "100",
                 "--json", str(out)]) == 0
    assert "| 4 | 16 |" in capsys.readouterr().out
    m = json.loads(out.read_text())
    assert [r["nodes"] for r in m["rows"]] == [1, 2, 4]
    bw = 100e9 / 8
    for r in m["rows"]:
        n = r["nodes"]
        hand = sc.hierarchical_allreduce_seconds(m["bytes_per_step"], n, 4, bw, 0, 200e9, 0) + \
            m["allreduce_calls_per_step"] * sc.hierarchical_allreduce_seconds(0, n, 4, bw, 5e-6, 200e9, 2e-6)
        assert r["comm_hier_s"] == pytest.approx(hand)
        assert r["weak"]["efficiency"] == pytest.approx(0.2 / (0.2 + hand))
    # the bytes follow the networks' parameter counts
    p = m["params"]
    assert m["bytes_per_step"] > 4 * (p["G"] + p["D"])
    # a bad value is a one-line error, no traceback
    assert main(["bench", "scaling", "--what", "gan-step", "--ranks", "1,3", "--batch", "8"]) == 2
    err = capsys.readouterr().err
    assert "--batch 8" in err and "Traceback" not in err


def test_srun_launcher_packs_ranks_onto_nodes(monkeypatch):
    """--launcher srun: N ranks on ceil(N / tasks per node) nodes of the allocation, never more than it has."""
    for v in ("SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_JOB_NUM_NODES", "SLURM_NNODES"):
        monkeypatch.delenv(v, raising=False)
    assert driver._srun_nodes(4) is None  # outside an allocation: srun decides
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "4")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "4(x4)")
    assert [driver._srun_nodes(n) for n in (1, 2, 4, 5, 8, 16, 64)] == [1, 1, 1, 2, 2, 4, 4]
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "1")  # wins over SLURM_TASKS_PER_NODE
    assert [driver._srun_nodes(n) for n in (1, 2, 3)] == [1, 2, 3]


@pytest.mark.mpi
def test_mpirun_two_ranks_real_run(data_mpirun, data_cxr_root, tmp_path):
    """Both workloads on 1 and 2 real mpirun ranks (tiny networks, 12 real X-rays): a well-formed result."""
    cfg = sc.ScalingConfig(what="both", ranks=[1, 2], repeats=1, steps=2, warmup=0, resolution=32, batch=4,
                           channel_base=512, channel_max=32, z_dim=32, source=str(data_cxr_root / "kaggle224"),
                           classes=["COVID", "Normal"], images=12, preprocess_resolution=32, workdir=str(tmp_path / "w"),
                           timeout_s=300)
    res = sc.run_scaling(cfg)
    rows = {(r["what"], r["mode"], r["ranks"]): r for r in res["rows"]}
    assert set(rows) == {(w, m, n) for w in sc.WHATS for m in sc.MODES for n in (1, 2)}
    for key, r in rows.items():
        assert r["efficiency"] > 0, (key, r["efficiency"])  # no upper bound: tiny timed runs can be superlinear
        assert r["comm_s"] >= 0 and r["wait_s"] >= 0 and r["time_s"] > 0 and r["img_per_s"] > 0
        assert 0 < r["predicted"]["efficiency"] <= 1.0 + 1e-9
        assert r["predicted"]["comm_s"] >= 0
    for what in sc.WHATS:
        one, strong, weak = rows[what, "strong", 1], rows[what, "strong", 2], rows[what, "weak", 2]
        assert one["comm_s"] == 0 or what == "preprocess"  # one rank has no all-reduce to time
        assert one["efficiency"] == pytest.approx(1.0) and rows[what, "weak", 1]["time_s"] == one["time_s"]
        assert strong["images"] == one["images"] and weak["images"] == 2 * one["images"]
        assert strong["predicted"]["comm_s"] > 0
        # the efficiencies follow their definitions from the reported times: strong T1/(N*TN), weak T1/TN
        assert strong["efficiency"] == pytest.approx(one["time_s"] / (2 * strong["time_s"]), rel=1e-6)
        assert weak["efficiency"] == pytest.approx(one["time_s"] / weak["time_s"], rel=1e-6)
    g = rows["gan-step", "strong", 2]
    assert g["batch_gpu"] == 2 and rows["gan-step", "weak", 2]["batch_gpu"] == 4
    # the timed all-reduces carried the gradients: at most what the model counts, at least G's
    assert 0 < g["sync_bytes_per_step"] <= g["bytes_per_step"]
    assert g["comm_s"] > 0 and g["measured_busbw_gbs"] > 0
    assert all(r["nodes"] == 1 for r in res["rows"])  # mpirun here: every rank on this host
    raw2 = [r for r in res["raw"] if r["ranks"] == 2]
    assert all(r["dist"]["world_size"] == 2 and r["dist"]["launcher"] == "mpi" for r in raw2)
    assert {r["dist"]["backend"] for r in raw2 if r["what"] == "gan-step"} == {"gloo"}
    pre = rows["preprocess", "weak", 2]
    assert pre["collectives"] > 0 and pre["collective_bytes"] > 0
    # reporting: markdown row per measurement, JSON round trip, a PNG
    md = sc.format_markdown(res)
    assert md.count("| strong |") == 4 and md.count("| weak |") == 4
    back = json.loads(sc.write_json(res, tmp_path / "r.json").read_text())
    assert back["rows"] == json.loads(json.dumps(res["rows"]))
    png = sc.plot(res, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (tmp_path / "w" / "scaling-config.yaml").is_file()
    assert math.isfinite(res["meta"]["seconds"])


@pytest.mark.mpi
def test_launcher_current_under_mpirun(data_mpirun, tmp_path):
    """`hpcgan bench scaling --launcher current` started by mpirun -np 2 measures that job; rank 0 writes."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(v, None)
    out, png = tmp_path / "cur.json", tmp_path / "cur.png"
    proc = subprocess.run([*data_mpirun, "-np", "2", sys.executable, "-m", "hpcgan.cli", "bench", "scaling",
                           "--launcher", "current", "--what", "gan-step", "--modes", "weak", "--steps", "1",
                           "--warmup", "0", "--repeats", "1", "--batch", "2", "--channel-base", "512",
                           "--channel-max", "32", "--z-dim", "32", "--json", str(out), "--plot", str(png)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("| weak | 2 |") == 1, "only rank 0 reports"
    res = json.loads(out.read_text())
    (row,) = res["rows"]
    assert (row["ranks"], row["images"], row["batch_gpu"]) == (2, 4, 2)
    assert row["comm_s"] > 0 and row["sync_bytes_per_step"] > 0 and row["efficiency"] == pytest.approx(1.0)
    assert res["raw"][0]["dist"]["launcher"] == "mpi" and res["meta"]["launcher"] == "current"
    assert png.stat().st_size > 0
