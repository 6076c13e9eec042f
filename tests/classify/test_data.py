"""Real + synthetic training mix (by class name, seeded, recorded) and the bad-input errors."""

from __future__ import annotations

import json

import pytest

from hpcgan.classify import run_classify
from hpcgan.classify.config import validate
from hpcgan.classify.data import build_datasets
from hpcgan.errors import HpcganError

from .helpers import blob_folder, tiny_config


def test_gan_mix_maps_classes_by_name(classify_shards, classify_synthetic, tmp_path):
    cfg = validate(tiny_config(classify_shards, tmp_path / "x", aug="gan", gan_data=[str(classify_synthetic)], gan_n=12))
    sets = build_datasets(cfg)
    mix = sets["train_mix"]
    assert sets["class_names"] == ["Clear", "Opacity"]
    assert sum(mix["synthetic"].values()) == 12 and set(mix["synthetic"]) <= {"Clear", "Opacity"}
    n_real = sum(mix["real"].values())
    assert len(sets["train"]) == n_real + 12
    # synthetic label order is (Opacity, Clear): the labels seen in training must follow the names
    synth_views = sets["train"].datasets[1:]
    for view in synth_views:
        for row, lab in zip(view.indices, view.labels.tolist()):
            assert sets["class_names"][lab] == view.base.class_names[int(view.base.labels[row])]
    counted = {c: 0 for c in sets["class_names"]}
    for view in synth_views:
        for lab in view.labels.tolist():
            counted[sets["class_names"][lab]] += 1
    assert {c: n for c, n in counted.items() if n} == {c: n for c, n in mix["synthetic"].items() if n}
    again = build_datasets(cfg)["train_mix"]
    assert again == mix
    other = build_datasets(validate(tiny_config(classify_shards, tmp_path / "y", aug="gan", seed=9,
                                                gan_data=[str(classify_synthetic)], gan_n=12)))
    rows = [list(v.indices) for v in synth_views]
    assert rows != [list(v.indices) for v in other["train"].datasets[1:]]


def test_gan_classes_restricts_and_is_recorded(classify_shards, classify_synthetic, tmp_path):
    res = run_classify(tiny_config(classify_shards, tmp_path / "r", aug="classic+gan", epochs=1,
                                   gan_data=[str(classify_synthetic)], gan_n=6, gan_classes=["Opacity"]))
    assert res["train_mix"]["synthetic"] == {"Opacity": 6}
    assert res["train_mix"]["gan_data"] == [str(classify_synthetic)] and res["aug"] == "classic+gan"
    assert json.loads((tmp_path / "r" / "test_metrics.json").read_text())["train_mix"] == res["train_mix"]


def test_synthetic_class_not_in_real_is_an_error(classify_shards, tmp_path):
    foreign = blob_folder(tmp_path / "foreign", ["Clear", "Martian"], {"train": 3}, synthetic=True)
    with pytest.raises(HpcganError, match="Martian"):
        build_datasets(validate(tiny_config(classify_shards, tmp_path / "x", aug="gan", gan_data=[str(foreign)],
                                            gan_n=4)))
    with pytest.raises(HpcganError, match="gan_n 99"):
        build_datasets(validate(tiny_config(classify_shards, tmp_path / "x", aug="gan", gan_data=[str(foreign)],
                                            gan_n=99, gan_classes=["Clear"])))


@pytest.mark.parametrize("change,match", [
    (dict(model="resnet50"), "model 'resnet50'"),
    (dict(aug="mixup"), "aug 'mixup'"),
    (dict(aug="gan"), "gan_data"),
    (dict(aug="classic+gan", gan_data=[]), "gan_data"),
    (dict(model="inception_v3", image_size=64), "image_size 64"),
    (dict(pretrained="maybe"), "pretrained"),
    (dict(classes=["Clear", "Opacity", "Other"]), "2 or 4"),
    (dict(epochs=0), "epochs"),
])
def test_bad_settings_name_the_setting(classify_shards, tmp_path, change, match):
    with pytest.raises(HpcganError, match=match):
        run_classify(tiny_config(classify_shards, tmp_path / "bad", **change))
    assert not (tmp_path / "bad").exists()


def test_missing_folders_and_unknown_classes(classify_shards, tmp_path):
    with pytest.raises(HpcganError, match=r"data .*nowhere"):
        run_classify(tiny_config(tmp_path / "nowhere", tmp_path / "o"))
    with pytest.raises(HpcganError, match=r"gan_data .*nothing"):
        run_classify(tiny_config(classify_shards, tmp_path / "o", aug="gan", gan_data=[str(tmp_path / "nothing")]))
    with pytest.raises(HpcganError, match=r"classes \['COVID'\]"):
        run_classify(tiny_config(classify_shards, tmp_path / "o", classes=["Clear", "COVID"]))
    with pytest.raises(HpcganError, match="positive_class"):
        run_classify(tiny_config(classify_shards, tmp_path / "o", positive_class="COVID"))
