"""Figures people would rather look at: envelope spectra with the defect orders marked, and a score timeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # the object API: no GUI backend, no global pyplot state

from inputs.vibration.bearing import DEFECT_NAMES, defect_frequencies
from inputs.vibration.features import FeatureConfig, envelope_spectrum
from training.vibration.dataset import RecordWindows

COLOURS = {"BPFI": "tab:red", "BPFO": "tab:blue", "BSF": "tab:green"}


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def envelope_spectra_png(parts: list[RecordWindows], fs: float, cfg: FeatureConfig, path: Path) -> Path:
    """Mean envelope spectrum (first channel) of each record, with BPFI/BPFO/BSF and their 2x marked."""
    figure = Figure(figsize=(9, 2.2 * len(parts)))
    axes = figure.subplots(len(parts), 1, squeeze=False)
    for axis, part in zip(axes[:, 0], parts, strict=True):
        windows = part.windows(np.flatnonzero(part.clean)[:64])  # (W, C, L)
        freqs, amplitude = envelope_spectrum(np.asarray(windows, np.float64), fs, cfg.envelope_band_hz)
        targets = defect_frequencies(cfg.bearing, part.rpm or 0.0)
        shown = freqs <= 3.5 * max(targets.values())
        axis.plot(freqs[shown], amplitude[:, 0].mean(0)[shown], color="black", linewidth=0.8)
        for name, hz in targets.items():
            for harmonic, style in ((1, "-"), (2, ":")):
                axis.axvline(harmonic * hz, color=COLOURS[name], linestyle=style, linewidth=1,
                             label=f"{name} ({DEFECT_NAMES[name]}) {hz:.0f} Hz" if harmonic == 1 else None)  # fmt: skip
        axis.set_title(
            f"{Path(part.path).name}: {part.group}, {part.load}, {part.rpm or 0:.0f} rpm", fontsize=9
        )
        axis.set_ylabel("envelope amplitude")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("frequency (Hz)")
    return _save(figure, path)


def score_timeline_png(segments: list[tuple[str, np.ndarray]], threshold: float, path: Path) -> Path:
    """Scores of consecutive records side by side with the alarm threshold."""
    figure = Figure(figsize=(10, 3.5))
    axis = figure.subplots()
    start = 0
    for name, scores in segments:
        x = np.arange(start, start + len(scores))
        axis.plot(x, scores, ".", markersize=2, label=name)
        start += len(scores)
    axis.axhline(threshold, color="red", linewidth=1, label=f"threshold {threshold:.3g}")
    if min((s.min() for _, s in segments if len(s)), default=0) > 0:  # reconstruction errors span decades
        axis.set_yscale("log")
    axis.set_xlabel("window (records one after another)")
    axis.set_ylabel("anomaly score")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(figure, path)


def protocol_plots(report, dataset, cfg: FeatureConfig, out_dir: Path) -> dict[str, Path]:
    """The score timeline (held-out normal, then the fault records at the normal records' load) and the
    envelope spectra of held-out normal and one record per fault type at that load."""
    normal = dataset.select("test", normal=True)
    base = {p.load for p in normal}
    faults = [
        (p, r)
        for p, r in zip(dataset.select("test", normal=False), report.records, strict=True)
        if p.load in base
    ]
    segments = [("held-out normal", np.asarray(report.normal_test_scores))]
    segments += [(f"{r.group} {r.load}", np.asarray(r.scores)) for _, r in faults]
    shown, kinds = list(normal[:1]), set()
    for part, result in faults:
        if result.fault_type not in kinds:
            kinds.add(result.fault_type)
            shown.append(part)
    return {
        "score_timeline": score_timeline_png(segments, report.threshold, out_dir / "score_timeline.png"),
        "envelope_spectra": envelope_spectra_png(shown, dataset.fs, cfg, out_dir / "envelope_spectra.png"),
    }
