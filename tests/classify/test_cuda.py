"""The classifier on CUDA: a tiny run on the GPU gives the same kind of result as on
the CPU. The `cuda` marker skips it with "no GPU" without one (HPCGAN_REQUIRE_GPU=1:
a failure)."""

from __future__ import annotations

import json
import math

import pytest

from hpcgan.classify import run_classify

from .helpers import tiny_config

pytestmark = pytest.mark.cuda


def test_classifier_steps_on_cuda(classify_shards, tmp_path):
    res = run_classify(tiny_config(classify_shards, tmp_path / "run", epochs=2, aug="classic", device="cuda"))
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in lines)
    assert 0.0 <= res["accuracy"] <= 1.0 and res["n_test"] == len(res["scores"]) > 0
