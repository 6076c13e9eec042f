"""Train and evaluate one classifier (``hpcgan classify``): :func:`run_classify`.

One run, in ``cfg.outdir``:

- ``config.yaml``: the resolved :class:`~hpcgan.classify.config.ClassifyConfig`;
- ``metrics.jsonl``: one line per epoch ``{epoch, train_loss, train_acc, val_loss, val_acc, val_balanced_acc,
  val_auc, sec}`` (loss = mean cross-entropy per image; acc = fraction correct; balanced acc = mean per-class
  recall; auc = ROC AUC of the positive class, macro one-vs-rest with 4 classes);
- ``last.pt``: model, optimiser and counters after the newest epoch (resume point);
- ``best.pt``: the model of the epoch with the best validation score (the first one on ties). The score is
  ``select``: balanced accuracy by default, because the validation split keeps the training set's class
  ratio while the test split is balanced (accuracy on an imbalanced split rewards predicting the big class);
  ``accuracy`` or ``auc`` on request;
- ``test_metrics.json``: that model on the test split (:func:`hpcgan.metrics.classification.classification_metrics`)
  plus ``best_epoch, select, best_val_score, balance, train_mix, model, aug, seed, pretrained_weights, image_size``;
- ``curves.png`` (loss and accuracy per epoch) and ``roc.png`` (ROC curves on the test split).

Batch norm: before each validation the running statistics are re-estimated from
up to :data:`BN_RECALIBRATION_IMAGES` training images with the epoch's final
weights (:func:`recalibrate_batchnorm`). The exponential running averages lag
behind fast-changing weights: in short runs from random initialisation (an
EfficientNet-B0 after 4 epochs of 7 steps) they made the model predict one class in
evaluation mode while it was 85 % right in training mode.

Training loss: cross-entropy of the logits; for InceptionV3 with its auxiliary
head, ``CE(main) + 0.4 * CE(aux)``; evaluation uses the main logits only.
``balance: weight`` weights each class's term by N / (K n_c) of the training set
(:func:`hpcgan.classify.data.class_weights`); ``balance: oversample`` replaces the
shuffled sampler by :class:`hpcgan.classify.data.BalancedSampler`.
Optimiser: Adam(lr). ``batch`` is the global batch: each of W ranks takes
``batch / W`` images per step from its :class:`~hpcgan.data.dataset.ShardSampler`
part; gradients are averaged by DDP (gloo on CPU, nccl on GPU).

Reproducibility: the model is initialised after ``torch.manual_seed(seed)``;
before epoch e every random source (torch, numpy, Python, the sampler's
permutation) is reseeded from ``(seed, e)``, and each training image's
augmentation is drawn from its own seed ``(seed, e, image)``
(:class:`hpcgan.classify.data.Relabelled`), so ``workers`` does not change the
result. A run killed
between epochs and resumed from ``last.pt`` therefore equals an uninterrupted
run, and the same config gives the same ``test_metrics.json`` on a CPU.

Mixed precision (``amp``): ``bf16`` or ``fp16`` runs every forward pass (training,
batch-norm recalibration, evaluation) under ``torch.autocast`` with that dtype;
parameters, optimiser state and the loss stay float32. ``fp16`` scales the loss
with a ``torch.amp.GradScaler`` (its state is in ``last.pt``), which skips the
steps whose gradients overflow. ``channels_last`` stores the model and the images
in that memory layout.

Files are written by rank 0 only, atomically (:mod:`hpcgan.atomic`).
"""

from __future__ import annotations

import copy
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from hpcgan import dist
from hpcgan.atomic import atomic_open, atomic_path, atomic_write_text
from hpcgan.classify.config import EXECUTION_FIELDS, ClassifyConfig, resolved_image_size, validate
from hpcgan.classify.data import BalancedSampler, build_datasets, class_weights, set_epoch, train_labels
from hpcgan.classify.models import AUX_LOSS_WEIGHT, build_model, split_logits, weights_path
from hpcgan.config import load as load_config
from hpcgan.config import to_dict, write_resolved
from hpcgan.data.dataset import ShardSampler
from hpcgan.errors import HpcganError
from hpcgan.metrics.classification import (balanced_accuracy, classification_metrics, confusion_matrix, roc_auc,
                                           roc_curve)
from hpcgan.ops.conv import widens_for

__all__ = ["run_classify", "classify_main", "TEST_METRICS"]

TEST_METRICS = "test_metrics.json"
# Fields added after runs were made whose default differs from what those runs did: before ``select``
# existed the best epoch was the one with the best validation accuracy.
LEGACY = {"select": "accuracy"}
# Training images whose batch statistics replace batch norm's running averages before each validation.
BN_RECALIBRATION_IMAGES = 2048


def _log(msg: str) -> None:
    if dist.is_rank0():
        print(f"{dist.log_prefix()}classify: {msg}", file=sys.stderr, flush=True)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919) % (2**31 - 1)


def _seed_all(s: int) -> None:
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(amp: str, dev: torch.device):
    """The ``torch.autocast`` context of ``amp`` ("off", "bf16", "fp16") on ``dev`` (disabled for "off")."""
    return torch.autocast(dev.type, dtype=AMP_DTYPES.get(amp, torch.bfloat16), enabled=amp in AMP_DTYPES)


def _to(x: torch.Tensor, dev: torch.device, channels_last: bool) -> torch.Tensor:
    """Images to the device, in channels_last layout when asked."""
    x = x.to(dev, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _identity(d: dict, drop: tuple[str, ...]) -> dict:
    return {k: v for k, v in d.items() if k not in drop}


def _check_outdir(cfg: ClassifyConfig, out: Path) -> dict | None:
    """The finished result when ``out`` holds this very run; HpcganError when it holds a different one."""
    path = out / "config.yaml"
    if not path.is_file():
        return None
    try:
        old = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise HpcganError(f"cannot read {path} ({exc}); delete {out} or use another outdir") from exc
    new = to_dict(cfg)
    # fields added since that run was made have their defaults, or the value the run really used (LEGACY)
    old = {**to_dict(ClassifyConfig()), **LEGACY, **old}
    if _identity(old, EXECUTION_FIELDS + ("epochs",)) != _identity(new, EXECUTION_FIELDS + ("epochs",)):
        diff = sorted(k for k in set(old) | set(new) if k not in EXECUTION_FIELDS + ("epochs",)
                      and old.get(k) != new.get(k))
        raise HpcganError(f"outdir {out} holds a run with other settings ({', '.join(diff)}); use another outdir "
                          "or delete it")
    tm = out / TEST_METRICS
    if tm.is_file() and old.get("epochs") == new.get("epochs"):
        try:
            return json.loads(tm.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # rewritten below
    return None


def val_scores(probs: np.ndarray, labels: np.ndarray, positive: int) -> dict:
    """Validation ``{accuracy, balanced, auc}`` of class probabilities (N, K): the candidates of ``select``.

    auc: ROC AUC of class ``positive`` with 2 classes, the macro one-vs-rest mean with more; None when the
    split lacks a class.
    """
    k = probs.shape[1]
    cm = confusion_matrix(labels, probs.argmax(1), k)
    if k == 2:
        auc = roc_auc(probs[:, positive], labels == positive)
    else:
        aucs = [roc_auc(probs[:, c], labels == c) for c in range(k)]
        auc = None if any(a is None for a in aucs) else float(np.mean(aucs))
    return {"accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "balanced": balanced_accuracy(cm), "auc": auc}


def _loss(out, y: torch.Tensor, crit: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    main, aux = split_logits(out)
    loss = crit(main, y)
    if aux is not None:
        loss = loss + AUX_LOSS_WEIGHT * crit(aux, y)
    return loss, main


@torch.no_grad()
def _evaluate(model: nn.Module, loader: DataLoader, dev: torch.device, amp: str = "off",
              channels_last: bool = False) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(mean loss, accuracy, probs (N, K), labels (N,)) of ``model``'s main logits over ``loader``."""
    model.eval()
    crit = nn.CrossEntropyLoss(reduction="sum")
    total, probs, labels = 0.0, [], []
    for x, y in loader:
        x, y = _to(x, dev, channels_last), y.to(dev)  # [B, C, S, S], [B]
        with autocast(amp, dev):
            logits = split_logits(model(x))[0].float()  # [B, K]
        total += float(crit(logits, y))
        probs.append(torch.softmax(logits.double(), dim=1).cpu().numpy())
        labels.append(y.cpu().numpy())
    p, lab = np.concatenate(probs), np.concatenate(labels)  # [N, K], [N]
    return total / len(lab), float((p.argmax(1) == lab).mean()), p, lab


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: DataLoader, dev: torch.device, max_images: int,
                          amp: str = "off", channels_last: bool = False) -> int:
    """Re-estimate every batch-norm layer's running mean/var from up to ``max_images`` training images.

    The running statistics are reset and replaced by the plain average over the batches
    (``momentum=None``) of the batch mean and unbiased batch variance, computed in training
    mode with the current weights and no gradient ("precise BN"), under the run's ``amp``
    autocast. Returns the images used (0 when the model has no batch norm).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    seen = 0
    try:
        for x, _ in loader:
            if x.shape[0] < 2:
                continue
            with autocast(amp, dev):
                model(_to(x, dev, channels_last))
            seen += x.shape[0]
            if seen >= max_images:
                break
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
    return seen


def _plot_curves(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in records]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ep, [r["train_loss"] for r in records], "o-", label="train")
    a.plot(ep, [r["val_loss"] for r in records], "s-", label="validation")
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy"), a.set_title("loss"), a.legend()
    b.plot(ep, [r["train_acc"] for r in records], "o-", label="train")
    b.plot(ep, [r["val_acc"] for r in records], "s-", label="validation")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy"), b.set_title("accuracy"), b.set_ylim(-0.02, 1.02), b.legend()
    from matplotlib.ticker import MaxNLocator

    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _plot_roc(probs: np.ndarray, labels: np.ndarray, names: list[str], result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    shown = [result["positive_class"]] if len(names) == 2 else names
    for name in shown:
        c = names.index(name)
        fpr, tpr, _ = roc_curve(probs[:, c], labels == c)
        auc = result["per_class"][name]["roc_auc"]
        what = f"{name} (positive)" if len(names) == 2 else f"{name} vs rest"
        ax.plot(fpr, tpr, label=f"{what}, AUC {auc:.3f}" if auc is not None else f"{what}, AUC undefined")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate"), ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC, test split (n={len(labels)})"), ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _save(obj: dict, path: Path) -> None:
    """torch.save through a temporary name: a killed job never leaves a half checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _read_records(path: Path, upto: int) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec["epoch"] <= upto:
                out.append(rec)
    return out


def _write_records(path: Path, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


@dataclass
class _Env:
    """Where a run happens: its data, ranks and device (:func:`_setup`)."""

    sets: dict  # build_datasets: train / val / test datasets, class_names, train_mix
    names: list[str]
    size: int  # image side fed to the model
    distributed: bool
    world: int
    rank: int
    dev: torch.device
    per_rank: int  # images per rank and step: batch / world


@dataclass
class _Net:
    """The model and what updates it (:func:`_build_model`)."""

    core: nn.Module  # the model itself; DDP (when distributed) wraps it for training only
    info: dict  # build_model's: pretrained_weights, aux_logits
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler


@dataclass
class _Standing:
    """Where the run stands: epochs finished, and the best-validation epoch so far (:func:`_resume`)."""

    done: int = 0
    best_epoch: int = 0
    best_score: float = -1.0
    best_state: dict | None = None


@dataclass
class _Feed:
    """The training and validation loaders, and the loss (:func:`_feed`)."""

    sampler: ShardSampler | BalancedSampler
    gen: torch.Generator  # the training loader's, reseeded each epoch
    loader: DataLoader
    val_loader: DataLoader
    crit: nn.Module
    positive: int  # index of the positive class (val AUC with 2 classes)


def run_classify(cfg: ClassifyConfig, on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train, keep the best-validation epoch, evaluate it on the test split; returns the test metrics.

    Idempotent: when ``outdir/test_metrics.json`` exists for the same config it is returned without
    training. A run killed after an epoch resumes from ``outdir/last.pt``; a larger ``epochs``
    continues a finished run. ``on_epoch(record)`` is called after each epoch's files are written.
    """
    cfg = validate(cfg)
    out = Path(cfg.outdir)
    done = _check_outdir(cfg, out)
    if done is not None:
        _log(f"{out / TEST_METRICS} exists for this config: nothing to do")
        return done
    # data, ranks and device; rank 0 writes the resolved config
    env = _setup(cfg, out)
    # model (seeded), optimiser, loss scaler; resume from last.pt when an earlier run left one
    net = _build_model(cfg, env)
    standing = _resume(cfg, out, net)
    records = _read_records(out / "metrics.jsonl", standing.done)
    # DDP for training, samplers and loaders, the loss
    model: nn.Module = net.core
    if env.distributed:
        model = nn.parallel.DistributedDataParallel(net.core, device_ids=[env.dev.index] if env.dev.type == "cuda"
                                                    else None)
    feed = _feed(cfg, env)
    # the epochs: train, validate, keep the best, then (rank 0) the resume point and metrics.jsonl
    for epoch in range(standing.done + 1, cfg.epochs + 1):
        rec = _run_epoch(cfg, out, env, net, model, feed, standing, epoch)
        records.append(rec)
        if dist.is_rank0():
            _save_epoch(cfg, out, net, standing, epoch, records)
        if on_epoch is not None:
            on_epoch(rec)
    # the best epoch's model on the test split; rank 0 writes test_metrics.json and the plots
    result, probs, labels = _test(cfg, env, net, standing)
    if dist.is_rank0():
        _write_results(out, result, probs, labels, env.names, records)
    if env.distributed:
        torch.distributed.barrier()
    return result


def _setup(cfg: ClassifyConfig, out: Path) -> _Env:
    """The datasets, the process group and the device; rank 0 creates ``out`` with the resolved config."""
    size = resolved_image_size(cfg)
    sets = build_datasets(cfg)
    names = sets["class_names"]
    if cfg.positive_class is not None and cfg.positive_class not in names:
        raise HpcganError(f"positive_class {cfg.positive_class!r} is not one of the classes {names}")
    distributed = dist.init_process_group()
    world, rank = dist.world_size(), dist.rank()
    if cfg.batch % world:
        raise HpcganError(f"batch {cfg.batch} is not divisible by the {world} ranks; choose a multiple of {world}")
    dev = dist.select_device(cfg.device)
    if dist.is_rank0():
        out.mkdir(parents=True, exist_ok=True)
        write_resolved(cfg, out)
    return _Env(sets, names, size, distributed, world, rank, dev, cfg.batch // world)


def _build_model(cfg: ClassifyConfig, env: _Env) -> _Net:
    """The model, initialised after ``torch.manual_seed(seed)``, on the device; Adam and the loss scaler."""
    _seed_all(cfg.seed)
    core, info = build_model(cfg.model, len(env.names), env.size, cfg.pretrained)
    core.to(env.dev, memory_format=torch.channels_last if cfg.channels_last else torch.preserve_format)
    if info["pretrained_weights"]:
        _log(f"{cfg.model}: ImageNet weights from {info['pretrained_weights']}")
    elif cfg.model != "small_cnn":
        why = "pretrained=no" if cfg.pretrained == "no" else f"no file at {weights_path(cfg.model)}"
        _log(f"{cfg.model}: random initialisation ({why})")
    if cfg.amp == "bf16" and widens_for(env.dev, torch.bfloat16):
        _log("amp bf16: this CPU has no native bfloat16 convolution (AVX-512 or AMX), so autocast's bfloat16 "
             "convolutions take oneDNN's generic path, many times slower than --amp off here")
    opt = torch.optim.Adam(core.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler(env.dev.type, enabled=cfg.amp == "fp16")  # loss scaling for float16 only
    return _Net(core, info, opt, scaler)


def _resume(cfg: ClassifyConfig, out: Path, net: _Net) -> _Standing:
    """Load ``out/last.pt`` (model, optimiser, scaler) and the best model so far when a run left them."""
    standing = _Standing()
    last_pt, best_pt = out / "last.pt", out / "best.pt"
    if not last_pt.is_file():
        return standing
    try:
        ck = torch.load(last_pt, map_location="cpu", weights_only=True)
        net.core.load_state_dict(ck["model"])
        net.opt.load_state_dict(ck["optimizer"])
        if ck.get("scaler"):
            net.scaler.load_state_dict(ck["scaler"])
    except Exception as exc:  # a damaged checkpoint is the user's to remove
        raise HpcganError(f"cannot resume from {last_pt} ({exc}); delete it to start the run over") from exc
    standing.done, standing.best_epoch = int(ck["epoch"]), int(ck["best_epoch"])
    standing.best_score = float(ck.get("best_val_score", ck.get("best_val_accuracy", -1.0)))  # older runs: accuracy
    if standing.done > cfg.epochs:
        raise HpcganError(f"{last_pt} is at epoch {standing.done}, beyond epochs {cfg.epochs}; raise epochs or use "
                          "another outdir")
    standing.best_state = torch.load(best_pt, map_location="cpu", weights_only=True)["model"]
    _log(f"resuming from {last_pt} after epoch {standing.done} (best epoch {standing.best_epoch}, val {cfg.select} "
         f"{standing.best_score:.4f})")
    return standing


def _feed(cfg: ClassifyConfig, env: _Env) -> _Feed:
    """This rank's training sampler (shuffled, or balanced under ``balance: oversample``), the loaders, the loss
    (class-weighted under ``balance: weight``)."""
    names, sets, dev = env.names, env.sets, env.dev
    labels = train_labels(sets["train"])
    if cfg.balance == "oversample":
        sampler = BalancedSampler(labels, env.world, env.rank, seed=cfg.seed)
    else:
        sampler = ShardSampler(len(sets["train"]), env.world, env.rank, seed=cfg.seed)
    gen = torch.Generator()
    loader = DataLoader(sets["train"], batch_size=env.per_rank, sampler=sampler, num_workers=cfg.workers,
                        generator=gen, pin_memory=dev.type == "cuda")
    val_loader = DataLoader(sets["val"], batch_size=env.per_rank, shuffle=False, num_workers=cfg.workers)
    weight = class_weights(labels, len(names)).to(dev) if cfg.balance == "weight" else None
    crit = nn.CrossEntropyLoss(weight=weight)
    positive = names.index(cfg.positive_class) if cfg.positive_class is not None else 0
    return _Feed(sampler, gen, loader, val_loader, crit, positive)


def _run_epoch(cfg: ClassifyConfig, out: Path, env: _Env, net: _Net, model: nn.Module, feed: _Feed,
               standing: _Standing, epoch: int) -> dict:
    """Epoch ``epoch``: train, re-estimate batch norm, validate, keep the weights when best; its metrics record."""
    t0 = time.perf_counter()
    # every random source from (seed, epoch): a resumed run equals an uninterrupted one
    s = _epoch_seed(cfg.seed, epoch)
    _seed_all(s)
    feed.gen.manual_seed(s)
    set_epoch(env.sets["train"], s)
    feed.sampler.set_epoch(epoch)
    sums = _train_epoch(cfg, env, net, model, feed, epoch)
    # batch-norm statistics from the final weights; rank 0's on every rank, so every rank evaluates the same model
    recalibrate_batchnorm(net.core, feed.loader, env.dev, BN_RECALIBRATION_IMAGES // env.world, cfg.amp,
                          cfg.channels_last)
    if env.distributed:
        torch.distributed.all_reduce(sums)
        for b in net.core.buffers():
            torch.distributed.broadcast(b, 0)
    # validate; the best epoch so far is kept in memory and (rank 0) in best.pt
    val_loss, val_acc, vprobs, vlabels = _evaluate(net.core, feed.val_loader, env.dev, cfg.amp, cfg.channels_last)
    scores = val_scores(vprobs, vlabels, feed.positive)
    score = scores[cfg.select] if scores[cfg.select] is not None else -1.0  # undefined AUC never wins
    if standing.best_state is None or score > standing.best_score:
        standing.best_epoch, standing.best_score = epoch, score
        standing.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in net.core.state_dict().items()})
        if dist.is_rank0():
            _save({"model": standing.best_state, "epoch": epoch, "val_accuracy": val_acc, "select": cfg.select,
                   "val_score": score, "class_names": env.names, "model_name": cfg.model, "image_size": env.size,
                   "config": to_dict(cfg)}, out / "best.pt")
    return {"epoch": epoch, "train_loss": float(sums[0] / max(sums[2], 1)),
            "train_acc": float(sums[1] / max(sums[2], 1)), "val_loss": val_loss, "val_acc": val_acc,
            "val_balanced_acc": scores["balanced"], "val_auc": scores["auc"],
            "sec": round(time.perf_counter() - t0, 3)}


def _train_epoch(cfg: ClassifyConfig, env: _Env, net: _Net, model: nn.Module, feed: _Feed,
                 epoch: int) -> torch.Tensor:
    """One pass over this rank's part of the training set; the float64 sums [loss * n, correct, n]."""
    from hpcgan.progress import track

    model.train()
    sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n
    bar = track(feed.loader, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False, mode=cfg.progress)
    for step, (x, y) in enumerate(bar):
        if x.shape[0] < 2:  # batch norm cannot train on one image; every rank skips alike (even sampler)
            continue
        x, y = _to(x, env.dev, cfg.channels_last), y.to(env.dev, non_blocking=True)  # [B, C, S, S], [B]
        with autocast(cfg.amp, env.dev):
            loss, logits = _loss(model(x), y, feed.crit)
        # a non-finite loss on any rank stops every rank
        check = loss.detach().reshape(1).double()  # [1]
        if env.distributed:
            torch.distributed.all_reduce(check)
        if not torch.isfinite(check).all():
            raise HpcganError(f"training loss is {float(check.sum()):g} at epoch {epoch}, step {step} (rank "
                              f"{env.rank}): training diverged; lower lr (now {cfg.lr}) or check the data")
        net.opt.zero_grad(set_to_none=True)
        net.scaler.scale(loss).backward()  # without fp16 the scaler is off: plain backward and step
        net.scaler.step(net.opt)
        net.scaler.update()
        n = y.shape[0]
        sums += torch.tensor([float(loss.detach()) * n, float((logits.argmax(1) == y).sum()), n], dtype=torch.float64)
    bar.close()
    return sums


def _save_epoch(cfg: ClassifyConfig, out: Path, net: _Net, standing: _Standing, epoch: int,
                records: list[dict]) -> None:
    """Rank 0 after an epoch: the resume point ``last.pt``, ``metrics.jsonl``, a log line."""
    _save({"model": net.core.state_dict(), "optimizer": net.opt.state_dict(), "scaler": net.scaler.state_dict(),
           "epoch": epoch, "best_epoch": standing.best_epoch, "best_val_score": standing.best_score,
           "config": to_dict(cfg)}, out / "last.pt")
    _write_records(out / "metrics.jsonl", records)
    rec = records[-1]
    _log(f"epoch {epoch}/{cfg.epochs}: train loss {rec['train_loss']:.4f} acc {rec['train_acc']:.4f}, "
         f"val loss {rec['val_loss']:.4f} acc {rec['val_acc']:.4f} balanced {rec['val_balanced_acc']:.4f} "
         f"({rec['sec']:.1f} s)")


def _test(cfg: ClassifyConfig, env: _Env, net: _Net, standing: _Standing) -> tuple[dict, np.ndarray, np.ndarray]:
    """The best epoch's model on the test split: (result, probs (N, K), labels (N,))."""
    net.core.load_state_dict(standing.best_state)
    test_loader = DataLoader(env.sets["test"], batch_size=env.per_rank, shuffle=False, num_workers=cfg.workers)
    _, _, probs, labels = _evaluate(net.core, test_loader, env.dev, cfg.amp, cfg.channels_last)
    result = classification_metrics(labels, probs, env.names, cfg.positive_class)
    result.update(best_epoch=standing.best_epoch, select=cfg.select, best_val_score=standing.best_score,
                  balance=cfg.balance, train_mix=env.sets["train_mix"], model=cfg.model, aug=cfg.aug, seed=cfg.seed,
                  pretrained_weights=net.info["pretrained_weights"], image_size=env.size,
                  aux_logits=net.info["aux_logits"], world_size=env.world)
    return result, probs, labels


def _write_results(out: Path, result: dict, probs: np.ndarray, labels: np.ndarray, names: list[str],
                   records: list[dict]) -> None:
    """Rank 0 at the end: ``curves.png``, ``roc.png``, ``test_metrics.json`` and the test line of the log."""
    _plot_curves(records, out / "curves.png")
    _plot_roc(probs, labels, names, result, out / "roc.png")
    with atomic_open(out / TEST_METRICS) as fh:
        json.dump(result, fh, indent=1)
    _log(f"test: accuracy {result['accuracy']:.4f}, balanced {result['balanced_accuracy']:.4f}, "
         f"TPR {result['tpr']:.4f}, TNR {result['tnr']:.4f} "
         f"(best epoch {result['best_epoch']}); wrote {out / TEST_METRICS}")


HEADLINE = ("accuracy", "balanced_accuracy", "tpr", "tnr", "fpr", "roc_auc", "n_test", "best_epoch")


def classify_and_summarise(cfg: ClassifyConfig) -> dict:
    """``run_classify(cfg)`` and, on rank 0, its headline numbers; returns {"outdir", *HEADLINE}."""
    res = run_classify(cfg)
    if dist.is_rank0():
        auc = res["roc_auc"] if res["roc_auc"] is None else round(res["roc_auc"], 4)
        print(f"{cfg.outdir}: accuracy {res['accuracy']:.4f}, balanced accuracy {res['balanced_accuracy']:.4f}, "
              f"TPR {res['tpr']:.4f}, TNR {res['tnr']:.4f}, FPR {res['fpr']:.4f}, AUC {auc} "
              f"(n_test {res['n_test']}, best epoch {res['best_epoch']})")
    return {"outdir": cfg.outdir, **{k: res.get(k) for k in HEADLINE}}


def classify_main(overrides: dict, config_file: str | None = None) -> int:
    """``hpcgan classify``: load the config (YAML + flags), run, print the headline numbers."""
    classify_and_summarise(load_config(ClassifyConfig, config_file, overrides))
    return 0
