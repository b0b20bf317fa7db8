"""Study statistics against scipy and formulas written out here."""

import math

import numpy as np
import pytest
from scipy import stats

from neuroreg_tf.study import statistics


def test_summary_is_mean_and_sem_of_the_finite_values():
    summary = statistics.summarize([0.70, 0.74, None, 0.78, float("nan")])
    assert summary.n == 3
    assert summary.mean == pytest.approx(0.74)
    # SEM by hand: sqrt(sum (x - mean)^2 / (n - 1)) / sqrt(n)
    assert summary.sem == pytest.approx(math.sqrt((0.04**2 + 0 + 0.04**2) / 2) / math.sqrt(3))
    assert statistics.summarize([0.5]).sem is None
    assert statistics.summarize([None]).mean is None


def test_paired_comparison_matches_scipy_and_the_formula():
    rng = np.random.default_rng(0)
    reference = {seed: float(v) for seed, v in enumerate(rng.normal(0.7, 0.05, 6))}
    condition = {seed: value + 0.03 + float(rng.normal(0, 0.01)) for seed, value in reference.items()}
    condition[99] = 0.9  # a seed the reference lacks is left out
    result = statistics.compare_paired(condition, reference)
    a = np.array([condition[s] for s in range(6)])
    b = np.array([reference[s] for s in range(6)])
    expected = stats.ttest_rel(a, b)
    assert result.n == 6
    assert result.t == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p == pytest.approx(expected.pvalue, rel=1e-12)
    differences = a - b
    t_by_hand = differences.mean() / (differences.std(ddof=1) / math.sqrt(6))
    assert result.t == pytest.approx(t_by_hand, rel=1e-12)
    assert result.difference == pytest.approx(differences.mean())
    assert result.d_z == pytest.approx(differences.mean() / differences.std(ddof=1))


def test_paired_comparison_without_pairs_or_spread_reports_no_p_value():
    assert statistics.compare_paired({0: 0.5}, {1: 0.5}).n == 0
    single = statistics.compare_paired({0: 0.6}, {0: 0.5})
    assert single.n == 1 and single.difference == pytest.approx(0.1) and single.p is None
    constant = statistics.compare_paired({0: 0.6, 1: 0.7}, {0: 0.5, 1: 0.6})
    assert constant.p is None and constant.d_z is None and constant.difference == pytest.approx(0.1)
    assert statistics.compare_paired({0: None, 1: 0.7}, {0: 0.5, 1: 0.6}).n == 1


def test_holm_adjustment_by_hand():
    p = [0.01, None, 0.04, 0.03]
    # sorted: 0.01 (x3), 0.03 (x2), 0.04 (x1); running maximum; capped at 1
    assert statistics.holm(p) == [pytest.approx(0.03), None, pytest.approx(0.06), pytest.approx(0.06)]
    assert statistics.holm([0.6, 0.5]) == [pytest.approx(1.0), pytest.approx(1.0)]


def test_the_boundaries_of_summary_and_paired_comparison_by_hand():
    # Two values are enough for an SEM; no finite value gives n 0 and counts the others.
    two = statistics.summarize([0.5, 0.7])
    assert (two.n, two.n_nonfinite) == (2, 0)
    assert two.sem == pytest.approx(math.sqrt(((0.1**2) * 2) / 1) / math.sqrt(2))
    nothing = statistics.summarize([None, float("nan"), float("inf")])
    assert (nothing.mean, nothing.sem, nothing.n, nothing.n_nonfinite) == (None, None, 0, 2)
    # Two seeds with spread are enough for a paired test (scipy's, by hand below).
    pair = statistics.compare_paired({0: 0.6, 1: 0.75}, {0: 0.5, 1: 0.6})
    differences = np.array([0.1, 0.15])
    assert pair.n == 2
    assert pair.t == pytest.approx(differences.mean() / (differences.std(ddof=1) / math.sqrt(2)))
    assert pair.p == pytest.approx(stats.ttest_rel([0.6, 0.75], [0.5, 0.6]).pvalue)


def test_holm_never_exceeds_one_and_results_cannot_be_altered():
    # 2 x 0.7 = 1.4 and 1 x 0.8: both capped at 1.
    assert statistics.holm([0.7, 0.8]) == [pytest.approx(1.0), pytest.approx(1.0)]
    assert statistics.holm([0.3, 0.9]) == [pytest.approx(0.6), pytest.approx(0.9)]
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        statistics.summarize([0.5, 0.6]).mean = 0.9  # a reported number cannot be changed afterwards
    with pytest.raises(dataclasses.FrozenInstanceError):
        statistics.compare_paired({0: 0.6, 1: 0.7}, {0: 0.5, 1: 0.65}).p = 0.01
