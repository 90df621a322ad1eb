"""Each drift statistic against a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from monitor.statistics import (
    AccuracyEstimator,
    benjamini_hochberg,
    chi2_test,
    effect_floor,
    ks_test,
    median_bandwidth,
    mmd_test,
    persistent,
    rbf_kernel,
)


def test_mmd_matches_its_definition_on_a_small_case():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(7, 3)) + 0.5
    h = 1.3
    k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * h * h))  # noqa: E731
    expected = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()  # biased MMD^2
    assert mmd_test(x, y, h, permutations=50).statistic == pytest.approx(expected, rel=1e-10)
    assert np.allclose(rbf_kernel(np.eye(2), 1.0), [[1, np.exp(-1)], [np.exp(-1), 1]])


def test_mmd_p_value_is_k_plus_one_over_b_plus_one():
    rng = np.random.default_rng(1)
    far = mmd_test(rng.normal(size=(30, 2)) + 10, rng.normal(size=(30, 2)), 1.0, permutations=99)
    assert far.p_value == pytest.approx(1 / 100)  # no permutation reaches it: p = (0 + 1) / (99 + 1)


def test_identical_samples_are_not_drift_and_false_alarms_stay_at_alpha():
    """Evidently's bootstrap MMD flagged identical samples in 20 of 20 runs (STACK_NOTES)."""
    rng = np.random.default_rng(2)
    same = rng.normal(size=(64, 8))
    assert mmd_test(same, same.copy(), median_bandwidth(same), permutations=200).p_value > 0.5
    p = [
        mmd_test(rng.normal(size=(64, 8)), rng.normal(size=(64, 8)), 4.0, 100, seed=i).p_value
        for i in range(200)
    ]
    assert 0.01 <= np.mean(np.array(p) <= 0.05) <= 0.10  # the permutation test holds its level


def test_mmd_sees_a_shift_of_half_a_standard_deviation():
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(128, 8))
    shifted = rng.normal(size=(64, 8)) + 0.5
    assert mmd_test(shifted, reference, median_bandwidth(reference)).p_value < 0.01


def test_ks_and_chi_square_give_the_textbook_numbers():
    assert ks_test(np.array([0.0, 0.1, 0.2]), np.array([5.0, 6.0, 7.0])).statistic == 1.0
    result = chi2_test(np.array([10, 20]), np.array([0.5, 0.5]), smoothing=0.0)
    assert result.p_value == pytest.approx(stats.chi2.sf(10 / 3, 1)) == pytest.approx(0.0679, abs=1e-4)
    assert result.statistic == pytest.approx(np.sqrt((10 / 3) / 30))  # Cramer's V
    assert chi2_test(np.array([15, 15]), np.array([0.5, 0.5]), smoothing=0.0).p_value == pytest.approx(1.0)


def test_benjamini_hochberg_q_values():
    q = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.20]))
    assert np.allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.20])


def test_effect_floor_persistence_and_label_free_accuracy():
    assert effect_floor(np.arange(101.0), 0.99) == pytest.approx(99.0)
    assert not persistent([True, False, False, True]) and persistent([False, True, True, True])
    estimator = AccuracyEstimator.fit(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 1, 0, 0]))
    assert estimator.validation_accuracy == 0.5 and estimator.threshold == pytest.approx(
        0.75
    )  # the median: half above it
    assert estimator.estimate(np.array([0.9, 0.8, 0.7, 0.6])) == 0.5
    assert estimator.estimate(np.full(10, 0.5)) == 0.0
