"""Score sensor files with a vibration model's ONNX file: per-window score, alarm and explanation.

Everything comes from the file's card (core.card: feature set and config, window, hop, sample
rate, channels, units, threshold, normal profile, bearing geometry), so the features are computed
by the same code that trained the model (inputs.vibration). Each file is screened first
(data_checks.vibration.rules, numpy only): a record-level problem (wrong sample rate, wrong
channel count, dead channel) stops that file with a message; a window touching a NaN burst,
clipping, flat line or timestamp fault is listed as FLAGGED with its rule, never scored.
Needs numpy and ONNX Runtime only: `shopfloor score anomaly` on the platform and `shopfloor edge
score` on a device run this same code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.card import VIBRATION_ANOMALY, read_card
from core.errors import ConfigError
from core.onnx_runtime import run_batched, session
from data_checks.findings import Finding
from data_checks.vibration.config import SensorRules
from data_checks.vibration.rules import screen_record, stop_message, too_damaged
from inputs.vibration.bearing import DEFECT_NAMES
from inputs.vibration.explain import Explanation, explain_windows
from inputs.vibration.features import FeatureConfig, extract_features, features_from_card, frame
from inputs.vibration.signals import SensorDeclaration, SensorRecord, load_signal


@dataclass(frozen=True)
class WindowScore:
    index: int
    start: int  # first sample
    start_s: float
    score: float | None  # None: flagged, not scored
    alarm: bool
    flag: str = ""  # the broken rules of a flagged window
    explanation: str = ""
    defect: str = ""  # BPFI | BPFO | BSF when an alarm's envelope matched a bearing defect order


@dataclass
class ScoreReport:
    path: Path
    model: str
    threshold: float
    rpm: float
    rpm_source: str
    rows: list[WindowScore]
    findings: list[Finding] = field(default_factory=list)
    features: np.ndarray | None = field(
        default=None, repr=False
    )  # (scored windows, F): what telemetry samples
    record: SensorRecord | None = field(default=None, repr=False)
    overlap: str = ""  # a warning when this data trained the model (flows.cli.vibration)

    def counts(self) -> dict[str, int]:
        return {
            "windows": len(self.rows),
            "alarms": sum(r.alarm for r in self.rows),
            "flagged": sum(bool(r.flag) for r in self.rows),
        }

    def top_explanation(self) -> str:
        """What the alarms say, in one line: the defect signature most alarms show, and the worst window's words."""
        alarmed = [r for r in self.rows if r.alarm]
        if not alarmed:
            return ""
        kinds = Counter(r.defect for r in alarmed)
        kind, count = kinds.most_common(1)[0]
        share = f"{count / len(alarmed):.0%} of alarms"
        head = (
            f"{DEFECT_NAMES[kind]} signature in {share}" if kind else f"no bearing order matched in {share}"
        )
        worst = max(alarmed, key=lambda r: r.score or 0.0)
        most = worst.explanation.split("most unusual: ", 1)[-1].split("; ")[0]
        return f"{head}; worst window {worst.index} (t={worst.start_s:.2f} s): {most}"


@dataclass(frozen=True)
class VibrationScorer:
    """A vibration model loaded once (card, feature settings, ONNX session) for any number of files."""

    path: Path
    card: dict
    feature_cfg: FeatureConfig
    sess: object  # onnxruntime.InferenceSession

    @classmethod
    def load(cls, model_file: Path) -> VibrationScorer:
        card = vibration_card(model_file)
        return cls(Path(model_file), card, features_from_card(card), session(model_file))


def vibration_card(model_file: Path) -> dict:
    card = read_card(model_file)
    if card["kind"] != VIBRATION_ANOMALY:
        raise ConfigError(
            f"{model_file} is a {card['kind']} model; sensor files need a {VIBRATION_ANOMALY} model"
        )
    return card


def _explanations(card: dict, windows: np.ndarray, features: np.ndarray, fs: float, rpm: float,
                  feature_cfg: FeatureConfig) -> list[Explanation]:  # fmt: skip
    profile, explain = card["model"]["normal_profile"], card["decision"]["explain"]
    spec = card["input"]["preprocessing"]
    return explain_windows(
        windows, features, np.asarray(profile["mean"]), np.asarray(profile["spread"]), spec["feature_set"]["names"],
        fs, rpm, tuple(spec["channels"]), feature_cfg, explain["top_features"], explain["min_peak_ratio"],
    )  # fmt: skip


def _screened(path: Path, spec: dict, rules: SensorRules, rpm: float | None, fs: float | None):
    declared = SensorDeclaration(
        sample_rate=fs, channels=tuple(spec["channels"]), units=spec["units"], rpm=rpm
    )
    checked = screen_record(load_signal(path, declared), rules, spec["sample_rate"], len(spec["channels"]))
    damaged = too_damaged(checked, rules)
    if damaged is not None or not checked.usable:
        raise stop_message(
            f"{path} cannot be scored", checked.record_errors() + ([damaged] if damaged else [])
        )
    return checked


def score_file(path: Path, model: Path | VibrationScorer, rules: SensorRules, rpm: float | None = None,
               fs: float | None = None, hop: int | None = None, model_ref: str = "") -> ScoreReport:  # fmt: skip
    """Screen, featurise and score `path` with `model` (an ONNX file, or one loaded once for many files)."""
    scorer = model if isinstance(model, VibrationScorer) else VibrationScorer.load(model)
    card, feature_cfg = scorer.card, scorer.feature_cfg
    spec = card["input"]["preprocessing"]
    checked = _screened(Path(path), spec, rules, rpm, fs)
    record = checked.record
    speed, source = (record.rpm, "declared") if record.rpm else (spec["nominal_rpm"], "the model's training speed (the file declares none)")  # fmt: skip
    windows = frame(record.samples, spec["window"], hop or spec["hop"])
    flags = checked.window_flags(windows.starts, spec["window"])
    clean = np.flatnonzero([not f for f in flags])
    features = extract_features(windows.data[clean], record.fs, speed, feature_cfg)  # (clean W, F)
    scores = run_batched(scorer.sess, features, batch=4096).astype(np.float64)
    threshold = card["decision"]["threshold"]
    alarmed = np.flatnonzero(scores > threshold)
    found = dict(zip(clean[alarmed].tolist(), _explanations(card, windows.data[clean[alarmed]], features[alarmed], record.fs, speed, feature_cfg), strict=True))  # fmt: skip
    score_of = dict(zip(clean.tolist(), scores.tolist(), strict=True))
    rows = [
        WindowScore(i, int(start), float(start / record.fs), score_of.get(i), i in found, flags[i],
                    found[i].text() if i in found else "", (found[i].match.order or "") if i in found else "")
        for i, start in enumerate(windows.starts)
    ]  # fmt: skip
    return ScoreReport(
        Path(path), model_ref or str(scorer.path), threshold, speed, source, rows, checked.findings, features,
        record=record,
    )  # fmt: skip
