"""hpcgan.cliflags: flags generated from a dataclass's ``setting`` fields, and the overrides read back."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from hpcgan import cliflags
from hpcgan.config import csv_list, int_list, load, progress_setting, setting


def _even(value: str) -> int:
    n = int(value)
    if n % 2:
        raise ValueError(f"expected an even number, got {value!r}")
    return n


@dataclass
class Demo:
    source: str | None = setting(None, positional=True, help="input folder")
    size: int = setting(256, help="side in pixels")
    rate: float = setting(0.0002, flag="--lr", aliases=("--rate",), help="step size")
    mode: str = setting("a", choices=("a", "b"), help="mode: a ({default}) or b")
    names: list = setting(["x", "y"], type=csv_list, help="comma-separated names")
    ranks: list | None = setting(None, type=int_list, default_text="all", help="rank counts")
    even: int = setting(2, type=_even, help="an even number")
    cond: bool = setting(False, const=True, help="conditional")
    kind: list | None = setting(None, choices=("one", "both"), convert=lambda v: ["x", "y"] if v == "both" else [v],
                                help="one or both")
    progress: str = progress_setting()
    extra: list = setting([], help="extra words")
    hidden: int = 7  # YAML only


@dataclass
class Needs:
    network: str = setting("", required=True, help="a snapshot")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="demo")
    cliflags.add_flags(p, Demo)
    return p


def test_unset_flags_are_none_and_overrides_name_every_flag_field():
    ns = _parser().parse_args([])
    over = cliflags.overrides(ns, Demo)
    assert set(over) == {f.name for f in cliflags.flag_fields(Demo)} == set(Demo.__dataclass_fields__) - {"hidden"}
    assert all(v is None for v in over.values())
    assert load(Demo, None, over) == Demo()


def test_values_parse_aliases_consts_and_conversions():
    ns = _parser().parse_args(["in", "--size", "32", "--rate", "0.1", "--mode", "b", "--names", "p, q,,", "--ranks",
                               "1,2", "--cond", "--kind", "both", "--no-progress"])
    over = cliflags.overrides(ns, Demo)
    assert over == {"source": "in", "size": 32, "rate": 0.1, "mode": "b", "names": ["p", "q"], "ranks": [1, 2],
                    "even": None, "extra": None, "cond": True, "kind": ["x", "y"], "progress": "off"}
    assert _parser().parse_args(["--lr", "3"]).rate == 3.0


def test_parser_errors_are_usage_errors_with_the_parsers_message(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--even", "3"])
    assert "argument --even: expected an even number, got '3'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["--mode", "c"])
    assert "invalid choice: 'c'" in capsys.readouterr().err


def test_help_renders_the_dataclass_default():
    fields = {f.name: f for f in cliflags.flag_fields(Demo)}
    assert cliflags.help_text(fields["size"]) == "side in pixels (default 256)"
    assert cliflags.help_text(fields["rate"]) == "step size (default 0.0002)"
    assert cliflags.help_text(fields["mode"]) == "mode: a (a) or b"
    assert cliflags.help_text(fields["names"]) == "comma-separated names (default x,y)"
    assert cliflags.help_text(fields["ranks"]) == "rank counts (default all)"
    assert cliflags.help_text(fields["cond"]) == "conditional"
    assert cliflags.help_text(fields["source"]) == "input folder"
    assert cliflags.help_text(fields["extra"]) == "extra words"  # an empty default is "not set"
    assert Demo().names == ["x", "y"] and Demo().names is not Demo().names


def test_a_required_flag_must_be_given(capsys):
    p = argparse.ArgumentParser(prog="needs")
    cliflags.add_flags(p, Needs)
    assert cliflags.overrides(p.parse_args(["--network", "s.pt"]), Needs) == {"network": "s.pt"}
    with pytest.raises(SystemExit):
        p.parse_args([])
    assert "the following arguments are required: --network" in capsys.readouterr().err


def _options(parser, verb):
    sub = next(a for a in parser._actions if a.dest == "command").choices[verb]
    return sorted((tuple(a.option_strings), a.dest, a.default, a.help) for a in sub._actions)


def test_a_verbs_parser_has_the_full_parsers_flags_and_the_listing_imports_no_torch():
    import subprocess
    import sys

    from hpcgan.cli import build_parser

    full = build_parser()
    for verb in ("preprocess", "train-gan", "generate", "metrics", "classify", "evaluate", "bench", "experiment"):
        assert _options(build_parser(verb), verb) == _options(full, verb)
    code = "import sys; from hpcgan.cli import build_parser; build_parser(''); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
