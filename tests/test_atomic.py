"""Atomic writes: the target changes only when the write completes."""

import os

import pytest

from hpcgan.atomic import atomic_open, atomic_path, atomic_write_text


def test_complete_write_replaces_target(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]  # no temporary left


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_open(target, "wb") as fh:
            fh.write(b"half of the new")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_atomic_path_keeps_the_suffix_for_writers_that_need_it(tmp_path):
    target = tmp_path / "img.png"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".img.png.tmp-")
        assert str(os.getpid()) in tmp.name
        tmp.write_bytes(b"png bytes")
        assert not target.exists()  # not visible before the block completes
    assert target.read_bytes() == b"png bytes"


def test_only_whole_file_modes(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "a"):
            pass
