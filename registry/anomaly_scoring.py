"""Score one sensor file with a registered anomaly model: per-window score, alarm and explanation.

Everything comes from the model file's card (feature set and config, window, hop, sample rate,
channels, units, threshold, normal profile, bearing geometry): the features are computed by the
same code that trained the model. The sensor checks run first: a record-level problem (wrong
sample rate, wrong channel count, dead channel) stops with a message; a window touching a NaN
burst, clipping, flat line or timestamp fault is listed as FLAGGED with its rule, never scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_checks.config import SensorDeclaration, SensorRules
from data_checks.errors import RegistryError
from data_checks.findings import Finding
from data_checks.sensor_checks import check_record
from data_checks.sensor_data import load_signal
from data_checks.sensor_gate import stop_message, too_damaged
from registry.anomaly_export import onnx_scores, read_anomaly_card, session
from training.anomaly.card import features_from_card
from training.anomaly.explain import explain_windows
from training.anomaly.features import extract_features, frame


@dataclass(frozen=True)
class WindowScore:
    index: int
    start: int  # first sample
    start_s: float
    score: float | None  # None: flagged, not scored
    alarm: bool
    flag: str = ""  # the broken rules of a flagged window
    explanation: str = ""


@dataclass
class ScoreReport:
    path: Path
    model: str
    threshold: float
    rpm: float
    rpm_source: str
    rows: list[WindowScore]
    findings: list[Finding] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "windows": len(self.rows),
            "alarms": sum(r.alarm for r in self.rows),
            "flagged": sum(bool(r.flag) for r in self.rows),
        }


def resolve_model(ref: str, dst: Path) -> Path:
    """An .onnx path as is; NAME@alias or NAME/version from the MLflow registry (downloaded to `dst`)."""
    import mlflow

    if ref.endswith(".onnx"):
        if not Path(ref).is_file():
            raise RegistryError(f"model file {ref} does not exist")
        return Path(ref)
    if "@" not in ref and "/" not in ref:
        raise RegistryError(
            f"--model {ref!r}: expected NAME@alias (e.g. bearing-anomaly@champion), NAME/VERSION or a .onnx file"
        )
    try:
        folder = Path(mlflow.artifacts.download_artifacts(f"models:/{ref}", dst_path=str(dst)))
    except Exception as err:  # MlflowException: unknown name, alias or version
        raise RegistryError(
            f"no registered model {ref!r} in {mlflow.get_tracking_uri()}: {str(err).splitlines()[0]}. "
            "Train one with `shopfloor train anomaly`, or see `shopfloor registry list NAME`"
        ) from None
    found = sorted(folder.rglob("*.onnx"))
    if not found:
        raise RegistryError(f"{ref} has no ONNX file; was it registered by `shopfloor train anomaly`?")
    return found[0]


def _explanations(
    card: dict, windows: np.ndarray, features: np.ndarray, fs: float, rpm: float, feature_cfg
) -> list[str]:
    profile, explain = card["normal_profile"], card["explain"]
    found = explain_windows(
        windows, features, np.asarray(profile["mean"]), np.asarray(profile["spread"]), card["feature_set"]["names"],
        fs, rpm, tuple(card["input"]["channels"]), feature_cfg, explain["top_features"], explain["min_peak_ratio"],
    )  # fmt: skip
    return [e.text() for e in found]


def score_file(path: Path, model_file: Path, rules: SensorRules, rpm: float | None = None,
               fs: float | None = None, hop: int | None = None, model_ref: str = "") -> ScoreReport:  # fmt: skip
    """Check, featurise and score `path` with the ONNX model at `model_file`; see the module docstring."""
    card = read_anomaly_card(model_file)
    feature_cfg, spec = features_from_card(card), card["input"]
    declared = SensorDeclaration(
        sample_rate=fs, channels=tuple(spec["channels"]), units=spec["units"], rpm=rpm
    )
    checked = check_record(load_signal(path, declared), rules, spec["sample_rate"], len(spec["channels"]))
    damaged = too_damaged(checked, rules)
    if damaged is not None or not checked.usable:
        problems = checked.record_errors() + ([damaged] if damaged else [])
        raise stop_message(f"{path} cannot be scored", problems)
    record = checked.record
    speed, source = (record.rpm, "declared") if record.rpm else (spec["nominal_rpm"], "the model's training speed (the file declares none)")  # fmt: skip
    windows = frame(record.samples, spec["window"], hop or spec["hop"])
    flags = checked.window_flags(windows.starts, spec["window"])
    clean = np.flatnonzero([not f for f in flags])
    features = extract_features(windows.data[clean], record.fs, speed, feature_cfg)  # (clean W, F)
    scores = onnx_scores(session(model_file), features)
    threshold = card["decision"]["threshold"]
    alarmed = np.flatnonzero(scores > threshold)
    texts = dict(zip(clean[alarmed].tolist(), _explanations(card, windows.data[clean[alarmed]], features[alarmed], record.fs, speed, feature_cfg), strict=True))  # fmt: skip
    score_of = dict(zip(clean.tolist(), scores.tolist(), strict=True))
    rows = [
        WindowScore(
            i, int(start), float(start / record.fs), score_of.get(i), i in texts, flags[i], texts.get(i, "")
        )
        for i, start in enumerate(windows.starts)
    ]
    return ScoreReport(
        Path(path), model_ref or str(model_file), threshold, speed, source, rows, checked.findings
    )
