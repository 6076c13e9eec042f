"""The registry of job-able stages (hpcgan.launch.stages): one entry per STAGES name, and every request the CLI
makes for it survives run.json (JSON) and loads back into what the stage function takes."""

from __future__ import annotations

import json

import pytest

from hpcgan.cli import stage_request
from hpcgan.errors import HpcganError
from hpcgan.launch import STAGES
from hpcgan.launch.stages import REGISTRY, load_request


def test_every_submit_stage_has_a_registry_entry():
    assert set(REGISTRY) == set(STAGES)


def _argvs(tmp_path) -> dict:
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"name: g\ndata: {tmp_path / 'shards'}\noutdir: {tmp_path / 'exp'}\nmodels: [small_cnn]\n"
                    "augs: [none]\nruns: 1\n")
    return {
        "phantom": [str(tmp_path / "ph"), "--n", "2"],
        "preprocess": ["--", str(tmp_path / "ph"), str(tmp_path / "shards"), "--classes", "Clear,Opacity"],
        "data": ["verify", str(tmp_path / "shards"), "--no-checksums"],
        "train-gan": ["--data", str(tmp_path / "shards"), "--kimg", "1", "--classes", "Clear"],
        "generate": ["--network", str(tmp_path / "snap.pt"), "--out", str(tmp_path / "gen"), "--class", "Clear"],
        "metrics": ["--real", str(tmp_path / "shards"), "--fake", str(tmp_path / "gen")],
        "classify": ["--data", str(tmp_path / "shards"), "--outdir", str(tmp_path / "cls"), "--gan-data", "a,b"],
        "experiment": [str(grid)],
        "report": [str(tmp_path / "exp" / "g")],
        "bench": ["scaling", "--ranks", "1", "--modes", "strong"],
    }


def test_requests_survive_json_and_load(tmp_path):
    argvs = _argvs(tmp_path)
    assert set(argvs) == set(STAGES)
    for stage, argv in argvs.items():
        request = json.loads(json.dumps(stage_request(stage, argv)))  # what run.json holds
        assert load_request(stage, request) is not None, stage
    req = stage_request("preprocess", argvs["preprocess"])
    assert req["source"] == str(tmp_path / "ph") and req["classes"] == ["Clear", "Opacity"]
    assert stage_request("train-gan", argvs["train-gan"])["classes"] == ["Clear"]
    assert stage_request("classify", argvs["classify"])["gan_data"] == ["a", "b"]
    assert stage_request("bench", ["scaling", "--model-only"])["model_only"] is True


def test_bad_requests_are_user_errors(tmp_path):
    with pytest.raises(HpcganError, match="unknown fields"):
        load_request("preprocess", {"source": "a", "out": "b", "nosuch": 1})
    with pytest.raises(HpcganError, match="task-index"):
        stage_request("experiment", [*_argvs(tmp_path)["experiment"], "--task-index", "0"])
    with pytest.raises(HpcganError, match="unknown stage"):
        load_request("nosuch", {})
