"""run_classify end to end on tiny shards: outputs, determinism, resume, idempotency, errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from hpcgan.classify import run_classify
from hpcgan.errors import HpcganError

from .helpers import tiny_config

CONTRACT_KEYS = {"accuracy", "balanced_accuracy", "tpr", "tnr", "fpr", "fnr", "precision", "f1", "roc_auc",
                 "confusion", "class_names", "positive_class", "best_epoch", "select", "best_val_score", "balance",
                 "n_test", "roc", "scores", "labels", "per_class", "macro", "train_mix", "model", "aug", "seed",
                 "pretrained_weights"}


def test_outputs_and_contract(classify_shards, tmp_path):
    res = run_classify(tiny_config(classify_shards, tmp_path / "run", epochs=3, aug="classic"))
    out = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "best.pt", "last.pt", "test_metrics.json"):
        assert (out / name).is_file(), name
    for name in ("curves.png", "roc.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 100
    assert CONTRACT_KEYS <= set(res)
    on_disk = json.loads((out / "test_metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert set(lines[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_balanced_acc", "val_auc",
                             "sec"}
    best = max(lines, key=lambda r: (r["val_balanced_acc"], -r["epoch"]))  # select: balanced by default
    assert res["select"] == "balanced" and res["balance"] == "none"
    assert res["best_epoch"] == best["epoch"] and res["best_val_score"] == best["val_balanced_acc"]
    assert res["n_test"] == len(res["scores"]) == len(res["labels"]) == sum(map(sum, res["confusion"]))
    assert res["positive_class"] == res["class_names"][0] == "Clear"
    assert res["train_mix"]["synthetic"] == {} and res["train_mix"]["oversampled"] == {}
    assert sum(res["train_mix"]["real"].values()) > 0


def test_same_seed_same_metrics_and_idempotent(classify_shards, tmp_path):
    a = run_classify(tiny_config(classify_shards, tmp_path / "a", aug="classic"))
    b = run_classify(tiny_config(classify_shards, tmp_path / "b", aug="classic"))
    assert a == b
    c = run_classify(tiny_config(classify_shards, tmp_path / "c", aug="classic", seed=4))
    assert c["scores"] != a["scores"]
    calls = []
    again = run_classify(tiny_config(classify_shards, tmp_path / "a", aug="classic"), on_epoch=calls.append)
    assert again == json.loads(json.dumps(a)) and calls == []


class _KilledError(Exception):
    pass


def test_resume_after_kill_equals_uninterrupted(classify_shards, tmp_path):
    full = run_classify(tiny_config(classify_shards, tmp_path / "full", epochs=3, aug="classic"))

    def die_after_first(rec):
        if rec["epoch"] == 1:
            raise _KilledError  # the process "dies" right after epoch 1's files are written

    cfg = tiny_config(classify_shards, tmp_path / "cut", epochs=3, aug="classic")
    with pytest.raises(_KilledError):
        run_classify(cfg, on_epoch=die_after_first)
    assert not (tmp_path / "cut" / "test_metrics.json").exists()
    seen = []
    resumed = run_classify(tiny_config(classify_shards, tmp_path / "cut", epochs=3, aug="classic"), on_epoch=seen.append)
    assert [r["epoch"] for r in seen] == [2, 3]
    assert resumed == full
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def test_other_settings_in_outdir_is_an_error(classify_shards, tmp_path):
    cfg = tiny_config(classify_shards, tmp_path / "r", epochs=1)
    cfg.data, cfg.outdir = classify_shards, tmp_path / "r"  # Path objects, as a caller may pass them
    run_classify(cfg)
    assert "data: " + str(classify_shards) in (tmp_path / "r" / "config.yaml").read_text()
    with pytest.raises(HpcganError, match="lr"):
        run_classify(tiny_config(classify_shards, tmp_path / "r", epochs=1, lr=0.5))


def test_nan_loss_names_epoch_and_step(classify_shards, tmp_path):
    with pytest.raises(HpcganError, match=r"epoch 1, step \d+"):
        run_classify(tiny_config(classify_shards, tmp_path / "nan", lr=float("inf")))


def test_four_classes(classify_four, tmp_path):
    res = run_classify(tiny_config(classify_four, tmp_path / "four", epochs=2, lr=3e-3))
    assert res["class_names"] == ["A", "B", "C", "D"]
    assert len(res["confusion"]) == 4 and set(res["per_class"]) == {"A", "B", "C", "D"}
    import numpy as np

    assert res["tpr"] == pytest.approx(np.mean([res["per_class"][c]["recall"] for c in "ABCD"]))


def test_dataloader_workers_do_not_change_the_result(classify_shards, tmp_path):
    a = run_classify(tiny_config(classify_shards, tmp_path / "w0", aug="classic", epochs=1))
    b = run_classify(tiny_config(classify_shards, tmp_path / "w2", aug="classic", epochs=1, workers=2))
    assert a == b


def test_more_epochs_continue_a_finished_run(classify_shards, tmp_path):
    two = run_classify(tiny_config(classify_shards, tmp_path / "two", epochs=2, aug="classic"))
    run_classify(tiny_config(classify_shards, tmp_path / "grow", epochs=1, aug="classic"))
    seen = []
    grown = run_classify(tiny_config(classify_shards, tmp_path / "grow", epochs=2, aug="classic"), on_epoch=seen.append)
    assert [r["epoch"] for r in seen] == [2] and grown == two


def test_recalibrate_batchnorm_is_the_average_of_batch_statistics():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from hpcgan.classify.train import recalibrate_batchnorm

    torch.manual_seed(0)
    x = torch.randn(40, 3, 4, 4) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1) + 3
    loader = DataLoader(TensorDataset(x, torch.zeros(40)), batch_size=8)
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(3))
    model[0].running_mean.fill_(-7.0)
    used = recalibrate_batchnorm(model, loader, torch.device("cpu"), max_images=24)
    assert used == 24 and model[0].momentum == 0.1 and model.training
    batches = x[:24].split(8)
    mean = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    var = torch.stack([b.transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=True) for b in batches]).mean(0)
    torch.testing.assert_close(model[0].running_mean, mean)
    torch.testing.assert_close(model[0].running_var, var)
