"""CLI flags generated from a config dataclass: one source for each flag's name, type, default, choices and help.

A field made with :func:`hpcgan.config.setting` carries its flag in its metadata.
:func:`add_flags` adds those fields to an argparse parser with ``default=None``, so a
flag that is not given stays None and the YAML/preset value (or the dataclass default)
wins in :func:`hpcgan.config.load`; a field with an int or float default parses as that
type unless ``setting(type=...)`` names a parser; the help text gets "(default X)" rendered from the
dataclass default. :func:`overrides` turns the parsed namespace back into the
``{field: value}`` dict a stage's ``*_main`` takes: the same fields, never a second list.
Fields without that metadata are YAML-only.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools

__all__ = ["flag_fields", "add_flags", "overrides", "default_text", "help_text", "usage_errors"]


def flag_fields(cls, exclude: tuple = ()) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` that are CLI flags (made with ``setting``), in field order."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("help") and f.name not in exclude]


def default_text(f: dataclasses.Field) -> str | None:
    """How the help shows ``f``'s default: ``default_text``, else the value (lists comma-joined); None: not shown."""
    meta = f.metadata
    if meta.get("default_text") is not None:
        return meta["default_text"]
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return None
    if meta.get("const") is not None or value is None or (isinstance(value, (str, list, tuple)) and not value):
        return None  # a switch, or "not set": the help says what that means
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def help_text(f: dataclasses.Field) -> str:
    """The flag's help: the field's help with its default, where it says ``{default}`` or appended."""
    text, default = f.metadata["help"], default_text(f)
    if "{default}" in text:
        return text.replace("{default}", default or "")
    return text if default is None else f"{text} (default {default})"


def usage_errors(parse):
    """``parse`` with a ValueError shown as argparse's usage error, with the parser's own message."""
    if parse in (None, int, float, str):
        return parse

    @functools.wraps(parse)
    def wrapped(value):
        try:
            return parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return wrapped


def _add_one(parser: argparse.ArgumentParser, f: dataclasses.Field) -> None:
    meta = f.metadata
    kw: dict = {"default": None, "help": help_text(f)}
    if meta.get("metavar") is not None:
        kw["metavar"] = meta["metavar"]
    if meta.get("positional"):
        parser.add_argument(f.name, nargs="?", **kw)
        return
    names = [meta.get("flag") or "--" + f.name.replace("_", "-"), *meta.get("aliases", ())]
    if meta.get("required"):
        kw["required"] = True
    if meta.get("const") is not None:
        parser.add_argument(*names, dest=f.name, action="store_const", const=meta["const"], **kw)
    else:
        if meta.get("choices") is not None:
            kw["choices"] = meta["choices"]
        parse = meta.get("type")
        if parse is None and type(f.default) in (int, float):
            parse = type(f.default)  # a number's flag parses as the default's type
        if parse is not None:
            kw["type"] = usage_errors(parse)
        parser.add_argument(*names, dest=f.name, **kw)
    for option, const, help in meta.get("extra_flags", ()):
        parser.add_argument(option, dest=f.name, action="store_const", const=const, help=help)


def add_flags(parser: argparse.ArgumentParser, cls, exclude: tuple = ()) -> None:
    """Add a flag (or optional positional) for every flag field of ``cls`` not in ``exclude``; all default None."""
    for f in flag_fields(cls, exclude):
        _add_one(parser, f)


def overrides(args: argparse.Namespace, cls, exclude: tuple = ()) -> dict:
    """``{field: value}`` of the flag fields of ``cls`` from parsed ``args`` (None: not given; ``convert`` applied)."""
    out = {}
    for f in flag_fields(cls, exclude):
        value = getattr(args, f.name)
        convert = f.metadata.get("convert")
        out[f.name] = convert(value) if convert is not None and value is not None else value
    return out
