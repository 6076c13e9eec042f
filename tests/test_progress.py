"""hpcgan.progress: the modes, the plain lines for log files, nesting, ranks, and the CLI flags."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from hpcgan.errors import HpcganError
from hpcgan.progress import Progress, format_duration, normalize, resolve, track

REPO = Path(__file__).resolve().parents[1]
ESC = re.compile(r"\x1b|\r")


def test_normalize_accepts_modes_and_old_booleans():
    assert [normalize(m) for m in ("auto", "BAR", " lines ", "off", True, False, None)] == \
        ["auto", "bar", "lines", "off", "auto", "off", "auto"]
    with pytest.raises(HpcganError, match="progress must be one of auto, bar, lines, off"):
        normalize("fancy")


def test_resolve_under_pytest_capture_is_lines_and_other_ranks_are_off():
    # pytest's capture replaces stderr with a non-terminal: auto means lines, like a SLURM log
    assert resolve("auto", rank0=True) == "lines"
    assert resolve("bar", rank0=True) == "bar"
    assert resolve("bar", rank0=True, nested=True) == "lines"  # an inner bar never writes cursor codes to a file
    assert resolve("lines", rank0=False) == "off" and resolve("auto", rank0=False) == "off"


def test_lines_mode_prints_what_how_far_rate_and_eta(capsys):
    with Progress(total=4, desc="work", unit="img", mode="lines", interval=0, rank0=True) as p:
        for _ in range(4):
            p.update(1)
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 5 and not ESC.search(out.out + out.err)
    assert re.fullmatch(r"work: 1/4 img \(25%\), [\d.e+-]+ img/s, ETA (\d+s|\d+m\d\ds|\?)", lines[0]), lines[0]
    assert lines[3].startswith("work: 4/4 img (100%)") and lines[3].endswith("ETA 0s")
    assert re.fullmatch(r"work: 4/4 img done in \d+s \([\d.e+-]+ img/s\)", lines[4]), lines[4]


def test_lines_interval_bounds_the_count_and_inner_loops_stay_quiet(capsys):
    p = Progress(total=1000, desc="outer", unit="task", mode="lines", interval=3600, rank0=True)
    for _ in range(3):
        for _ in track(range(100), desc="epoch", unit="batch", mode="lines", leave=False, rank0=True):
            pass
        p.update(1)
    p.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines == [lines[0]] and lines[0].startswith("outer: 3/1000 task done in")  # one closing line only


def test_bar_mode_writes_to_stderr_and_off_prints_nothing(capsys):
    with Progress(total=3, desc="b", mode="bar", rank0=True) as p:
        p.update(3)
        p.write("a log line")
    with Progress(total=3, desc="quiet", mode="off", rank0=True) as q:
        q.update(3)
    out = capsys.readouterr()
    assert "a log line" in out.err and "3/3" in out.err and "quiet" not in out.out + out.err


@pytest.mark.parametrize("seconds,text", [(5, "5s"), (65, "1m05s"), (7620, "2h07m"), (None, "?"), (float("inf"), "?")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_bad_interval_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HPCGAN_PROGRESS_INTERVAL", "soon")
    with pytest.raises(HpcganError, match="HPCGAN_PROGRESS_INTERVAL must be a number"):
        Progress(total=1, mode="lines", rank0=True)


@pytest.mark.parametrize("verb", ["preprocess", "train-gan", "generate", "metrics", "classify", "experiment", "demo"])
def test_every_long_verb_has_progress_and_no_progress(verb):
    from hpcgan.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[verb]
    flags = {s for a in sub._actions for s in a.option_strings}
    assert {"--progress", "--no-progress"} <= flags
    assert next(a for a in sub._actions if "--progress" in a.option_strings).choices == ("auto", "bar", "lines", "off")


def test_cli_rejects_a_bad_mode():
    proc = subprocess.run([sys.executable, "-m", "hpcgan.cli", "demo", "--progress", "fancy"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice: 'fancy'" in proc.stderr
