"""``hpcgan evaluate``: a classifier trained on real Kaggle X-rays tested on real Hannover X-rays (COVID only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from hpcgan.classify.evaluate import EXTERNAL_METRICS, ensure_external, evaluate_run
from hpcgan.errors import HpcganError

from .helpers import link_subset, tiny_config
from .test_cli import _main


@pytest.fixture(scope="module")
def classify_hannover(data_cxr_root, tmp_path_factory):
    """14 Hannover COVID X-rays (the first by name, lung masks where V7 drew one) preprocessed at 48 px, every
    image in the train split, as for an external set: ``--layout plain --test-per-class 0 --val-fraction 0``."""
    from hpcgan.data.preprocess import PreprocessConfig, run_preprocess

    root = tmp_path_factory.mktemp("classify_hannover")
    link_subset(data_cxr_root / "hannover" / "png", root / "COVID", 14)
    out = tmp_path_factory.mktemp("classify_hannover_shards")
    run_preprocess(PreprocessConfig(str(root), str(out), classes=["COVID"], layout="plain",
                                    masks=str(data_cxr_root / "hannover" / "masks_v7labs"),
                                    metadata=str(data_cxr_root / "hannover" / "data.csv"), resolution=48,
                                    test_per_class=0, val_fraction=0.0, annotations="keep", workers=1,
                                    progress=False))
    return out


@pytest.fixture(scope="module")
def classify_kaggle_run(classify_real_shards, tmp_path_factory):
    """A small CNN trained 2 epochs on the real Kaggle shards (COVID, Normal), COVID the positive class."""
    from hpcgan.classify import run_classify

    out = tmp_path_factory.mktemp("classify_kaggle_run") / "run"
    run_classify(tiny_config(classify_real_shards, out, image_size=40, positive_class="COVID", lr=3e-3))
    return out


def _independent_sensitivity(run, shards) -> tuple[float, int]:
    """Fraction of the external images the run's best.pt calls COVID, computed here without hpcgan's data path."""
    import h5py

    from hpcgan.classify.models import build_model

    ck = torch.load(run / "best.pt", weights_only=True)
    model, _ = build_model(ck["model_name"], 2, ck["image_size"], pretrained="no")
    model.load_state_dict(ck["model"])
    model.eval()
    images = []
    for path in sorted(shards.glob("*/shard-*.h5")):
        with h5py.File(path, "r") as f:
            images.append(f["images"][:])
    x = torch.from_numpy(np.concatenate(images)).float() / 255.0  # [N, 1, 48, 48]
    x = torch.nn.functional.interpolate(x, size=(ck["image_size"],) * 2, mode="bilinear", antialias=True,
                                        align_corners=False)
    grey_mean, grey_std = (0.485 + 0.456 + 0.406) / 3, (0.229 + 0.224 + 0.225) / 3
    with torch.no_grad():
        pred = model((x - grey_mean) / grey_std).argmax(1)
    covid = ck["class_names"].index("COVID")
    return float((pred == covid).float().mean()), len(x)


def test_evaluate_on_hannover_through_the_cli(classify_kaggle_run, classify_hannover, capsys):
    rc, out, err = _main(capsys, "evaluate", "--run", classify_kaggle_run, "--data", classify_hannover,
                         "--split", "all", "--name", "hannover")
    assert rc == 0, err
    entries = json.loads((classify_kaggle_run / EXTERNAL_METRICS).read_text())
    e = entries["hannover"]
    sens, n = _independent_sensitivity(classify_kaggle_run, classify_hannover)
    assert e["n"] == n == 14 and e["classes_present"] == ["COVID"] and e["splits"] == ["train"]
    assert e["positive_class"] == "COVID" and e["sensitivity"] == pytest.approx(sens)
    assert e["specificity"] is None and e["roc_auc"] is None and "roc" not in e  # no Normal images
    assert e["accuracy"] == pytest.approx(sens) and e["per_class_recall"] == {"COVID": pytest.approx(sens)}
    assert e["confusion"][1] == [0, 0] and sum(e["confusion"][0]) == 14
    assert "sensitivity (COVID)" in out and "specificity n/a" in out
    # a second set (the run's own test split) is added beside the first, which stays
    own = yaml.safe_load((classify_kaggle_run / "config.yaml").read_text())["data"]
    evaluate_run(classify_kaggle_run, own, split="test", name="kaggle-test")
    both = json.loads((classify_kaggle_run / EXTERNAL_METRICS).read_text())
    assert set(both) == {"hannover", "kaggle-test"} and both["hannover"] == e
    test_metrics = json.loads((classify_kaggle_run / "test_metrics.json").read_text())
    assert both["kaggle-test"]["confusion"] == test_metrics["confusion"]  # same model, same images: same numbers
    for k in ("accuracy", "tpr", "tnr", "roc_auc"):
        assert both["kaggle-test"][k] == pytest.approx(test_metrics[k]), k


def test_ensure_external_evaluates_only_when_out_of_date(classify_kaggle_run, classify_hannover):
    first = ensure_external(classify_kaggle_run, {"h": str(classify_hannover)})["h"]
    path = classify_kaggle_run / EXTERNAL_METRICS
    stamp = path.stat().st_mtime_ns
    assert ensure_external(classify_kaggle_run, {"h": str(classify_hannover)})["h"] == first
    assert path.stat().st_mtime_ns == stamp  # current: not evaluated again
    with pytest.raises(HpcganError, match="no images in split"):
        ensure_external(classify_kaggle_run, {"h": str(classify_hannover)}, split="test")


def test_evaluate_errors_name_what_to_fix(classify_kaggle_run, classify_shards, tmp_path, capsys):
    rc, _, err = _main(capsys, "evaluate", "--run", tmp_path, "--data", classify_shards)
    assert rc == 2 and "no best.pt" in err and "Traceback" not in err
    rc, _, err = _main(capsys, "evaluate", "--run", classify_kaggle_run, "--data", classify_shards)
    assert rc == 2 and "Clear" in err and "not classes of the classifier" in err
    rc, _, err = _main(capsys, "evaluate", "--run", classify_kaggle_run, "--data", tmp_path)
    assert rc == 2 and "manifest.json" in err
    (classify_kaggle_run / EXTERNAL_METRICS).write_text("{not json")
    with pytest.raises(HpcganError, match="delete it"):
        ensure_external(classify_kaggle_run, {"h": str(classify_shards)})
    (classify_kaggle_run / EXTERNAL_METRICS).unlink()
