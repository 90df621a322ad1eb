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
    """Per held-out image: probabilities (N, C), embeddings (N, E) or None, image stats, labels."""

    proba: np.ndarray
    embeddings: np.ndarray | None
    stats: dict[str, np.ndarray]
    labels: np.ndarray


def score_images(model_path, paths: list[str], labels: np.ndarray, batch: int = 32) -> ImageItems:
    """Run the shipped file on images as a device does (device.images.ImageModel, core.telemetry)."""
    from device.images import ImageModel
    from inputs.images import read_grey, resize_square

    model = ImageModel(model_path)
    proba, embeddings, stats = [], [], {name: [] for name in IMAGE_STATS}
    for start in range(0, len(paths), batch):
        grey = np.stack([resize_square(read_grey(p), model.size) for p in paths[start : start + batch]])
        p, e = model.run(grey[:, None].astype(np.float32))
        proba.append(p)
        embeddings.append(e)
        for image in grey:
            for name, value in image_stats(image).items():
                stats[name].append(value)
    has_embedding = embeddings and embeddings[0] is not None
    return ImageItems(np.concatenate(proba), np.concatenate(embeddings) if has_embedding else None,
                      {k: np.asarray(v) for k, v in stats.items()}, np.asarray(labels))  # fmt: skip


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
    return out


def _null_window(items: ImageItems, index: np.ndarray) -> dict:
    proba = items.proba[index]
    return {"embeddings": items.embeddings[index].tolist() if items.embeddings is not None else [],
            "top_probability": proba.max(1).tolist(), "class_counts": np.bincount(proba.argmax(1), minlength=proba.shape[1]).tolist(),
            "image_stats": {k: v[index].tolist() for k, v in items.stats.items()}}  # fmt: skip


def image_reference(items: ImageItems, window_size: int = 64, seed: int = 0) -> dict:
    """The reference of an image classifier version: the items' statistics, the MMD comparison set
    and bandwidth, the label-free accuracy estimator, and the floor of every test."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items.proba))
    compare = order[: min(MMD_REFERENCE, len(order) // 2)]  # what windows are compared with ...
    pool = order[len(compare) :]  # ... and where drift-free windows are drawn from: never the same items
    embeddings = items.embeddings[compare] if items.embeddings is not None else None
    share = np.bincount(items.proba.argmax(1), minlength=items.proba.shape[1]) / len(items.proba)
    correct = items.proba.argmax(1) == items.labels
    accuracy = AccuracyEstimator.fit(items.proba.max(1), correct)
    reference = {
        "kind": "image-classifier", "items": len(items.proba), "window_size": window_size,
        "embeddings": embeddings.tolist() if embeddings is not None else [],
        "bandwidth": median_bandwidth(embeddings) if embeddings is not None else 1.0,
        "top_probability": items.proba.max(1).tolist(), "class_share": share.tolist(),
        "image_stats": {k: v.tolist() for k, v in items.stats.items()},
        "accuracy": {"threshold": accuracy.threshold, "validation_accuracy": accuracy.validation_accuracy},
    }  # fmt: skip
    null = [image_tests(_null_window(items, rng.choice(pool, window_size)), reference, 200, seed=i)
            for i in range(NULL_WINDOWS)]  # fmt: skip
    reference["floors"] = {test: effect_floor([n[test][0] for n in null]) for test in null[0]}
    return reference


def vibration_tests(window: dict, reference: dict) -> dict[str, tuple[float, float]]:
    """{test: (effect, p-value)}: KS per feature (the largest D, Bonferroni over features) on the
    window's feature rows, and KS on its scores, against the reference's normal windows."""
    out = {}
    rows = np.asarray(window.get("features") or [])
    ref = np.asarray(reference["features"])
    if rows.ndim == 2 and len(rows) and rows.shape[1] == ref.shape[1]:
        results = [ks_test(rows[:, f], ref[:, f]) for f in range(ref.shape[1])]
        out["feature_ks"] = (
            max(r.statistic for r in results),
            min(1.0, min(r.p_value for r in results) * len(results)),
        )
    if window.get("scores"):
        result = ks_test(np.asarray(window["scores"]), np.asarray(reference["scores"]))
        out["score_ks"] = (result.statistic, result.p_value)
    return out


def vibration_reference(features: np.ndarray, scores: np.ndarray, names: list[str], threshold: float,
                        window_size: int = 64, rows_per_window: int = 32, seed: int = 0) -> dict:  # fmt: skip
    """The reference of a vibration version from held-out normal windows: their feature rows (the
    file's inputs) and scores, and the floors of both tests for drift-free windows of this size."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(features))
    compare, pool = order[: len(order) // 2], order[len(order) // 2 :]
    reference = {"kind": "vibration-anomaly", "items": len(features), "window_size": window_size,
                 "feature_names": names, "features": np.round(features[compare[:512]], 5).tolist(),
                 "scores": np.round(scores[compare], 6).tolist(), "threshold": threshold,
                 "feature_mean": features.mean(0).tolist(), "feature_spread": np.maximum(features.std(0), 1e-9).tolist(),
                 "alarm_rate": float(np.mean(scores > threshold))}  # fmt: skip
    null = []
    for _ in range(NULL_WINDOWS):
        index = rng.choice(pool, window_size)
        null.append(vibration_tests({"features": features[index[:rows_per_window]].tolist(),
                                     "scores": scores[index].tolist()}, reference))  # fmt: skip
    reference["floors"] = {test: effect_floor([n[test][0] for n in null]) for test in null[0]}
    return reference
