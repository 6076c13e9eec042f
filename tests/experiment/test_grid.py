"""Task expansion, config errors, and the changed-config guard (no training here)."""

from __future__ import annotations

import itertools

import pytest
import yaml

from hpcgan.errors import HpcganError
from hpcgan.experiment.grid import ExperimentConfig, expand, load_experiment, prepare_dir, validate

from .conftest import small_grid


def _cfg(tmp_path, **over):
    return validate(ExperimentConfig(**small_grid(tmp_path / "data", tmp_path / "out", **over)))


def test_expand_counts_names_seeds(tmp_path):
    sets = [["COVID", "Normal"], ["COVID", "Normal", "Lung_Opacity", "Viral Pneumonia"]]
    cfg = _cfg(tmp_path, models=["inception_v3", "efficientnet_b0"], augs=["none", "classic", "gan", "classic+gan"],
               runs=3, class_sets=sets, gan_data=[str(tmp_path / "syn")], gan_classes=["COVID"])
    tasks = expand(cfg)
    assert len(tasks) == 2 * 2 * 4 * 3
    assert [t.index for t in tasks] == list(range(len(tasks)))
    assert len({t.name for t in tasks}) == len(tasks)
    assert tasks[0].name == "inception_v3-none-COVID,Normal-run1"
    # spaces in class names become _ in the folder name; runs vary fastest, then aug, model, class set
    assert tasks[-1].name == "efficientnet_b0-classic+gan-COVID,Normal,Lung_Opacity,Viral_Pneumonia-run3"
    expected = list(itertools.product(["COVID,Normal", "COVID,Normal,Lung_Opacity,Viral_Pneumonia"],
                                      ["inception_v3", "efficientnet_b0"], ["none", "classic", "gan", "classic+gan"],
                                      [1, 2, 3]))
    assert [(t.class_set.replace(" ", "_"), t.model, t.aug, t.run) for t in tasks] == expected
    for t in tasks:
        kw = t.classify
        assert kw["seed"] == t.run == t.seed  # run r -> seed r in every cell (paired design)
        assert kw["model"] == t.model and kw["aug"] == t.aug
        assert kw["outdir"].endswith(f"/g/tasks/{t.name}")
        assert (kw["gan_data"] is not None) == (t.aug in ("gan", "classic+gan"))
        assert kw["classes"] in sets
        assert kw["epochs"] == 1 and kw["image_size"] == 32
    # the classify dicts build real ClassifyConfigs
    from hpcgan.classify.config import ClassifyConfig

    ClassifyConfig(**tasks[5].classify)
    assert expand(cfg) == tasks  # deterministic


def test_expand_all_classes_default(tmp_path):
    tasks = expand(_cfg(tmp_path))
    assert [t.name for t in tasks] == ["small_cnn-none-all-run1", "small_cnn-none-all-run2",
                                       "small_cnn-classic-all-run1", "small_cnn-classic-all-run2"]
    assert all(t.classify["classes"] is None for t in tasks)


@pytest.mark.parametrize("over, words", [
    (dict(models=["resnet"]), "models"),
    (dict(augs=["none", "mixup"]), "augs"),
    (dict(augs=["none", "gan"]), "gan_data"),
    (dict(runs=0), "runs"),
    (dict(class_sets=[["A", "B", "C"]]), "2 or 4"),
    (dict(class_sets=[["A", "A"]]), "2 or 4"),
    (dict(name="a/b"), "name"),
    (dict(augs=["none", "none"]), "twice"),
    (dict(epochs=0), "epochs"),
])
def test_config_errors(tmp_path, over, words):
    with pytest.raises(HpcganError, match=words):
        _cfg(tmp_path, **over)


def test_load_unknown_key_and_paths(tmp_path, monkeypatch):
    p = tmp_path / "e.yaml"
    p.write_text(yaml.safe_dump({**small_grid("d", "o"), "modle": "x"}))
    with pytest.raises(HpcganError, match="modle"):
        load_experiment(p)
    p.write_text(yaml.safe_dump(small_grid("d", "o")))
    monkeypatch.chdir(tmp_path)
    cfg = load_experiment(p, {"outdir": "elsewhere"})
    assert cfg.data == str(tmp_path / "d") and cfg.outdir == str(tmp_path / "elsewhere")


def test_changed_config_is_refused(tmp_path, exp_shards):
    cfg = validate(ExperimentConfig(**small_grid(exp_shards, tmp_path)))
    exp = prepare_dir(cfg)
    assert (exp / "experiment.yaml").is_file()
    prepare_dir(validate(ExperimentConfig(**small_grid(exp_shards, tmp_path, device="auto"))))  # execution only
    with pytest.raises(HpcganError, match=r"different config: epochs: was 1, now 2"):
        prepare_dir(validate(ExperimentConfig(**small_grid(exp_shards, tmp_path, epochs=2))))
    with pytest.raises(HpcganError, match=r"manifest.json"):
        prepare_dir(validate(ExperimentConfig(**small_grid(tmp_path / "nothing", tmp_path))))


def test_cli_user_errors_have_no_traceback(tmp_path, capsys):
    from hpcgan.cli import main

    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not an experiment directory" in err and "Traceback" not in err
    conf = tmp_path / "e.yaml"
    conf.write_text(yaml.safe_dump(small_grid(tmp_path, tmp_path / "o")))
    assert main(["experiment", str(conf), "--task-index", "9"]) == 2
    assert "out of range: the grid has 4 tasks" in capsys.readouterr().err
    assert main(["experiment", str(conf), "--list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("4 tasks (sbatch --array=0-3)")
