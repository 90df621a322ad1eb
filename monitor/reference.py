"""A reference per registered version: what the shipped file sees on held-out data, and what
drift-free windows of a device's size look like against it.

Built at registration by running the exported file itself (never its PyTorch parent) through the
same code a device runs (device.images / inputs.vibration), on data the model did not train on:
the validation images, or the normal calibration windows. Besides the items' statistics it holds
the *floors*: for each drift test, the effect that drift-free windows (drawn from the held-out
items) exceed only 1 % of the time, so a window is drift only when it is both significant and
larger than what chance gives at that size. Logged with the version (monitoring/reference.json).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.telemetry import IMAGE_STATS, image_stats
from monitor.statistics import AccuracyEstimator, chi2_test, effect_floor, ks_test, median_bandwidth, mmd_test

MMD_REFERENCE = 128  # embeddings the window is compared with: keeps a cycle over 100 devices fast
NULL_WINDOWS = 200  # drift-free windows drawn to set each floor


@dataclass(frozen=True)
class ImageItems:
    """Per held-out image: probabilities (N, C), embeddings (N, E) or None, image stats, labels, and the
    physical part each view shows (views of one part never sit on both sides of a calibration)."""

    proba: np.ndarray
    embeddings: np.ndarray | None
    stats: dict[str, np.ndarray]
    labels: np.ndarray
    groups: np.ndarray | None = None


def score_images(
    model_path, paths: list[str], labels: np.ndarray, groups=None, batch: int = 32
) -> ImageItems:
    """Run the shipped file on images as a device does (device.images.ImageModel, core.telemetry)."""
    from device.images import ImageModel
    from inputs.images import channels_first, luminance

    model = ImageModel(model_path)
    proba, embeddings, stats = [], [], {name: [] for name in IMAGE_STATS}
    for start in range(0, len(paths), batch):
        pixels = np.stack([model.pixels(p) for p in paths[start : start + batch]])
        p, e = model.run(channels_first(pixels))
        proba.append(p)
        embeddings.append(e)
        for image in pixels:
            for name, value in image_stats(luminance(image)).items():
                stats[name].append(value)
    has_embedding = embeddings and embeddings[0] is not None
    return ImageItems(np.concatenate(proba), np.concatenate(embeddings) if has_embedding else None,
                      {k: np.asarray(v) for k, v in stats.items()}, np.asarray(labels),
                      None if groups is None else np.asarray(groups))  # fmt: skip


def _folds(items: int, groups: np.ndarray | None, k: int, rng) -> list[np.ndarray]:
    """`k` disjoint folds of `items` held-out items, by part when parts are known (views of a part stay
    together).
    Held-out items of one part only (a line with few parts: the ball screws' validation is one camera
    position) cannot be split by part: then by item, and the floors are a little optimistic."""
    known = groups is not None and len(np.unique(groups)) > 1
    groups = groups if known else np.arange(items)
    parts = rng.permutation(np.unique(groups))
    return [np.flatnonzero(np.isin(groups, fold)) for fold in np.array_split(parts, min(k, len(parts)))]


def _image_summary(items: ImageItems, index: np.ndarray, rng) -> dict:
    """The reference fields built from `index`: MMD comparison set, confidences, class shares, image stats."""
    mmd_set = rng.permutation(index)[:MMD_REFERENCE]
    embeddings = items.embeddings[mmd_set] if items.embeddings is not None else None
    share = np.bincount(items.proba[index].argmax(1), minlength=items.proba.shape[1]) / len(index)
    return {"embeddings": embeddings.tolist() if embeddings is not None else [],
            "bandwidth": median_bandwidth(embeddings) if embeddings is not None else 1.0,
            "top_probability": items.proba[index].max(1).tolist(), "class_share": share.tolist(),
            "image_stats": {k: v[index].tolist() for k, v in items.stats.items()}}  # fmt: skip


def calibrated_floors(null: list[dict[str, tuple[float, float]]], quantile: float = 0.99) -> dict[str, float]:
    """Per test, the `quantile` of its effect on drift-free windows; then all raised together until at
    most 1 - `quantile` of those windows exceed *any* floor (several tests must not add up their
    false alarms)."""
    floors = {test: effect_floor([n[test][0] for n in null], quantile) for test in null[0]}
    worst = [max(n[t][0] / max(floors[t], 1e-12) for t in floors) for n in null]
    scale = max(1.0, float(np.quantile(worst, quantile)))
    return {test: floor * scale for test, floor in floors.items()}


def image_tests(
    window: dict, reference: dict, permutations: int = 500, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """{test: (effect, p-value)} of one window (telemetry fields) against a reference."""
    out = {}
    if window.get("embeddings") and reference.get("embeddings"):
        result = mmd_test(np.asarray(window["embeddings"]), np.asarray(reference["embeddings"]),
                          reference["bandwidth"], permutations, seed)  # fmt: skip
        out["embedding_mmd"] = (result.statistic, result.p_value)
    if window.get("top_probability"):
        result = ks_test(np.asarray(window["top_probability"]), np.asarray(reference["top_probability"]))
        out["confidence_ks"] = (result.statistic, result.p_value)
    if window.get("class_counts") and sum(window["class_counts"]):
        result = chi2_test(np.asarray(window["class_counts"]), np.asarray(reference["class_share"]))
        out["class_mix_chi2"] = (result.statistic, result.p_value)
    for name in IMAGE_STATS:
        values = (window.get("image_stats") or {}).get(name)
        if values:
            result = ks_test(np.asarray(values), np.asarray(reference["image_stats"][name]))
            out[f"{name}_ks"] = (result.statistic, result.p_value)
    if window.get("scores") and reference.get("scores"):  # an image anomaly model's scores
        result = ks_test(np.asarray(window["scores"]), np.asarray(reference["scores"]))
        out["score_ks"] = (result.statistic, result.p_value)
    return out


def _null_window(items: ImageItems, index: np.ndarray) -> dict:
    proba = items.proba[index]
    return {"embeddings": items.embeddings[index].tolist() if items.embeddings is not None else [],
            "top_probability": proba.max(1).tolist(), "class_counts": np.bincount(proba.argmax(1), minlength=proba.shape[1]).tolist(),
            "image_stats": {k: v[index].tolist() for k, v in items.stats.items()}}  # fmt: skip


def image_reference(items: ImageItems, window_size: int = 64, seed: int = 0, folds: int = 5) -> dict:
    """The reference of an image classifier version: the held-out items' statistics, the MMD comparison
    set and bandwidth, the label-free accuracy estimator, and the floor of every test.

    The floors come from drift-free windows of *new parts*: the parts are split in `folds`; each
    null window is drawn from one fold and judged against a reference built from the others, as a
    device's windows (parts the reference never saw) are judged against the whole."""
    rng = np.random.default_rng(seed)
    correct = items.proba.argmax(1) == items.labels
    accuracy = AccuracyEstimator.fit(items.proba.max(1), correct)
    reference = {"kind": "image-classifier", "items": len(items.proba), "window_size": window_size,
                 "accuracy": {"threshold": accuracy.threshold, "validation_accuracy": accuracy.validation_accuracy}}  # fmt: skip
    reference |= _image_summary(items, np.arange(len(items.proba)), rng)
    parts = _folds(len(items.proba), items.groups, folds, rng)
    others = [
        _image_summary(items, np.concatenate([f for j, f in enumerate(parts) if j != k]), rng)
        for k in range(len(parts))
    ]
    null = []
    for i in range(NULL_WINDOWS):
        k = i % len(parts)
        null.append(
            image_tests(_null_window(items, rng.choice(parts[k], window_size)), others[k], 200, seed=i)
        )
    reference["floors"] = calibrated_floors(null)
    return reference


def score_anomaly_images(model_path, paths: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Scores and image statistics of files as a device computes them (device.image_anomaly)."""
    from device.image_anomaly import AnomalyImageModel
    from inputs.images import channels_first, luminance

    model = AnomalyImageModel(model_path)
    scores, stats = [], {name: [] for name in IMAGE_STATS}
    for path in paths:
        pixels = model.pixels(path)
        scores.append(float(model.run(channels_first(pixels[None]))[0][0]))
        for name, value in image_stats(luminance(pixels)).items():
            stats[name].append(value)
    return np.asarray(scores), {k: np.asarray(v) for k, v in stats.items()}


def _anomaly_window(scores: np.ndarray, stats: dict[str, np.ndarray], index: np.ndarray) -> dict:
    return {"scores": scores[index].tolist(), "image_stats": {k: v[index].tolist() for k, v in stats.items()}}


def image_anomaly_reference(scores: np.ndarray, stats: dict[str, np.ndarray], groups: np.ndarray, threshold: float,
                            window_size: int = 64, seed: int = 0, folds: int = 5) -> dict:  # fmt: skip
    """The reference of an image anomaly version: held-out images' scores and statistics (the tests are
    the classifier's image-statistic tests and a KS test on the scores), floors from drift-free windows
    of parts the rest of the reference never saw, as for the classifier."""
    rng = np.random.default_rng(seed)
    everything = np.arange(len(scores))
    reference = {"kind": "image-anomaly", "items": len(scores), "window_size": window_size, "threshold": threshold,
                 "alarm_rate": float(np.mean(scores > threshold))} | _anomaly_window(scores, stats, everything)  # fmt: skip
    parts = _folds(len(scores), groups, folds, rng)
    others = [_anomaly_window(scores, stats, np.concatenate([f for j, f in enumerate(parts) if j != k]))
              for k in range(len(parts))]  # fmt: skip
    null = [image_tests(_anomaly_window(scores, stats, rng.choice(parts[i % len(parts)], window_size)),
                        others[i % len(parts)], seed=i) for i in range(NULL_WINDOWS)]  # fmt: skip
    reference["floors"] = calibrated_floors(null)
    return reference


def vibration_tests(window: dict, reference: dict) -> dict[str, tuple[float, float]]:
    """{test: (effect, p-value)}: KS per feature on the window's feature rows (`feature:<name>`, each
    with its own floor: some features are nearly discrete) and KS on its scores, against the
    reference's normal windows."""
    out = {}
    rows = np.asarray(window.get("features") or [])
    ref = np.asarray(reference["features"])
    if rows.ndim == 2 and len(rows) and rows.shape[1] == ref.shape[1]:
        for f, name in enumerate(reference["feature_names"]):
            result = ks_test(rows[:, f], ref[:, f])
            out[f"feature:{name}"] = (result.statistic, result.p_value)
    if window.get("scores"):
        result = ks_test(np.asarray(window["scores"]), np.asarray(reference["scores"]))
        out["score_ks"] = (result.statistic, result.p_value)
    return out


def _vibration_summary(
    features: np.ndarray, scores: np.ndarray, rows: np.ndarray, scored: np.ndarray
) -> dict:
    return {"features": np.round(features[rows][:: max(1, len(rows) // 512)], 5).tolist(),
            "scores": np.round(scores[scored], 6).tolist()}  # fmt: skip


def vibration_reference(features: np.ndarray, scores: np.ndarray, names: list[str], threshold: float,
                        window_size: int = 64, rows_per_window: int = 32, seed: int = 0, folds: int = 5) -> dict:  # fmt: skip
    """The reference of a vibration version from normal windows in time order: feature rows (the
    file's inputs; the training windows may be among them, they are inputs, not outcomes) and the
    scores of held-out normal windows (the calibration slice), with the floors of every test.

    Null windows come from one stretch of time and are judged against the other stretches:
    overlapping windows of one stretch are near-copies and must not sit on both sides, and a
    normal machine's own slow changes (its band energies wander over seconds) belong in the floors."""
    rng = np.random.default_rng(seed)
    rows, scored = np.arange(len(features)), np.arange(len(scores))
    reference = {"kind": "vibration-anomaly", "items": len(features), "window_size": window_size,
                 "feature_names": names, "threshold": threshold, "alarm_rate": float(np.mean(scores > threshold)),
                 "feature_mean": features.mean(0).tolist(), "feature_spread": np.maximum(features.std(0), 1e-9).tolist()}  # fmt: skip
    reference |= _vibration_summary(features, scores, rows, scored)
    row_parts, score_parts = np.array_split(rows, folds), np.array_split(scored, folds)
    others = [_vibration_summary(features, scores, np.concatenate([s for j, s in enumerate(row_parts) if j != k]),
                                 np.concatenate([s for j, s in enumerate(score_parts) if j != k]))
              | {"feature_names": names} for k in range(folds)]  # fmt: skip
    null = []
    for i in range(NULL_WINDOWS):
        k = i % folds
        window = {"features": features[rng.choice(row_parts[k], rows_per_window)].tolist(),
                  "scores": scores[rng.choice(score_parts[k], window_size)].tolist()}  # fmt: skip
        null.append(vibration_tests(window, others[k]))
    reference["floors"] = calibrated_floors(null)
    return reference
