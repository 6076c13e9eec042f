"""Site profiles, submitit parameters and the submit CLI's help and errors (no cluster needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hpcgan.errors import HpcganError
from hpcgan.launch.sites import executor_parameters, list_sites, load_site

from .conftest import REPO, cluster_env


def test_every_site_profile_loads_and_fits_its_nodes():
    assert {"lumi", "leonardo", "athena", "local"} <= set(list_sites())
    for name in ("lumi", "leonardo", "athena"):
        site = load_site(name)
        assert site.gpus_per_node > 0 and site.tasks_per_node == site.gpus_per_node  # one task per GPU
        assert site.partition and site.account and site.signal_delay_s < site.time_min * 60
        p = executor_parameters(site, "slurm")
        assert p["slurm_partition"] == site.partition and p["gpus_per_node"] == site.gpus_per_node
        assert p["timeout_min"] == site.time_min and p["slurm_signal_delay_s"] == site.signal_delay_s
    local = load_site("local")
    assert local.gpus_per_node == 0 and "gpus_per_node" not in executor_parameters(local, "slurm")
    # local/debug executors get only the portable fields
    assert not any(k.startswith("slurm_") for k in executor_parameters(load_site("leonardo"), "local"))


def test_overrides_and_user_errors(tmp_path):
    site = load_site("leonardo", {"time_min": 30, "nodes": 4, "account": None})
    assert site.time_min == 30 and site.nodes == 4 and site.account == load_site("leonardo").account
    with pytest.raises(HpcganError, match=r"known sites: .*leonardo"):
        load_site("nosuchsite")
    with pytest.raises(HpcganError, match="signal_delay_s"):
        load_site("local", {"time_min": 1, "signal_delay_s": 90})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ngpus: 4\n")
    with pytest.raises(HpcganError, match="unknown fields"):
        load_site(str(bad))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hpcgan.cli", *map(str, args)], cwd=REPO, env=cluster_env(),
                          capture_output=True, text=True, timeout=60)


def test_submit_help_and_errors_without_traceback(tmp_path):
    out = _cli("submit", "train-gan", "--help").stdout
    for flag in ("--cluster", "--site", "--folder", "--wait", "--partition", "--account", "--nodes",
                 "--tasks-per-node", "--gpus-per-node", "--cpus-per-task", "--mem-gb", "--time-min",
                 "--signal-delay-s", "--max-timeouts", "--parallelism"):
        assert flag in out, flag
    assert "--resubmit-failed" in _cli("submit", "status", "--help").stdout
    proc = _cli("submit", "status", tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "run.json" in proc.stderr
    proc = _cli("submit", "phantom", "--site", "nosuch", "--folder", tmp_path / "r", "--", tmp_path / "x")
    assert proc.returncode == 2 and "known sites" in proc.stderr and "Traceback" not in proc.stderr


def test_debug_cluster_runs_a_stage_in_process(tmp_path):
    """--cluster debug: the same job function, run here (what a laptop user tries first)."""
    proc = _cli("submit", "phantom", "--cluster", "debug", "--folder", tmp_path / "run", "--",
                tmp_path / "ph", "--n", "2", "--size", "64")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "ph" / "Clear" / "images").glob("*.png"))) == 2
    assert "COMPLETED" in proc.stdout


def test_launch_is_imported_by_no_stage():
    """Imports run one way: no stage module imports hpcgan.launch."""
    import re

    for path in (REPO / "hpcgan").rglob("*.py"):
        rel = path.relative_to(REPO / "hpcgan").parts
        if rel[0] in ("launch", "cli.py"):
            continue
        assert not re.search(r"^\s*(from|import) hpcgan\.launch", path.read_text(), re.M), path
