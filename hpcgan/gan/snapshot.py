"""GAN checkpoints that survive a cluster: atomic, self-describing, ``weights_only`` loadable.

A snapshot is one ``torch.save`` file (``RUN/snapshot-<nimg>.pt``) holding a dict of
plain values only (tensors, dicts, lists, str, int, float, bool, None), so
:func:`load_snapshot` reads it with ``torch.load(weights_only=True)``:

``format``, ``version``     ``"hpcgan-gan-snapshot"``, 1
``arch``                    ``"stylegan2"`` or ``"cdcgan"``
``G_kwargs``, ``D_kwargs``  constructor arguments of the networks (plain values)
``G``, ``D``, ``G_ema``     state_dicts
``augment``                 augment pipe: ``kwargs`` and ``state`` (incl. ``p``) — stylegan2 only
``ada``                     AdaController state (mode, p, step counter, and the accumulators
                            since the last adjustment summed over all ranks; rank 0 takes them
                            back on resume, so a resume with any number of ranks is exact)
``opt_G``, ``opt_D``        optimiser state_dicts
``loss``                    loss state (``pl_mean``)
``counters``                ``cur_nimg``, ``step``, ``tick``
``rng``                     torch CPU, CUDA (per device), numpy and Python ``random`` states
``config``                  the resolved :class:`~hpcgan.gan.config.TrainConfig` as a dict
``data``                    ``class_names`` (all classes of the training data, label order),
                            ``train_classes`` (classes trained on; the order of the one-hot c), ``resolution``

Files are written to a temporary name, fsynced and renamed (:func:`save_snapshot`):
a job killed mid-write leaves the previous snapshots intact.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from hpcgan.atomic import atomic_open
from hpcgan.errors import HpcganError

FORMAT = "hpcgan-gan-snapshot"
VERSION = 1
_SNAP_RE = re.compile(r"^snapshot-(\d+)\.pt$")

__all__ = ["FORMAT", "VERSION", "snapshot_name", "save_snapshot", "load_snapshot", "list_snapshots",
           "resolve_resume", "rng_state", "set_rng_state", "build_generator", "build_networks"]


def snapshot_name(cur_nimg: int) -> str:
    """``snapshot-<images shown, 10 digits>.pt``: sorts by training progress."""
    return f"snapshot-{int(cur_nimg):010d}.pt"


# -- RNG states ----------------------------------------------------------------


def rng_state() -> dict:
    """torch CPU, CUDA (every device), numpy and Python RNG states as plain values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": {"kind": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_state[0]), "state": list(py_state[1]), "gauss": py_state[2]},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda = list(state["cuda"])[: torch.cuda.device_count()]
        for i, s in enumerate(cuda):
            torch.cuda.set_rng_state(s, i)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


# -- files ------------------------------------------------------------------------


def save_snapshot(path: str | os.PathLike, snapshot: dict) -> Path:
    """Write ``snapshot`` atomically: temporary name, flush + fsync, ``os.replace``, fsync the folder."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        torch.save(snapshot, fh)
    return path


def load_snapshot(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a snapshot with ``torch.load(weights_only=True)``; HpcganError when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise HpcganError(f"snapshot {path} not found")
    try:
        snap = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # any unpickling failure means "not a valid snapshot"
        raise HpcganError(f"cannot load snapshot {path}: {exc}") from exc
    if not isinstance(snap, dict) or snap.get("format") != FORMAT:
        raise HpcganError(f"{path} is not an hpcgan GAN snapshot (written by `hpcgan train-gan`)")
    if snap.get("version") != VERSION:
        raise HpcganError(f"{path} has snapshot version {snap.get('version')}, this hpcgan reads {VERSION}")
    return snap


def list_snapshots(run_dir: str | os.PathLike) -> list[Path]:
    """Snapshots of a run directory, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if _SNAP_RE.match(p.name))


def resolve_resume(resume: str, outdir: str | os.PathLike | None) -> Path:
    """The snapshot meant by ``--resume``: a file, a run directory (its newest), or ``latest``.

    ``latest`` is the newest snapshot of the highest-numbered run directory under
    ``outdir`` that holds one.
    """
    if resume == "latest":
        if outdir is None or not Path(outdir).is_dir():
            raise HpcganError(f"--resume latest: the output folder {outdir} does not exist")
        runs = sorted((p for p in Path(outdir).iterdir() if p.is_dir() and re.match(r"^\d+", p.name)),
                      key=lambda p: int(re.match(r"^\d+", p.name).group()), reverse=True)
        for run in runs:
            snaps = list_snapshots(run)
            if snaps:
                return snaps[-1]
        raise HpcganError(f"--resume latest: no run directory under {outdir} holds a snapshot")
    p = Path(resume)
    if p.is_dir():
        snaps = list_snapshots(p)
        if not snaps:
            raise HpcganError(f"--resume {resume}: the folder holds no snapshot-*.pt")
        return snaps[-1]
    if not p.is_file():
        raise HpcganError(f"--resume {resume}: no such snapshot file or run directory (or use 'latest')")
    return p


# -- networks from a snapshot -------------------------------------------------------


def build_networks(arch: str, G_kwargs: dict, D_kwargs: dict, impl: str = "auto"):
    """Fresh ``(G, D)`` of ``arch`` from their constructor arguments."""
    if arch == "stylegan2":
        from hpcgan.gan.networks import Discriminator, Generator

        return Generator(**G_kwargs, impl=impl), Discriminator(**D_kwargs, impl=impl)
    if arch == "cdcgan":
        from hpcgan.gan.cdcgan import CDCDiscriminator, CDCGenerator

        return CDCGenerator(**G_kwargs), CDCDiscriminator(**D_kwargs)
    raise HpcganError(f"unknown architecture {arch!r} in snapshot")


GENERATORS = ("G_ema", "G")  # the generators a snapshot holds


def build_generator(snapshot: dict, which: str = "G_ema", impl: str = "auto", device="cpu") -> torch.nn.Module:
    """The generator ``which`` ("G_ema" or "G") of a loaded snapshot, in eval mode on ``device``."""
    if which not in GENERATORS:
        raise ValueError(f"which must be 'G' or 'G_ema', got {which!r}")
    G, _ = build_networks(snapshot["arch"], snapshot["G_kwargs"], snapshot["D_kwargs"], impl=impl)
    G.load_state_dict(snapshot[which])
    return G.eval().requires_grad_(False).to(device)
