"""``hpcgan classify`` as a user runs it: flags, --config, errors without traceback, 2 MPI ranks, real X-rays."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from hpcgan.classify.config import ClassifyConfig
from hpcgan.cli import build_parser, main

from .helpers import cli

FLAGS = ["--model", "small_cnn", "--epochs", "2", "--batch", "8", "--image-size", "32", "--no-progress",
         "--seed", "5"]


def test_every_config_field_is_a_flag():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["classify"]
    dests = {a.dest for a in sub._actions}
    assert {f.name for f in dataclasses.fields(ClassifyConfig)} <= dests
    assert all(a.help for a in sub._actions)


def _main(capsys, *args) -> tuple[int, str, str]:
    """The real ``hpcgan`` entry point, in this process (saves a torch import per test)."""
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_with_config_file_and_flags(classify_shards, classify_synthetic, tmp_path, capsys):
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump({"aug": "gan", "gan_n": 4, "lr": 0.002}))
    out = tmp_path / "run"
    rc, stdout, _ = _main(capsys, "classify", "--config", conf, "--data", classify_shards, "--outdir", out,
                          "--gan-data", classify_synthetic, "--gan-classes", "Clear", *FLAGS)
    assert rc == 0 and "accuracy" in stdout
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["aug"] == "gan" and saved["lr"] == 0.002 and saved["gan_classes"] == ["Clear"]
    assert saved["epochs"] == 2 and saved["gan_data"] == [str(classify_synthetic)]
    res = json.loads((out / "test_metrics.json").read_text())
    assert res["train_mix"]["synthetic"] == {"Clear": 4}


def test_cli_error_without_traceback(classify_shards, tmp_path, capsys):
    rc, _, err = _main(capsys, "classify", "--data", classify_shards, "--outdir", tmp_path / "o", "--model",
                       "inception_v3", "--image-size", "40")
    assert rc == 2
    assert "hpcgan classify: error: image_size 40" in err and "Traceback" not in err


@pytest.mark.mpi
def test_two_mpi_ranks_write_one_result(classify_shards, data_mpirun, tmp_path):
    out = tmp_path / "ddp"
    proc = cli("classify", "--data", classify_shards, "--outdir", out, "--aug", "classic", *FLAGS,
               mpirun=data_mpirun, np_=2, timeout=300)
    assert proc.stdout.count("(n_test") == 1  # rank 0 alone reports
    res = json.loads((out / "test_metrics.json").read_text())
    assert res["world_size"] == 2 and res["n_test"] == sum(map(sum, res["confusion"]))
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "best.pt", "config.yaml", "curves.png", "last.pt", "metrics.jsonl", "roc.png", "test_metrics.json"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]


def test_real_xrays_efficientnet(classify_real_shards, tmp_path, capsys):
    out = tmp_path / "real"
    rc, _, _ = _main(capsys, "classify", "--data", classify_real_shards, "--outdir", out, "--model", "efficientnet_b0", "--epochs", "1",
        "--batch", "8", "--image-size", "48", "--pretrained", "no", "--aug", "classic", "--no-progress")
    assert rc == 0
    res = json.loads((out / "test_metrics.json").read_text())
    assert res["class_names"] == ["COVID", "Normal"] and res["n_test"] == 6
    assert res["train_mix"]["real"]["COVID"] > 0 and res["train_mix"]["real"]["Normal"] > 0
    assert 0 <= res["accuracy"] <= 1 and len(res["roc"]["fpr"]) == len(res["roc"]["tpr"]) >= 2
