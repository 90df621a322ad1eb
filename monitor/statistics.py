"""The statistics behind drift alarms, written with numpy/scipy and each tested against a known answer.

Why not a drift library: checked against this stack, none fits (STACK_NOTES: Evidently fails to
import with pandas 3 and its bootstrap MMD flags identical samples as drifted; alibi-detect is
BSL-licensed and needs numpy < 2; NannyML and whylogs are unmaintained or break on numpy 2).

A window of what a device saw is compared with the version's reference by two-sample tests:
  kernel MMD on embeddings (permutation p-value p = (k + 1) / (B + 1)), Kolmogorov-Smirnov on
  confidence, chi-square on the class mix, and per-feature KS for vibration features.
At a fleet's scale "significant" is not enough: every test also has an effect size, and a window
counts only when its effect exceeds a floor calibrated on reference windows (what drift-free
windows of the same size show). p-values are corrected across devices with Benjamini-Hochberg,
and a persistence rule (k of the last n windows) keeps one odd window from raising an alarm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def median_bandwidth(x: np.ndarray, max_points: int = 512, seed: int = 0) -> float:
    """The median pairwise distance of `x` (N, D): the usual RBF bandwidth, fixed per reference."""
    rng = np.random.default_rng(seed)
    sample = x[rng.permutation(len(x))[:max_points]]
    d2 = ((sample[:, None, :] - sample[None, :, :]) ** 2).sum(-1)
    d = np.sqrt(d2[np.triu_indices(len(sample), 1)])
    return float(np.median(d[d > 0])) if np.any(d > 0) else 1.0


def rbf_kernel(z: np.ndarray, bandwidth: float) -> np.ndarray:
    """exp(-|a - b|^2 / (2 h^2)) over all pairs of rows of z (N, D) -> (N, N)."""
    sq = (z * z).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    return np.exp(-d2 / (2 * bandwidth**2))


def _mmd2_many(kernel: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Biased MMD^2 for each row of `signs` (B, N): +1/n for the window's points, -1/m for the reference's."""
    return np.einsum("bi,ij,bj->b", signs, kernel, signs)


@dataclass(frozen=True)
class TestResult:
    statistic: float  # the effect size the floor is compared with
    p_value: float


def mmd_test(window: np.ndarray, reference: np.ndarray, bandwidth: float, permutations: int = 500,
             seed: int = 0) -> TestResult:  # fmt: skip
    """Kernel two-sample test: MMD^2 of `window` (n, D) against `reference` (m, D); the p-value
    counts how many of `permutations` relabellings of the pooled points reach the observed MMD^2,
    p = (k + 1) / (B + 1) (never 0: B permutations cannot show less)."""
    n, m = len(window), len(reference)
    kernel = rbf_kernel(np.concatenate([window, reference]).astype(np.float64), bandwidth)
    labels = np.r_[np.ones(n, bool), np.zeros(m, bool)]
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(labels) for _ in range(permutations)])  # (B, N)
    signs = np.where(np.vstack([labels, shuffled]), 1.0 / n, -1.0 / m)
    values = _mmd2_many(kernel, signs)
    observed, null = values[0], values[1:]
    k = int((null >= observed).sum())
    return TestResult(float(observed), (k + 1) / (permutations + 1))


def ks_test(window: np.ndarray, reference: np.ndarray) -> TestResult:
    """Kolmogorov-Smirnov: D (the largest gap between the two empirical CDFs) and its p-value."""
    result = stats.ks_2samp(window, reference)
    return TestResult(float(result.statistic), float(result.pvalue))


def chi2_test(window_counts: np.ndarray, reference_share: np.ndarray, smoothing: float = 0.5) -> TestResult:
    """Chi-square goodness of fit of the window's class counts to the reference's class shares; the
    effect size is Cramer's V (sqrt(chi2 / n)), comparable across window sizes."""
    counts = np.asarray(window_counts, dtype=np.float64)
    n = counts.sum()
    share = np.asarray(reference_share, dtype=np.float64) + smoothing / max(n, 1)
    expected = n * share / share.sum()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    p = float(stats.chi2.sf(chi2, df=max(len(counts) - 1, 1)))
    return TestResult(float(np.sqrt(chi2 / max(n, 1))), p)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """q-values: BH-adjusted p-values across the devices (and tests) of one monitoring cycle."""
    p = np.asarray(p_values, dtype=np.float64)
    return stats.false_discovery_control(p, method="bh") if len(p) else p


def effect_floor(null_statistics: np.ndarray, quantile: float = 0.99) -> float:
    """The effect a drift-free window of the same size exceeds with probability 1 - quantile."""
    return float(np.quantile(np.asarray(null_statistics), quantile))


def persistent(flags: list[bool], k: int = 3, n: int = 4) -> bool:
    """True when at least `k` of the last `n` windows were flagged: one odd window is not an alarm."""
    return sum(flags[-n:]) >= k


@dataclass(frozen=True)
class AccuracyEstimator:
    """Average thresholded confidence (Garg et al. 2022): on validation data, find the confidence
    threshold above which the share of items equals the accuracy; on an unlabelled window, the share
    above it estimates the accuracy."""

    threshold: float
    validation_accuracy: float

    @classmethod
    def fit(cls, confidence: np.ndarray, correct: np.ndarray) -> AccuracyEstimator:
        accuracy = float(np.mean(correct))
        threshold = float(np.quantile(confidence, 1.0 - accuracy)) if 0 < accuracy < 1 else 0.0
        return cls(threshold, accuracy)

    def estimate(self, confidence: np.ndarray) -> float:
        return float(np.mean(np.asarray(confidence) > self.threshold))
