"""A second machine's vibration data, derived from the shipped CWRU records (nothing is downloaded).

  python -m benchmarks.second_machine OUT_DIR [--records normal IR_007_0hp ...]

What differs from the CWRU rig, so every declaration the embedded defaults make is wrong for it:
- sample rate 20 kHz: each 12 kHz record resampled with scipy.signal.resample_poly(x, 5, 3);
- two channels named B1x and B1y (x and y of bearing 1), float32 in m/s^2 (g x 9.80665); B1y is a
  second view of the same bearing: 0.7 x B1x plus 0.3 x B1x 7 samples (0.35 ms) later;
- the files declare fs, channels, units and rpm themselves (like a logger's export), but not the
  bearing: the machine config (configs/anomaly-pump7.yaml) names it by numbers.
The bearing in the data is still CWRU's 6205: the NSK 6205 declared in the example config has
near-identical geometry (defect orders within 1.5 %), so the defect explanations stay physically true.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

CWRU = Path(__file__).resolve().parent.parent / "data" / "cwru_bearings"
FS = 20000
CHANNELS = ("B1x", "B1y")
G = 9.80665
# normal trains; faults of three kinds at two loads evaluate (a small, quick set)
DEFAULT_RECORDS = ("normal", "IR_007_0hp", "OR_021_at6_0hp", "IR_014_1hp", "OR_007_at6_2hp")


def source(label: str) -> Path:
    return CWRU / ("cwru12k_DE_normal_0hp.npz" if label == "normal" else f"cwru12k_DE_{label}.npz")


def derive(label: str) -> dict:
    """One CWRU record as the second machine records it: (N, 2) float32 at 20 kHz, with declarations."""
    with np.load(source(label)) as data:
        x = resample_poly(data["signal"].astype(np.float64), 5, 3) * G  # 12 -> 20 kHz, g -> m/s^2
        rpm = float(data["rpm"])
    y = 0.7 * x + 0.3 * np.concatenate([x[7:], x[-7:]])
    return {
        "signal": np.stack([x, y], 1).astype(np.float32),
        "fs": FS,
        "channels": np.array(CHANNELS),
        "units": "m/s^2",
        "rpm": rpm,
        "label": label,
    }


def make_second_machine(out_dir: Path, records: tuple[str, ...] = DEFAULT_RECORDS) -> Path:
    """Write pump7_<label>.npz for each CWRU label into `out_dir`; returns the folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for label in records:
        np.savez(out_dir / f"pump7_{label}.npz", **derive(label))
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--records", nargs="+", default=list(DEFAULT_RECORDS), help="CWRU labels")
    args = parser.parse_args()
    folder = make_second_machine(args.out_dir, tuple(args.records))
    print(f"{len(args.records)} files at {FS} Hz, channels {', '.join(CHANNELS)}, in {folder}")


if __name__ == "__main__":
    main()
