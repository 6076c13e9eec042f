"""Dataclass configs: load from YAML, override single fields, write the resolved config.

Every stage's config is a dataclass. ``load(cls, path, overrides)`` reads a YAML
mapping (unknown keys are an error), applies ``overrides`` (CLI flags, ``None``
meaning "not given"), and ``write_resolved(cfg, folder)`` stores the result as
``config.yaml`` next to the stage's output.

A field made with :func:`setting` also describes its command-line flag (help, flag
name, aliases, choices, value parser) in its metadata: :mod:`hpcgan.cliflags` builds
the flags of a verb from it, so each default and help text is written once, next to
the field. :func:`csv_list` and :func:`int_list` parse the comma lists of such flags.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

import yaml

from hpcgan.atomic import atomic_write_text
from hpcgan.errors import HpcganError


def setting(default=dataclasses.MISSING, *, help: str, flag: str | None = None, aliases: tuple = (),
            type=None, choices=None, metavar: str | None = None, const=None, default_text: str | None = None,
            positional: bool = False, required: bool = False, convert=None, extra_flags: tuple = ()):
    """A dataclass field that is also a CLI flag; everything :mod:`hpcgan.cliflags` needs is in its metadata.

    ``help`` explains the setting; the flag's help adds "(default X)" rendered from the field's
    default (or ``default_text``, e.g. for what None means), or puts it where ``help`` says
    ``{default}``. ``flag``: the option string (default ``--`` + the name with dashes), with
    ``aliases``; ``type``: the value parser (a ValueError becomes argparse's usage error);
    ``const``: a flag without a value that stores this constant; ``positional``: an optional
    positional argument; ``required``: the flag must be given; ``convert``: applied to a given value after parsing (where argparse's
    ``choices`` must see the raw string); ``extra_flags``: ``(option, const, help)`` triples of
    value-less aliases that store ``const`` (``--no-progress``). A mutable default (a list) is
    copied for every instance.
    """
    meta = {"help": help, "flag": flag, "aliases": tuple(aliases), "type": type, "choices": choices,
            "metavar": metavar, "const": const, "default_text": default_text, "positional": positional,
            "required": required, "convert": convert, "extra_flags": tuple(extra_flags)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def progress_setting():
    """The ``progress`` field every long stage has: ``--progress MODE`` and its alias ``--no-progress``."""
    from hpcgan.progress import DEFAULT_INTERVAL_S, MODES

    return setting("auto", choices=MODES, help="how progress is shown (only ever on rank 0): bar = a progress bar; "
                   f"lines = a plain line every $HPCGAN_PROGRESS_INTERVAL seconds (default {DEFAULT_INTERVAL_S:g}) "
                   "with what, how far, rate and time left, for log files; off = nothing; auto = bar in a terminal, "
                   "else lines", extra_flags=(("--no-progress", "off", "same as --progress off"),))


def csv_list(value: str | None) -> list | None:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (None stays None): the comma lists of the flags."""
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def int_list(value: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``."""
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {value!r}") from None


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def load(cls, path: str | os.PathLike | None = None, overrides: dict | None = None):
    """An instance of dataclass ``cls`` from YAML ``path`` (optional) and non-None ``overrides``."""
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise HpcganError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise HpcganError(f"config {path} must be a mapping of field: value")
        unknown = sorted(set(data) - fields)
        if unknown:
            raise HpcganError(f"config {path} has unknown fields {unknown}; known: {sorted(fields)}")
        values.update(data)
    for k, v in (overrides or {}).items():
        if k not in fields:
            raise HpcganError(f"unknown config field {k!r}; known: {sorted(fields)}")
        if v is not None:
            values[k] = v
    try:
        return cls(**values)
    except TypeError as exc:
        raise HpcganError(f"incomplete config for {cls.__name__}: {exc}") from exc


def write_resolved(cfg, folder: str | os.PathLike, name: str = "config.yaml") -> Path:
    """Write ``cfg`` as YAML into ``folder`` atomically; returns the path."""
    path = Path(folder) / name
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path
