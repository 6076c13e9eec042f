"""End to end: identical output across workers and MPI ranks, resume, verify, the CLI verbs."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from hpcgan.data.preprocess import PreprocessConfig, run_preprocess
from hpcgan.data.shards import read_manifest, sha256_file, verify

from .helpers import REPO, assert_same_output, link_subset, run_cli, split_contents

ARGS = ["--classes", "COVID,Normal", "--resolution", "48", "--test-per-class", "3", "--shard-size", "4",
        "--no-progress"]


@pytest.fixture(scope="module")
def data_real_subset(data_cxr_root, tmp_path_factory):
    """16 + 16 real Kaggle images (flat layout, no masks: centre crop) as symlinks."""
    root = tmp_path_factory.mktemp("kaggle_subset")
    link_subset(data_cxr_root / "kaggle224" / "COVID", root / "COVID", 16, step=7)
    link_subset(data_cxr_root / "kaggle224" / "Normal", root / "Normal", 16, step=7)
    return root


@pytest.fixture(scope="module")
def data_reference_out(data_real_subset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    run_preprocess(PreprocessConfig(str(data_real_subset), str(out), resolution=48, test_per_class=3,
                                    shard_size=4, workers=1, progress=False))
    return out


def test_one_and_two_workers_identical(data_real_subset, data_reference_out, tmp_path):
    out = tmp_path / "w2"
    s = run_preprocess(PreprocessConfig(str(data_real_subset), str(out), resolution=48, test_per_class=3,
                                        shard_size=4, workers=2, progress=False))
    assert s["inputs"] == 32 == s["written"] + s["excluded"] + s["failed"]
    assert_same_output(data_reference_out, out)
    assert verify(out) == []


def test_one_and_two_mpi_ranks_identical(data_real_subset, data_reference_out, data_mpirun, tmp_path):
    out = tmp_path / "np2"
    proc = run_cli("preprocess", data_real_subset, out, *ARGS, "--workers", "1", mpirun=data_mpirun, np_=2)
    assert "2 rank(s)" in proc.stdout
    assert proc.stdout.count("inputs =") == 1, "only rank 0 prints the summary"
    m = read_manifest(out)
    assert m["summary"]["ranks"] == 2
    # both ranks wrote shards: each split's shards come from two blocks
    assert len(m["shards"]) >= len(read_manifest(data_reference_out)["shards"])
    assert_same_output(data_reference_out, out)
    # two ranks with two workers each, too
    out2 = tmp_path / "np2w2"
    run_cli("preprocess", data_real_subset, out2, *ARGS, "--workers", "2", mpirun=data_mpirun, np_=2)
    assert_same_output(data_reference_out, out2)


def test_dist_ranks_under_mpirun(data_mpirun):
    code = ("from hpcgan import dist; c = dist.mpi_comm(); "
            "row = ' '.join(map(str, ('R', dist.rank(), dist.world_size(), dist.local_rank(), c.Get_rank(), "
            "c.Get_size(), dist.is_rank0()))); rows = c.gather(row, root=0); "
            "print('\\n'.join(rows), flush=True) if dist.is_rank0() else None")
    proc = subprocess.run([*data_mpirun, "-np", "2", sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr
    lines = sorted(ln for ln in proc.stdout.splitlines() if ln.startswith("R "))
    assert lines == ["R 0 2 0 0 2 True", "R 1 2 1 1 2 False"]


def test_resume_keeps_complete_shards_and_repairs_the_rest(data_real_subset, data_reference_out, tmp_path):
    import shutil

    out = tmp_path / "resume"
    shutil.copytree(data_reference_out, out)
    m = read_manifest(out)
    shards = [out / sh["path"] for sh in m["shards"]]
    assert len(shards) >= 4
    # the state a killed run leaves: no manifest, a missing shard, a half-written temp file,
    # and (worse than a kill) a shard damaged under its final name
    (out / "manifest.json").unlink()
    shards[1].unlink()
    (shards[0].parent / ".shard-00009.h5.tmp-12345").write_bytes(b"half")
    with open(shards[2], "r+b") as fh:
        fh.seek(-64, os.SEEK_END)
        fh.write(b"\0" * 64)
    before = {p: p.stat().st_mtime_ns for p in shards if p.exists()}
    s = run_preprocess(PreprocessConfig(str(data_real_subset), str(out), resolution=48, test_per_class=3,
                                        shard_size=4, workers=1, progress=False))
    assert s["shards_written"] == 2 and s["shards_resumed"] == len(shards) - 2
    for p, t in before.items():
        if p != shards[2]:
            assert p.stat().st_mtime_ns == t, f"{p} should have been kept"
    assert not list(out.rglob("*.tmp-*"))
    assert verify(out) == []
    assert_same_output(data_reference_out, out)


def test_resume_after_a_real_kill(data_real_subset, data_reference_out, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "hpcgan.cli", "preprocess", str(data_real_subset), str(out), *ARGS,
           "--shard-size", "1", "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if list((out / ".work").glob("scan-*.jsonl")) and any(
            p.stat().st_size > 0 for p in (out / ".work").glob("scan-*.jsonl")
        ):
            break
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists() or not killed
    for p in out.rglob("shard-*.h5"):  # whatever is under a final name is a complete file
        with h5py.File(p, "r", locking=False) as f:
            assert f["images"].shape[0] == f["labels"].shape[0]
    s = run_preprocess(PreprocessConfig(str(data_real_subset), str(out), resolution=48, test_per_class=3,
                                        shard_size=1, workers=1, progress=False))
    assert s["inputs"] == 32
    ref = split_contents(data_reference_out)
    got = split_contents(out)
    for split in ref:
        assert list(ref[split]["source"]) == list(got[split]["source"])
        assert np.array_equal(ref[split]["images"], got[split]["images"])


def test_changed_settings_start_over(data_real_subset, data_reference_out, tmp_path):
    import shutil

    out = tmp_path / "changed"
    shutil.copytree(data_reference_out, out)
    s = run_preprocess(PreprocessConfig(str(data_real_subset), str(out), resolution=32, test_per_class=3,
                                        shard_size=4, workers=1, progress=False))
    assert s["shards_resumed"] == 0
    assert split_contents(out)["train"]["images"].shape[-1] == 32
    assert verify(out) == []


def test_verify_catches_a_corrupted_shard(data_reference_out, tmp_path):
    import shutil

    out = tmp_path / "corrupt"
    shutil.copytree(data_reference_out, out)
    assert run_cli("data", "verify", out).returncode == 0
    sh = read_manifest(out)["shards"][0]
    p = out / sh["path"]
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    problems = verify(out)
    assert len(problems) == 1 and sh["path"] in problems[0] and "sha256" in problems[0]
    proc = run_cli("data", "verify", out, check=False)
    assert proc.returncode == 1 and sh["path"] in proc.stdout
    # a shard whose content no longer matches the manifest's shapes, with a fresh checksum
    m = json.loads((out / "manifest.json").read_text())
    m["shards"][0]["sha256"] = sha256_file(p)
    m["shards"][1]["n"] += 1
    (out / "manifest.json").write_text(json.dumps(m))
    problems = verify(out, checksums=False)
    assert any("shape" in x for x in problems)


def test_cli_info_and_errors(data_reference_out, tmp_path):
    proc = run_cli("data", "info", data_reference_out)
    m = read_manifest(data_reference_out)
    for split, per in m["counts"].items():
        total = sum(per.values())
        assert f"| {split} | {per['COVID']} | {per['Normal']} | {total} |" in proc.stdout
    bad = run_cli("data", "info", tmp_path, check=False)
    assert bad.returncode == 2 and "manifest.json not found" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("preprocess", tmp_path / "none", tmp_path / "o", check=False)
    assert bad.returncode == 2 and "none is not a folder" in bad.stderr


def test_cli_phantom_then_preprocess_excludes_markers(tmp_path):
    run_cli("phantom", tmp_path / "ph", "--n", "10", "--annotations", "0.3", "--seed", "5")
    assert len(list((tmp_path / "ph" / "Opacity" / "images").glob("*.png"))) == 10
    run_cli("preprocess", tmp_path / "ph", tmp_path / "o", "--classes", "Clear,Opacity", "--resolution", "32",
            "--test-per-class", "2", "--workers", "1", "--no-progress")
    m = read_manifest(tmp_path / "o")
    assert any(e["reason"] == "annotation" for e in m["excluded"])
    assert m["summary"]["written"] + m["summary"]["excluded"] == 20


def test_every_flag_has_help():
    from hpcgan.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for verb in ("preprocess", "data", "phantom"):
        p = sub.choices[verb]
        for a in p._actions:
            if a.dest != "help" and a.__class__.__name__ != "_SubParsersAction":
                assert a.help and len(a.help) > 10, (verb, a.dest)
    data = sub.choices["data"]
    dsub = next(a for a in data._actions if a.__class__.__name__ == "_SubParsersAction")
    for action in ("info", "verify"):
        for a in dsub.choices[action]._actions:
            if a.dest != "help":
                assert a.help, (action, a.dest)


def test_config_file_and_flag_override(data_phantom_root, tmp_path):
    cfg = tmp_path / "pre.yaml"
    cfg.write_text(f"source: {data_phantom_root}\nout: {tmp_path / 'o'}\nclasses: [Opacity, Clear]\n"
                   "test_per_class: 2\nresolution: 32\nworkers: 1\n")
    run_cli("preprocess", "--config", cfg, "--resolution", "24", "--no-progress")
    m = read_manifest(tmp_path / "o")
    assert m["settings"]["resolution"] == 24 and m["class_names"] == ["Opacity", "Clear"]
    cfg.write_text("resolutoin: 32\n")
    bad = run_cli("preprocess", "--config", cfg, check=False)
    assert bad.returncode == 2 and "resolutoin" in bad.stderr


def test_data_package_imports_only_downwards():
    import ast

    for path in (REPO / "hpcgan" / "data").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("hpcgan.gan", "hpcgan.classify", "hpcgan.cli", "hpcgan.launch",
                                            "hpcgan.experiment", "hpcgan.metrics")), (path.name, name)
