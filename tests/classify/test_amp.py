"""Classifier mixed precision (--amp off|bf16|fp16) and channels_last: accuracy against fp32, the
GradScaler state, settings, the experiment grid passthrough."""

from __future__ import annotations

import statistics

import pytest
import torch
import yaml

from hpcgan.classify import run_classify
from hpcgan.errors import HpcganError

from .helpers import cli, tiny_config

SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def amp_shards(tmp_path_factory):
    """32 px phantoms, 40 per class, 15 per class in the test split (accuracy steps of 1/30)."""
    from data.helpers import phantom_shards

    return phantom_shards(tmp_path_factory, "amp", 40, seed=21, test_per_class=15, val_fraction=0.2)


def test_bf16_accuracy_within_seed_noise_of_fp32(amp_shards, tmp_path):
    """The same runs (seeds 1-3) with --amp bf16 reach the test accuracy of fp32 within its seed-to-seed noise.

    Noise: the range (max - min) of the fp32 test accuracies over the three seeds, and at
    least one test image (1/n_test). The mean bf16 accuracy must lie within it of the mean
    fp32 accuracy. bf16 must also really have run: its test scores differ from fp32's.
    """
    acc = {"off": [], "bf16": []}
    scores = {"off": [], "bf16": []}
    for amp in acc:
        for seed in SEEDS:
            res = run_classify(tiny_config(amp_shards, tmp_path / f"{amp}-{seed}", epochs=3, seed=seed, amp=amp))
            acc[amp].append(res["accuracy"])
            scores[amp].append(res["scores"])
            n_test = res["n_test"]
    noise = max(max(acc["off"]) - min(acc["off"]), 1 / n_test)
    print(f"test accuracy fp32 {acc['off']}, bf16 {acc['bf16']}, noise {noise:.3f}")
    assert abs(statistics.mean(acc["bf16"]) - statistics.mean(acc["off"])) <= noise + 1e-9
    assert min(acc["bf16"]) > 0.5  # it learns (2 balanced classes)
    assert scores["bf16"] != scores["off"]


def test_fp16_amp_grad_scaler_and_channels_last(classify_shards, tmp_path):
    """fp16 autocast with a GradScaler (its state in last.pt) and channels_last train to finite metrics."""
    out = tmp_path / "fp16"
    res = run_classify(tiny_config(classify_shards, out, epochs=1, amp="fp16", channels_last=True))
    assert 0 <= res["accuracy"] <= 1 and all(0 <= s <= 1 for s in res["scores"])
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert ck["scaler"]["scale"] > 0 and "_growth_tracker" in ck["scaler"]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["amp"] == "fp16" and saved["channels_last"] is True
    # channels_last is an execution setting: the same outdir without it is the same (finished) run
    again = run_classify(tiny_config(classify_shards, out, epochs=1, amp="fp16", channels_last=False))
    assert again["scores"] == res["scores"]


def test_runs_from_before_amp_are_still_the_same_run(classify_shards, tmp_path):
    """A config.yaml written before the amp fields existed matches the defaults (no 'other settings' error)."""
    out = tmp_path / "old"
    res = run_classify(tiny_config(classify_shards, out, epochs=1))
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["amp"], saved["channels_last"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    assert run_classify(tiny_config(classify_shards, out, epochs=1))["scores"] == res["scores"]
    with pytest.raises(HpcganError, match="amp"):
        run_classify(tiny_config(classify_shards, out, epochs=1, amp="bf16"))


def test_amp_settings_errors_cli_and_grid(classify_shards, tmp_path):
    with pytest.raises(HpcganError, match="amp 'fp8' is unknown"):
        run_classify(tiny_config(classify_shards, tmp_path / "x", amp="fp8"))
    helptext = cli("classify", "--help").stdout
    assert "--amp" in helptext and "--channels-last" in helptext
    proc = cli("classify", "--data", classify_shards, "--outdir", tmp_path / "y", "--amp", "fp8", check=False)
    assert proc.returncode != 0 and "--amp" in proc.stderr and "Traceback" not in proc.stderr

    from hpcgan.experiment.grid import ExperimentConfig, expand

    grid = ExperimentConfig(data=str(classify_shards), outdir=str(tmp_path / "e"), models=["small_cnn"],
                            augs=["none"], runs=1, amp="bf16", channels_last=True)
    (task,) = expand(grid)
    assert task.classify["amp"] == "bf16" and task.classify["channels_last"] is True
    with pytest.raises(HpcganError, match="amp"):
        expand(ExperimentConfig(data=str(classify_shards), models=["small_cnn"], augs=["none"], amp="half"))
