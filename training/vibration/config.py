"""Typed settings of the vibration anomaly stages: windows, features, models, threshold, protocol.

Frozen and extra="forbid" like training/images/config.py, so a typo in configs/anomaly.yaml fails at load
time with the key's name. Light to import: no numpy, torch or scikit-learn here.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from inputs.vibration.features import FeatureConfig


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WindowConfig(Frozen):
    """Windows cut from the signal. 2048 samples at 12 kHz = 0.17 s, about 5 shaft revolutions and
    18 outer-race impacts: enough for a 5.9 Hz envelope-spectrum resolution that keeps BPFO (107 Hz),
    BSF (141 Hz) and BPFI (162 Hz) apart."""

    length: int = Field(2048, ge=64)
    hop: int = Field(512, ge=1)  # scoring hop; the protocol uses smaller hops on the short normal record


class IsolationForestConfig(Frozen):
    n_estimators: int = Field(200, ge=10)  # more trees, steadier scores; skl2onnx export ~20 s at 200
    max_samples: int = Field(256, ge=16)
    max_features: float = Field(1.0, gt=0, le=1)


class AutoencoderConfig(Frozen):
    hidden: int = Field(16, ge=2)
    bottleneck: int = Field(4, ge=1)
    epochs: int = Field(300, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)  # strong: ~800 overlapping windows hold little information
    batch_size: int = Field(128, ge=8)


class ModelName(StrEnum):
    """The models in training.vibration.models.MODELS: an enum, so a bad name fails when the config loads
    (listing these) without importing torch or scikit-learn."""

    ISOLATION_FOREST = "isolation_forest"
    AUTOENCODER = "autoencoder"


class AnomalyModelConfig(Frozen):
    """`name` picks the model from training.vibration.models.MODELS; both train on normal windows only."""

    name: ModelName = ModelName.ISOLATION_FOREST
    isolation_forest: IsolationForestConfig = IsolationForestConfig()
    autoencoder: AutoencoderConfig = AutoencoderConfig()
    seed: int = 0


class ThresholdConfig(Frozen):
    """The alarm threshold comes from normal windows the model never saw (see threshold.py)."""

    target_false_alarm_rate: float = Field(0.01, gt=0, lt=0.5)
    # Scores of normal windows drift over time; the margin, in units of the calibration scores'
    # spread (median absolute deviation), is measured on an earlier slice of normal data (see threshold.py).
    margin_mads: float | None = Field(None, ge=0)  # None: measured on the drift slice; a number: fixed


class SplitConfig(Frozen):
    """Time-ordered split of every normal record (fractions of its length).

    [0, train_end) trains, [train_end, calibration_end) sets the threshold, [calibration_end, 1)
    tests. Fault records are test-only. No window straddles a boundary.
    """

    train_end: float = Field(0.45, gt=0, lt=1)
    calibration_end: float = Field(0.60, gt=0, lt=1)
    normal_hop: int = Field(32, ge=1)  # small hop on the short normal record, so a 1 % rate is measurable
    fault_hop: int = Field(1024, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> SplitConfig:
        if not self.train_end < self.calibration_end:
            raise ValueError(
                f"train_end ({self.train_end}) must be < calibration_end ({self.calibration_end})"
            )
        return self


class ExplainConfig(Frozen):
    top_features: int = Field(3, ge=1, le=20)
    # An envelope peak counts as a defect signature when it stands this many times above the
    # envelope spectrum's median around it. None: the highest ratio any normal training or calibration
    # window reaches at any defect order (never below 2), so normal windows almost never show a signature.
    min_peak_ratio: float | None = Field(None, gt=1)


class AnomalyTrainConfig(Frozen):
    """Everything `train.train_anomaly_model` needs."""

    window: WindowConfig = WindowConfig()
    features: FeatureConfig = FeatureConfig()
    model: AnomalyModelConfig = AnomalyModelConfig()
    threshold: ThresholdConfig = ThresholdConfig()
    split: SplitConfig = SplitConfig()
    explain: ExplainConfig = ExplainConfig()
