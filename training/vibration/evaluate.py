"""The honest protocol: normal test windows from the end of the normal record, fault records test-only.

Reported per (fault group, load): AUROC against the held-out normal windows, detection rate at
the calibrated threshold, and how often an alarm's explanation names the fault's defect order
(inner race -> BPFI, outer race -> BPFO, ball -> BSF). The false-alarm rate is measured on the
held-out normal windows, which neither trained the model nor set its threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score

from core.errors import DataError
from inputs.vibration.explain import match_orders
from training.vibration.config import AnomalyTrainConfig
from training.vibration.dataset import AnomalyDataset, RecordWindows
from training.vibration.train import AnomalyTrainResult

EXPECTED_ORDER = {"IR": "BPFI", "OR": "BPFO", "B": "BSF"}


@dataclass
class RecordResult:
    path: str
    group: str  # e.g. "IR 0.007 in"
    fault_type: str
    load: str
    windows: int
    flagged: int
    auroc: float
    detection_rate: float
    expected_order: str | None
    matched: dict[str, int] = field(default_factory=dict)  # order (or "none") -> alarmed windows
    scores: list[float] = field(default_factory=list, repr=False)

    @property
    def explanation_accuracy(self) -> float | None:
        alarms = sum(self.matched.values())
        return self.matched.get(self.expected_order, 0) / alarms if self.expected_order and alarms else None


@dataclass
class ProtocolReport:
    model: str
    threshold: float
    false_alarm_rate: float  # held-out normal test windows above the threshold
    false_alarms: int
    test_normal_windows: int
    calibration_false_alarm_rate: float
    auroc_all_faults: float
    min_record_auroc: float
    records: list[RecordResult]
    normal_test_scores: list[float] = field(default_factory=list)

    def flat(self) -> dict[str, float]:
        """Scalar metrics for MLflow and the promotion gate."""
        loads = sorted({r.load for r in self.records})
        out = {
            "false_alarm_rate": self.false_alarm_rate, "auroc_all_faults": self.auroc_all_faults,
            "min_record_auroc": self.min_record_auroc, "test_normal_windows": float(self.test_normal_windows),
            "threshold": self.threshold, "calibration_false_alarm_rate": self.calibration_false_alarm_rate,
        }  # fmt: skip
        for load in loads:
            chosen = [r for r in self.records if r.load == load]
            key = load.replace(" ", "")
            out[f"detection_rate_{key}"] = float(np.mean([r.detection_rate for r in chosen]))
        return out

    def to_dict(self) -> dict:
        records = [asdict(r) | {"explanation_accuracy": r.explanation_accuracy} for r in self.records]
        return asdict(self) | {"records": records}


def _auroc(normal: np.ndarray, fault: np.ndarray) -> float:
    labels = np.concatenate([np.zeros(len(normal)), np.ones(len(fault))])
    return float(roc_auc_score(labels, np.concatenate([normal, fault])))


def _record_result(part: RecordWindows, scores: np.ndarray, normal: np.ndarray, trained: AnomalyTrainResult,
                   dataset: AnomalyDataset, cfg: AnomalyTrainConfig) -> RecordResult:  # fmt: skip
    alarms = scores > trained.threshold.value
    kind = part.meta.get("fault_type", part.label)
    expected = EXPECTED_ORDER.get(kind)
    matched: dict[str, int] = {}
    if alarms.any() and part.rpm:
        which = np.flatnonzero(part.clean)[alarms]
        for m in match_orders(
            part.windows(which), dataset.fs, part.rpm, dataset.channels, cfg.features, trained.min_peak_ratio
        ):
            key = m.order or "none"
            matched[key] = matched.get(key, 0) + 1
    return RecordResult(
        part.path, part.group, kind, part.load, len(scores), int((~part.clean).sum()),
        _auroc(normal, scores) if len(scores) else float("nan"), float(alarms.mean()) if len(scores) else 0.0,
        expected, matched, scores.tolist(),
    )  # fmt: skip


def evaluate_protocol(
    cfg: AnomalyTrainConfig, trained: AnomalyTrainResult, dataset: AnomalyDataset
) -> ProtocolReport:
    """Score every test window once and report the protocol's numbers (see the module docstring)."""
    threshold = trained.threshold.value
    normal = trained.model.score(dataset.features("test", normal=True))
    if len(normal) == 0:
        raise DataError(
            "no held-out normal test windows: the protocol cannot measure false alarms; "
            "lower split.calibration_end or record more normal data"
        )
    records, fault_scores = [], []
    for part in dataset.select("test", normal=False):
        scores = trained.model.score(part.features) if len(part.features) else np.empty(0)
        fault_scores.append(scores)
        records.append(_record_result(part, scores, normal, trained, dataset, cfg))
    faults = np.concatenate(fault_scores) if fault_scores else np.empty(0)
    aurocs = [r.auroc for r in records if np.isfinite(r.auroc)]
    return ProtocolReport(
        model=str(cfg.model.name), threshold=threshold, false_alarm_rate=float(np.mean(normal > threshold)),
        false_alarms=int(np.sum(normal > threshold)), test_normal_windows=len(normal),
        calibration_false_alarm_rate=trained.threshold.calibration_false_alarm_rate,
        auroc_all_faults=_auroc(normal, faults) if len(faults) else float("nan"),
        min_record_auroc=min(aurocs) if aurocs else float("nan"), records=records,
        normal_test_scores=normal.tolist(),
    )  # fmt: skip
