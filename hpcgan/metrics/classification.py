"""Classification metrics: confusion matrix, rates, precision, F1, ROC curve and AUC.

Notation for one "positive" class (binary task, or one class against the rest):
TP, FN, FP, TN counted from the confusion matrix ``C`` (rows = true class,
columns = predicted class), with ``p`` the positive class:

    TP = C[p, p]        FN = sum_j C[p, j] - TP
    FP = sum_i C[i, p] - TP        TN = sum C - TP - FN - FP

    accuracy  = trace(C) / sum(C)
    balanced accuracy = mean over the classes with images of C[c, c] / sum_j C[c, j]
                (the mean recall; equals accuracy on a set with equal class counts)
    TPR (sensitivity, recall) = TP / (TP + FN)      FNR = FN / (TP + FN) = 1 - TPR
    TNR (specificity)         = TN / (TN + FP)      FPR = FP / (TN + FP) = 1 - TNR
    precision = TP / (TP + FP)
    F1        = 2 * precision * TPR / (precision + TPR)

A ratio whose denominator is 0 is reported as 0.0 (as scikit-learn's
``zero_division=0``).

ROC: for scores s_i (the positive class's probability) and labels y_i in {0, 1},
every distinct score t, taken from the highest down, is a threshold "predict
positive when s >= t"; the curve runs from (FPR, TPR) = (0, 0) through the
point of each threshold to (1, 1). AUC is its trapezoidal area,
``AUC = sum_k (FPR_k - FPR_{k-1}) * (TPR_k + TPR_{k-1}) / 2``, which equals the
Mann-Whitney statistic U / (n1 * n0): the probability that a random positive
scores above a random negative (ties count one half). AUC is None when the
labels hold only one class.

More than two classes: each class c in turn is the positive one (one-vs-rest,
score = probability of c); per-class precision, recall (= TPR), F1 and support
(the number of true c); macro values are the unweighted means over classes.
"""

from __future__ import annotations

import numpy as np


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """C (num_classes, num_classes) int64, C[i, j] = number of images of true class i predicted j."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def rates(cm: np.ndarray, positive: int) -> dict:
    """TP, FN, FP, TN and TPR, TNR, FPR, FNR, precision, F1 for class ``positive`` against the rest."""
    cm = np.asarray(cm)
    tp = int(cm[positive, positive])
    fn = int(cm[positive].sum()) - tp
    fp = int(cm[:, positive].sum()) - tp
    tn = int(cm.sum()) - tp - fn - fp
    tpr, tnr = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    precision = _ratio(tp, tp + fp)
    return {"tp": tp, "fn": fn, "fp": fp, "tn": tn, "tpr": tpr, "tnr": tnr, "fpr": _ratio(fp, fp + tn),
            "fnr": _ratio(fn, fn + tp), "precision": precision, "f1": _ratio(2 * precision * tpr, precision + tpr)}


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean per-class recall over the classes that have images (rows of ``cm`` with a non-zero sum)."""
    cm = np.asarray(cm)
    support = cm.sum(axis=1)
    seen = support > 0
    return float(np.mean(np.diag(cm)[seen] / support[seen])) if seen.any() else 0.0


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) of binary ``labels`` (1 = positive) scored by ``scores`` (higher = more positive).

    ``thresholds[k]`` is the k-th distinct score from the top (``thresholds[0] = inf`` for the (0, 0) point).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.zeros(0, np.int64)
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.zeros(len(last) + 1)
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.zeros(len(last) + 1)
    return fpr, tpr, np.r_[np.inf, s[last]]


def roc_auc(scores, labels) -> float | None:
    """Area under the ROC curve (trapezoidal); None when ``labels`` hold one class only."""
    y = np.asarray(labels).astype(bool)
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def classification_metrics(labels, probs, class_names: list[str], positive_class: str | None = None) -> dict:
    """Every test metric from true ``labels`` (N,) and class probabilities ``probs`` (N, K).

    Predictions are ``argmax(probs)``. Two classes: accuracy and the rates of
    ``positive_class`` (default the first class). K > 2: tpr/tnr/fpr/fnr/precision/f1
    and roc_auc are macro means over the one-vs-rest tasks. ``roc``, ``scores`` and
    ``labels`` are those of the positive class against the rest in both cases.
    """
    labels = np.asarray(labels, dtype=np.int64)  # [N]
    probs = np.asarray(probs, dtype=np.float64)  # [N, K]
    k = len(class_names)
    if probs.shape != (len(labels), k):
        raise ValueError(f"probs has shape {probs.shape}, expected ({len(labels)}, {k})")
    pos_name = positive_class if positive_class is not None else class_names[0]
    if pos_name not in class_names:
        raise ValueError(f"positive class {pos_name!r} is not one of {class_names}")
    pos = class_names.index(pos_name)
    cm = confusion_matrix(labels, probs.argmax(axis=1), k)  # [K, K]
    # one-vs-rest rates and AUC per class, and their macro means
    per_class, ovr = {}, []
    for c, name in enumerate(class_names):
        r = rates(cm, c)
        auc = roc_auc(probs[:, c], labels == c)
        ovr.append({**r, "roc_auc": auc})
        per_class[name] = {"precision": r["precision"], "recall": r["tpr"], "f1": r["f1"], "support": r["tp"] + r["fn"],
                           "roc_auc": auc}
    aucs = [o["roc_auc"] for o in ovr if o["roc_auc"] is not None]
    macro = {key: float(np.mean([o[key] for o in ovr])) for key in ("precision", "tpr", "f1")}
    macro = {"precision": macro["precision"], "recall": macro["tpr"], "f1": macro["f1"],
             "roc_auc": float(np.mean(aucs)) if len(aucs) == k else None}
    # the headline rates: the positive class's (two classes) or the macro means (K > 2)
    if k == 2:
        head = {key: ovr[pos][key] for key in ("tpr", "tnr", "fpr", "fnr", "precision", "f1", "roc_auc")}
    else:
        head = {key: float(np.mean([o[key] for o in ovr])) for key in ("tpr", "tnr", "fpr", "fnr", "precision", "f1")}
        head["roc_auc"] = macro["roc_auc"]
    fpr, tpr, _ = roc_curve(probs[:, pos], labels == pos)
    return {
        "accuracy": _ratio(np.trace(cm), cm.sum()),
        "balanced_accuracy": balanced_accuracy(cm),
        **head,
        "confusion": cm.tolist(),
        "class_names": list(class_names),
        "positive_class": pos_name,
        "n_test": int(len(labels)),
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
        "scores": probs[:, pos].tolist(),
        "labels": labels.tolist(),
        "per_class": per_class,
        "macro": macro,
    }
