"""External validation (``hpcgan evaluate``): a trained classifier tested on another data set.

:func:`evaluate_run` loads a finished ``hpcgan classify`` run (``best.pt``: the tested epoch's weights, its
class names, model and input size), reads the images of another ``hpcgan preprocess`` output (for example
another hospital's X-rays), predicts them and writes ``RUN_DIR/external_metrics.json``: one entry per
external set name, so several sets can be tested on one run; a new entry keeps the others.

Classes are matched by name: every class with images in the external set must be one of the run's classes
(an external set may lack some, e.g. a COVID-only set). The metrics are
:func:`hpcgan.metrics.classification.classification_metrics` over the run's classes, with those that need
an absent class set to None: ``sensitivity`` (= TPR, recall of the positive class) needs positives,
``specificity`` (= TNR) needs negatives, ROC AUC needs both. ``per_class_recall`` holds the recall of every
class with images. Images are resized to the run's input size as in its evaluation (no augmentation).

``split``: ``all`` tests every split of the external set together (it was not trained on), ``test`` its
test split only. An entry records the sha256 of ``best.pt``; :func:`ensure_external` evaluates again only
when the checkpoint, the data folder or the split changed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader

from hpcgan import dist
from hpcgan.atomic import atomic_write_text
from hpcgan.classify.augment import build_transform
from hpcgan.classify.data import Relabelled
from hpcgan.classify.models import build_model, split_logits
from hpcgan.data.dataset import ShardDataset
from hpcgan.data.shards import read_manifest
from hpcgan.errors import HpcganError
from hpcgan.metrics.classification import classification_metrics

__all__ = ["evaluate_run", "ensure_external", "read_external", "evaluate_main", "EXTERNAL_METRICS", "SPLITS"]

EXTERNAL_METRICS = "external_metrics.json"
SPLITS = ("all", "test")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_external(run_dir) -> dict:
    """The entries of ``RUN_DIR/external_metrics.json`` ({} when there is none); HpcganError when unreadable."""
    path = Path(run_dir) / EXTERNAL_METRICS
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise HpcganError(f"cannot read {path} ({exc}); delete it and run `hpcgan evaluate` again") from exc


def _checkpoint(run: Path) -> dict:
    best = run / "best.pt"
    if not best.is_file():
        raise HpcganError(f"{run} has no best.pt: give the folder of a finished `hpcgan classify` run (--outdir)")
    try:
        ck = torch.load(best, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file is the user's to replace
        raise HpcganError(f"cannot load {best} ({exc}); run the classifier again") from exc
    for key in ("model", "class_names", "model_name", "image_size", "config"):
        if key not in ck:
            raise HpcganError(f"{best} has no {key!r}: not a checkpoint of `hpcgan classify`")
    return ck


def _external_sets(data: Path, split: str, names: list[str], size: int) -> tuple[list[Relabelled], list[str],
                                                                                list[str]]:
    """The external images as views labelled in the run's class order; (views, splits used, classes present)."""
    if not (data / "manifest.json").is_file():
        raise HpcganError(f"--data {data} has no manifest.json; give an `hpcgan preprocess` output folder")
    counts = read_manifest(data)["counts"]
    splits = [s for s in ("train", "val", "test") if s in counts] if split == "all" else ["test"]
    present = sorted({c for s in splits for c, n in counts.get(s, {}).items() if n})
    foreign = [c for c in present if c not in names]
    if foreign:
        raise HpcganError(f"classes {foreign} of {data} are not classes of the classifier ({names}); test on a set "
                          "whose classes it knows")
    used = [s for s in splits if sum(counts.get(s, {}).values())]
    if not used:
        raise HpcganError(f"{data} has no images in split(s) {splits}; use --split all or another folder")
    views, tf = [], build_transform(size, classic=False)  # resize + normalise, as the run's evaluation
    for s in used:
        ds = ShardDataset(data, s, classes=present, value_range="unit")
        label_map = {ds.class_names.index(c): names.index(c) for c in present}
        views.append(Relabelled(ds, np.arange(len(ds)), label_map, transform=tf))
    return views, used, present


@torch.no_grad()
def _predict(model: torch.nn.Module, loader: DataLoader, dev: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(probs (N, K), labels (N,)) of the model's main logits."""
    model.eval()
    probs, labels = [], []
    for x, y in loader:
        x = x.to(dev)  # [B, 1, S, S]
        probs.append(torch.softmax(split_logits(model(x))[0].double(), dim=1).cpu().numpy())
        labels.append(y.numpy())
    return np.concatenate(probs), np.concatenate(labels)  # [N, K], [N]


def _metrics(labels: np.ndarray, probs: np.ndarray, names: list[str], positive: str) -> dict:
    """classification_metrics with the rates that need an absent class set to None."""
    m = classification_metrics(labels, probs, names, positive)
    pos = names.index(positive)
    has_pos, has_neg = bool((labels == pos).any()), bool((labels != pos).any())
    for key, ok in (("tpr", has_pos), ("fnr", has_pos), ("tnr", has_neg), ("fpr", has_neg)):
        if not ok:
            m[key] = None
    if not (has_pos and has_neg):
        m.pop("roc", None)  # a one-class curve says nothing
    m["sensitivity"], m["specificity"] = m["tpr"], m["tnr"]
    m["per_class_recall"] = {c: v["recall"] for c, v in m["per_class"].items() if v["support"]}
    return m


def evaluate_run(run_dir, data, split: str = "all", name: str | None = None, device: str = "auto",
                 batch: int = 64) -> dict:
    """Test the run's best model on the shards ``data``; add entry ``name`` to external_metrics.json; return it.

    ``name`` defaults to the data folder's name.
    """
    if split not in SPLITS:
        raise HpcganError(f"--split {split!r} is unknown; use all or test")
    if int(batch) < 1:
        raise HpcganError(f"--batch must be >= 1, got {batch}")
    run, data = Path(run_dir), Path(data).resolve()
    name = name or data.name
    ck = _checkpoint(run)
    names, size = list(ck["class_names"]), int(ck["image_size"])
    positive = ck["config"].get("positive_class") or names[0]
    views, used, present = _external_sets(data, split, names, size)
    dev = dist.select_device(device)
    model, _ = build_model(ck["model_name"], len(names), size, pretrained="no")
    model.load_state_dict(ck["model"])
    model.to(dev)
    loader = DataLoader(ConcatDataset(views), batch_size=int(batch), shuffle=False)
    probs, labels = _predict(model, loader, dev)
    entry = {"name": name, "data": str(data), "split": split, "splits": used, "classes_present": present,
             "n": int(len(labels)), "run": str(run.resolve()), "model": ck["model_name"], "image_size": size,
             "data_resolution": int(read_manifest(data)["settings"]["resolution"]), "best_epoch": ck.get("epoch"),
             "checkpoint_sha256": _sha256(run / "best.pt"), **_metrics(labels, probs, names, positive)}
    entries = read_external(run)
    entries[name] = entry
    atomic_write_text(run / EXTERNAL_METRICS, json.dumps(entries, indent=1))
    return entry


def ensure_external(run_dir, sets: dict[str, str], split: str = "all", device: str = "auto") -> dict:
    """Entries of ``sets`` ({name: shards}) for a finished run, evaluating only those missing or out of date."""
    run = Path(run_dir)
    have = read_external(run)
    sha = _sha256(run / "best.pt") if sets else None
    out = {}
    for name, data in sets.items():
        e = have.get(name)
        fresh = (e is not None and e.get("data") == str(Path(data).resolve()) and e.get("split") == split
                 and e.get("checkpoint_sha256") == sha)
        out[name] = e if fresh else evaluate_run(run, data, split=split, name=name, device=device)
    return out


def evaluate_main(run_dir: str, data: str, split: str = "all", name: str | None = None, device: str = "auto",
                  batch: int = 64) -> int:
    """``hpcgan evaluate``: test, write external_metrics.json, print the headline numbers."""
    e = evaluate_run(run_dir, data, split=split, name=name, device=device, batch=batch)

    def f(v):
        return "n/a" if v is None else f"{v:.4f}"

    print(f"{run_dir} on {e['name']} ({e['n']} images, split {split}, classes {', '.join(e['classes_present'])}): "
          f"sensitivity ({e['positive_class']}) {f(e['sensitivity'])}, specificity {f(e['specificity'])}, "
          f"accuracy {f(e['accuracy'])}, balanced accuracy {f(e['balanced_accuracy'])}, AUC {f(e['roc_auc'])}; "
          f"wrote {Path(run_dir) / EXTERNAL_METRICS}", file=sys.stdout)
    return 0
