"""The paired comparison against scipy on known inputs, and its verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hpcgan.experiment.report import mean_roc, paired_comparison


def test_paired_t_matches_scipy_and_hand_formula():
    a = [0.91, 0.88, 0.93, 0.90]
    b = [0.86, 0.87, 0.88, 0.84]
    c = paired_comparison(a, b)
    ref = stats.ttest_rel(a, b)
    assert c["t"] == pytest.approx(ref.statistic) and c["p"] == pytest.approx(ref.pvalue)
    d = np.subtract(a, b)
    assert c["t"] == pytest.approx(d.mean() / (d.std(ddof=1) / np.sqrt(len(d))))
    assert c["mean_diff"] == pytest.approx(d.mean())
    assert d.min() <= c["ci_low"] <= d.mean() <= c["ci_high"] <= d.max()
    assert c["n"] == 4 and c["significant"] == (ref.pvalue < 0.05)
    assert c["significant"] and "higher" in c["verdict"] and "significant at alpha=0.05" in c["verdict"]


def test_bootstrap_ci_against_an_independent_resampling():
    rng = np.random.default_rng(3)
    a = rng.normal(0.8, 0.05, 12)
    b = a - rng.normal(0.01, 0.03, 12)
    c = paired_comparison(a, b, n_boot=20000)
    d = a - b
    idx = np.random.default_rng(99).integers(0, len(d), (20000, len(d)))
    means = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    assert c["ci_low"] == pytest.approx(lo, abs=0.004) and c["ci_high"] == pytest.approx(hi, abs=0.004)


def test_noise_verdict_and_degenerate_cases():
    c = paired_comparison([0.90, 0.85, 0.88, 0.86], [0.88, 0.87, 0.86, 0.87])
    assert not c["significant"] and c["p"] > 0.05
    assert c["verdict"].startswith("not distinguishable from noise at alpha=0.05 with 4 runs")
    one = paired_comparison([0.9], [0.8])
    assert one["t"] is None and one["ci_low"] is None and "at least 2" in one["verdict"]
    same = paired_comparison([0.9, 0.8], [0.8, 0.7])  # equal differences: t undefined
    assert same["p"] is None and same["ci_low"] == pytest.approx(0.1) and "equal" in same["verdict"]
    with pytest.raises(ValueError):
        paired_comparison([1, 2], [1])


def test_mean_roc_vertical_average():
    grid = np.linspace(0, 1, 5)
    r1 = {"fpr": [0, 0, 1], "tpr": [0, 1, 1]}          # perfect
    r2 = {"fpr": [0, 1], "tpr": [0, 1]}                # chance
    m = mean_roc([r1, r2], grid)
    assert m == pytest.approx((np.interp(grid, [0, 0, 1], [0, 1, 1]) + grid) / 2)
    assert mean_roc([None, {}], grid) is None
