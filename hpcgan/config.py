"""Dataclass configs: load from YAML, override single fields, write the resolved config.

Every stage's config is a dataclass. ``load(cls, path, overrides)`` reads a YAML
mapping (unknown keys are an error), applies ``overrides`` (CLI flags, ``None``
meaning "not given"), and ``write_resolved(cfg, folder)`` stores the result as
``config.yaml`` next to the stage's output.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml

from hpcgan.atomic import atomic_write_text
from hpcgan.errors import HpcganError


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
