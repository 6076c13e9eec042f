"""hpcgan.dist's SLURM host-list parser against the real ``scontrol show hostnames`` of the test cluster."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from test_dist import TRICKY

from hpcgan import dist


@pytest.mark.slurm
def test_hostlist_parser_agrees_with_scontrol(cluster_slurm):
    exe = shutil.which("scontrol")
    assert exe is not None, "the cluster fixture installs slurm-client"
    for hostlist in TRICKY:
        out = subprocess.run([exe, "show", "hostnames", hostlist.strip()], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert dist.expand_hostlist(hostlist) == out.stdout.split(), hostlist
