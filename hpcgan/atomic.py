"""Atomic file writes: a killed job never leaves a half-written file.

Everything hpcgan writes that a later stage or a resumed run reads (shards,
manifests, snapshots, configs, caches, images) goes through here: the data is
written to a temporary name beside the target, flushed and fsynced, renamed over
the target with ``os.replace`` (atomic on POSIX file systems, Lustre and GPFS
included), and the folder is fsynced so the rename itself survives a crash. On
any error the temporary file is removed and the target is left as it was.

A low-level module: every stage may use it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO
from collections.abc import Iterator


def temp_name(path: str | os.PathLike) -> Path:
    """The temporary name used for ``path``: hidden, beside it, unique per process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - some file systems refuse to open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - and some refuse fsync on them
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through (for writers that take a name, like h5py or PIL).

    When the block ends without an error the temporary file is fsynced and renamed
    over ``path``; on an error it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """``open(path, mode)`` that only replaces ``path`` once the block completes."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        yield fh


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)
