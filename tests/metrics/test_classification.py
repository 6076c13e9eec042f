"""Classification metrics against independent computations (numpy counting, trapezoid, Mann-Whitney U)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from hpcgan.metrics.classification import (classification_metrics, confusion_matrix, rates, roc_auc, roc_curve)


def _random_case(seed: int, n: int, k: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]  # informative but imperfect
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs


def test_confusion_matrix_by_counting():
    labels, probs = _random_case(0, 57, 3)
    pred = probs.argmax(1)
    cm = confusion_matrix(labels, pred, 3)
    for i in range(3):
        for j in range(3):
            assert cm[i, j] == sum(1 for t, p in zip(labels, pred) if t == i and p == j)


def test_binary_rates_from_explicit_counts():
    labels, probs = _random_case(1, 80, 2)
    pred = probs.argmax(1)
    pos = 1
    tp = np.sum((pred == pos) & (labels == pos))
    tn = np.sum((pred != pos) & (labels != pos))
    fp = np.sum((pred == pos) & (labels != pos))
    fn = np.sum((pred != pos) & (labels == pos))
    r = rates(confusion_matrix(labels, pred, 2), pos)
    assert (r["tp"], r["tn"], r["fp"], r["fn"]) == (tp, tn, fp, fn)
    assert r["tpr"] == pytest.approx(tp / (tp + fn)) and r["fnr"] == pytest.approx(fn / (tp + fn))
    assert r["tnr"] == pytest.approx(tn / (tn + fp)) and r["fpr"] == pytest.approx(fp / (tn + fp))
    prec, rec = tp / (tp + fp), tp / (tp + fn)
    assert r["precision"] == pytest.approx(prec) and r["f1"] == pytest.approx(2 * prec * rec / (prec + rec))


def test_zero_denominators_are_zero():
    r = rates(np.array([[5, 0], [3, 0]]), 1)  # never predicts class 1, which is present
    assert r["precision"] == 0.0 and r["f1"] == 0.0 and r["tpr"] == 0.0


@pytest.mark.parametrize("ties", [False, True])
def test_auc_equals_mann_whitney_and_trapezoid(ties):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    if ties:
        s = np.round(s, 1)  # many tied scores
    u = mannwhitneyu(s[y == 1], s[y == 0]).statistic
    assert roc_auc(s, y) == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()), abs=1e-12)
    # the curve, recomputed by brute force at every distinct threshold
    thr = np.r_[np.inf, np.unique(s)[::-1]]
    tpr = np.array([np.mean(s[y == 1] >= t) for t in thr])
    fpr = np.array([np.mean(s[y == 0] >= t) for t in thr])
    f, t, _ = roc_curve(s, y)
    np.testing.assert_allclose(f, fpr)
    np.testing.assert_allclose(t, tpr)
    assert roc_auc(s, y) == pytest.approx(np.trapezoid(tpr, fpr))


def test_auc_undefined_for_one_class():
    assert roc_auc([0.1, 0.7], [1, 1]) is None


def test_binary_report_positive_class():
    labels, probs = _random_case(3, 60, 2)
    m = classification_metrics(labels, probs, ["COVID", "Normal"], positive_class="Normal")
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(np.mean(pred == labels))
    assert m["tpr"] == pytest.approx(np.mean(pred[labels == 1] == 1))
    assert m["tnr"] == pytest.approx(np.mean(pred[labels == 0] == 0))
    assert m["scores"] == pytest.approx(probs[:, 1].tolist())
    u = mannwhitneyu(probs[labels == 1, 1], probs[labels == 0, 1]).statistic
    assert m["roc_auc"] == pytest.approx(u / ((labels == 1).sum() * (labels == 0).sum()))
    d = classification_metrics(labels, probs, ["COVID", "Normal"])
    assert d["positive_class"] == "COVID" and d["tpr"] == pytest.approx(m["tnr"])


def test_four_class_macro_one_vs_rest():
    labels, probs = _random_case(4, 120, 4)
    names = ["COVID", "Normal", "Lung_Opacity", "Viral Pneumonia"]
    m = classification_metrics(labels, probs, names)
    pred = probs.argmax(1)
    recalls, precisions, tnrs, aucs = [], [], [], []
    for c in range(4):
        recalls.append(np.mean(pred[labels == c] == c))
        precisions.append(np.mean(labels[pred == c] == c))
        tnrs.append(np.mean(pred[labels != c] != c))
        u = mannwhitneyu(probs[labels == c, c], probs[labels != c, c]).statistic
        aucs.append(u / ((labels == c).sum() * (labels != c).sum()))
        assert m["per_class"][names[c]]["support"] == (labels == c).sum()
        assert m["per_class"][names[c]]["recall"] == pytest.approx(recalls[-1])
    assert m["tpr"] == pytest.approx(np.mean(recalls)) and m["macro"]["recall"] == pytest.approx(np.mean(recalls))
    assert m["precision"] == pytest.approx(np.mean(precisions))
    assert m["tnr"] == pytest.approx(np.mean(tnrs)) and m["fpr"] == pytest.approx(1 - np.mean(tnrs))
    assert m["roc_auc"] == pytest.approx(np.mean(aucs))
    f1 = [2 * p * r / (p + r) for p, r in zip(precisions, recalls)]
    assert m["f1"] == pytest.approx(np.mean(f1))
    assert m["accuracy"] == pytest.approx(np.mean(pred == labels))
