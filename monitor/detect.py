"""One monitoring cycle: every new telemetry window judged against its version's reference.

Per window, each two-sample test gives an effect and a p-value (monitor.reference); the window's
p-value is the smallest, Bonferroni-corrected over its tests. Across all windows of the cycle
(every device) the p-values are corrected with Benjamini-Hochberg. A window is *flagged* when its
q-value is at most `alpha` and one of its significant tests also exceeds that test's floor (what
drift-free windows of this size show 1 % of the time). A device is in *drift* when `k` of its last
`n` windows were flagged; one odd window only puts it on *watch*. The explanation names the cause
in a line engineer's words, and a label-free estimate of accuracy says whether it hurts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.card import IMAGE_KINDS
from core.telemetry import IMAGE_STATS
from monitor.reference import image_tests, vibration_tests
from monitor.statistics import AccuracyEstimator, benjamini_hochberg, persistent


@dataclass(frozen=True)
class Rules:
    alpha: float = 0.01  # false discovery rate across the devices of a cycle
    persist_k: int = 3  # drift when k of the last n windows were flagged
    persist_n: int = 4
    permutations: int = 500  # of the embedding MMD test


@dataclass
class Assessment:
    device: str
    model: str
    version: str
    window_id: str
    ended: str
    tests: dict[str, tuple[float, float]]  # test -> (effect, p-value)
    p_value: float
    q_value: float = 1.0
    flagged: bool = False
    causes: list[str] = field(default_factory=list)  # significant tests above their floors
    accuracy: float | None = None  # label-free estimate on this window
    explanation: str = ""


def assess(device: str, window, reference: dict, rules: Rules, seed: int = 0) -> Assessment:
    """The window's tests against the reference (before the cycle's correction)."""
    data = window.model_dump()
    tests = (image_tests(data, reference, rules.permutations, seed) if window.kind in IMAGE_KINDS
             else vibration_tests(data, reference))  # fmt: skip
    p = min(1.0, min((t[1] for t in tests.values()), default=1.0) * max(len(tests), 1))
    accuracy = None
    if window.kind == "image-classifier" and data.get("top_probability") and "accuracy" in reference:
        estimator = AccuracyEstimator(
            reference["accuracy"]["threshold"], reference["accuracy"]["validation_accuracy"]
        )
        accuracy = estimator.estimate(np.asarray(data["top_probability"]))
    return Assessment(
        device, window.model, window.version, window.window_id, window.ended, tests, p, accuracy=accuracy
    )


def _image_cause(window, reference: dict, causes: list[str]) -> str:
    data, parts = window.model_dump(), []
    stats = [name for name in IMAGE_STATS if f"{name}_ks" in causes]
    for name in stats[:2]:
        now, before = np.mean(data["image_stats"][name]), np.mean(reference["image_stats"][name])
        parts.append(f"{name} {100 * (now - before) / max(abs(before), 1e-9):+.0f} %")
    if "class_mix_chi2" in causes:
        parts.append("class mix changed")
    elif data.get("class_counts"):
        parts.append("class mix unchanged")
    if "embedding_mmd" in causes and not stats:
        parts.append("what the model sees changed (embeddings)")
    if "confidence_ks" in causes:
        parts.append("confidence changed")
    if "score_ks" in causes:
        alarms = window.alarms / max(window.items, 1)
        parts.append(
            f"anomaly scores changed; rejects {100 * alarms:.0f} % (held out {100 * reference['alarm_rate']:.1f} %)"
        )
    return "; ".join(parts)


def _vibration_cause(window, reference: dict, causes: list[str]) -> str:
    rows = np.asarray(window.features or [])
    if not rows.size:
        return "scores changed"
    z = (rows.mean(0) - np.asarray(reference["feature_mean"])) / np.asarray(reference["feature_spread"])
    moved = [
        reference["feature_names"].index(c.removeprefix("feature:"))
        for c in causes
        if c.startswith("feature:")
    ]
    worst = sorted(moved, key=lambda i: -abs(z[i]))[:2] or list(np.argsort(-np.abs(z))[:2])
    alarms = window.alarms / max(window.items, 1)
    moved = ", ".join(f"{reference['feature_names'][i]} {z[i]:+.1f} normal spreads" for i in worst)
    return f"{moved}; alarms {100 * alarms:.0f} % of windows (normal {100 * reference['alarm_rate']:.1f} %)"


def explain(assessment: Assessment, window, reference: dict, since: str) -> str:
    cause = (_image_cause(window, reference, assessment.causes) if window.kind in IMAGE_KINDS
             else _vibration_cause(window, reference, assessment.causes))  # fmt: skip
    text = f"{cause} on {assessment.device} since {since}"
    if assessment.accuracy is not None:
        text += f"; estimated accuracy {reference['accuracy']['validation_accuracy']:.2f} -> {assessment.accuracy:.2f}"
    return text


def correct(assessments: list[Assessment], references: dict, rules: Rules) -> None:
    """Benjamini-Hochberg across the cycle's windows, then the floors: which windows are flagged."""
    q = benjamini_hochberg(np.array([a.p_value for a in assessments]))
    for assessment, q_value in zip(assessments, q, strict=True):
        floors = references[(assessment.model, assessment.version)]["floors"]
        assessment.q_value = float(q_value)
        assessment.causes = [name for name, (effect, p) in assessment.tests.items()
                             if p * len(assessment.tests) <= rules.alpha and effect >= floors.get(name, np.inf)]  # fmt: skip
        assessment.flagged = bool(q_value <= rules.alpha) and bool(assessment.causes)


def device_state(flags: list[bool], rules: Rules) -> str:
    if persistent(flags, rules.persist_k, rules.persist_n):
        return "drift"
    return "watch" if flags and flags[-1] else "ok"
