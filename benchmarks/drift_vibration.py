"""Drift detection on vibration: held-out normal CWRU windows, clean and after a change on the machine.

  python -m benchmarks.drift_vibration [--devices 20] [--cycles 50] [--gain 1.3] [--hum 0.5]

Trains the shipped default (IsolationForest on the first 45 % of the normal record, threshold on
the next 15 %), exports it to ONNX, and builds the version's reference from the calibration slice
as the flow does. The held-out last 40 % of the normal record is scored by the device's own code
(device.vibration.score_file) twice: as recorded, and after a change, the signal multiplied by
`--gain` (a loosened sensor mount) plus a 50 Hz hum of `--hum` times its RMS (a motor cable next to
the sensor lead). Devices send windows of 32 sensor windows drawn from one or the other; every
window goes through the monitor as shipped. Writes benchmarks/results/drift_vibration.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from core.settings import apply_offline_defaults
from core.telemetry import WindowBuilder

REPO = Path(__file__).resolve().parents[1]
NORMAL = REPO / "data" / "cwru_bearings" / "cwru12k_DE_normal_0hp.npz"
PER_WINDOW = 32


def trained(work: Path):
    """The default model on the shipped normal record, its ONNX file and its reference."""
    from data_checks.vibration.checks import check_records
    from data_checks.vibration.config import SensorRules
    from export.vibration.config import AnomalyExportConfig
    from export.vibration.onnx import onnx_scores
    from export.vibration.stage import export_anomaly_model
    from inputs.vibration.signals import SensorDeclaration, load_signal
    from monitor.reference import vibration_reference
    from training.vibration.config import AnomalyTrainConfig
    from training.vibration.dataset import build_dataset
    from training.vibration.train import train_anomaly_model

    cfg = AnomalyTrainConfig()
    record = load_signal(NORMAL, SensorDeclaration(channels=("DE",), units="g"))
    dataset = build_dataset(check_records([record], SensorRules()), cfg, ("normal",))
    model = train_anomaly_model(cfg, dataset)
    path = export_anomaly_model(cfg, model, dataset, {}, {}, AnomalyExportConfig(), work).path
    calibration = dataset.features("calibration", True)
    features = np.concatenate([dataset.features("train", True), calibration])  # in time order
    reference = vibration_reference(
        features, onnx_scores(path, calibration), model.feature_names, model.threshold.value
    )
    return cfg, model, path, reference, record


def held_out(record, cfg, gain: float, hum: float, work: Path, name: str) -> Path:
    """The normal record's last 40 %, as recorded or changed, written as a sensor file a device would get."""
    start = int(cfg.split.calibration_end * record.n_samples)
    x = record.samples[start:, 0].copy()
    t = np.arange(len(x)) / record.fs
    x = gain * x + hum * x.std() * np.sin(2 * np.pi * 50 * t)
    path = work / f"{name}.npz"
    np.savez(path, signal=x, fs=record.fs, rpm=record.rpm, units="g", channels=np.array(["DE"]))
    return path


def device_windows(path: Path, model_file: Path):
    """Per sensor window of the file: score, alarm, feature row (the device's own code, hop 256)."""
    from data_checks.vibration.config import SensorRules
    from device.vibration import score_file

    report = score_file(path, model_file, SensorRules(), hop=256)
    scored = [r for r in report.rows if r.score is not None]
    return np.array([r.score for r in scored]), np.array([r.alarm for r in scored]), report.features


def telemetry(scores, alarms, features, rng, window_id: str):
    from edge.telemetry import TelemetryWindow

    builder = WindowBuilder("vibration-anomaly", sample_size=PER_WINDOW, seed=int(rng.integers(1 << 30)))
    for i in rng.choice(len(scores), PER_WINDOW):
        builder.add_vibration(float(scores[i]), bool(alarms[i]), features[i])
    return TelemetryWindow(**builder.summary(), window_id=window_id, model="bearing-anomaly", version="1",
                           started=window_id, ended=window_id)  # fmt: skip


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--gain", type=float, default=1.3)
    parser.add_argument("--hum", type=float, default=0.5)
    args = parser.parse_args()
    from edge.telemetry import TelemetryStore
    from monitor.cycle import run_cycle
    from monitor.store import MonitorStore

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        cfg, model, model_file, reference, record = trained(work)
        sources = {"clean": device_windows(held_out(record, cfg, 1.0, 0.0, work, "clean"), model_file),
                   "changed": device_windows(held_out(record, cfg, args.gain, args.hum, work, "changed"), model_file)}  # fmt: skip
        result = {"gain": args.gain, "hum_x_rms": args.hum, "floors": reference["floors"],
                  "sensor_windows": {k: len(v[0]) for k, v in sources.items()}}  # fmt: skip
        for phase in ("clean", "changed"):
            telemetry_store, store = (
                TelemetryStore(work / f"{phase}-t.db"),
                MonitorStore(work / f"{phase}-m.db"),
            )
            flagged = drift = 0
            first = {}
            for cycle in range(args.cycles):
                for d in range(args.devices):
                    telemetry_store.add(
                        f"motor-{d:02d}", telemetry(*sources[phase], rng, f"{phase}-{cycle}-{d}")
                    )
                report = run_cycle(telemetry_store, store, lambda m, v: reference, ["bearing-anomaly"])
                flagged += sum(a.flagged for a in report.assessments)
                for s in report.states:
                    drift += s.state == "drift"
                    if s.state == "drift":
                        first.setdefault(s.device, cycle + 1)
            windows = args.cycles * args.devices
            result[phase] = {"windows": windows, "flagged_share": flagged / windows, "in_drift_share": drift / windows,
                             "devices_detected": len(first), "delay_windows_median": float(np.median(list(first.values()))) if first else None,
                             "model_alarm_share": float(np.mean(sources[phase][1]))}  # fmt: skip
    print(json.dumps(result, indent=2))
    (REPO / "benchmarks/results/drift_vibration.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
