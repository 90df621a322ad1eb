"""Did this data train the model? Block hashes of the normal records a model learned from.

Each normal record is cut into blocks of BLOCK samples from its first sample; the sha256 of each
block's samples as float32 (all channels) is kept for the blocks that reach into the part that
trained the model or set its threshold ([0, calibration_end) of the record). Scoring hashes the
file's blocks the same way: the same record, or any copy or cut of it that starts on a block
boundary, in any file format (.npz, .csv, .parquet carry the same float32 values), matches. A
resampled, rescaled or arbitrarily cut copy does not: this is a cheap guard against the common
mistake (scoring the training file and reading its clean result as evidence), not a proof of novelty.
"""

from __future__ import annotations

import hashlib

import numpy as np

from inputs.vibration.signals import SensorRecord

ARTIFACT = "data/training_blocks.json"  # in the training run, beside the model
BLOCK = 4096  # samples; 0.2-0.3 s at usual rates: a 5 s record gives ~20 hashes


def block_hashes(samples: np.ndarray, stop: int | None = None) -> list[str]:
    """sha256 (16 hex) of each whole BLOCK of samples (N, C) that starts before `stop`."""
    data = np.ascontiguousarray(samples, dtype=np.float32)
    stop = len(data) if stop is None else stop
    starts = range(0, min(stop, len(data) - BLOCK + 1), BLOCK) if len(data) >= BLOCK else range(0)
    return [hashlib.sha256(data[s : s + BLOCK].tobytes()).hexdigest()[:16] for s in starts]


def training_fingerprint(
    records: list[SensorRecord], normal_labels: tuple[str, ...], calibration_end: float
) -> dict:
    """What a model trained on, per normal record: file, samples and the block hashes of its train + calibration part."""
    return {
        "block": BLOCK,
        "records": [
            {"file": r.path.name, "label": r.label, "samples": r.n_samples,
             "blocks": block_hashes(r.samples, int(np.ceil(calibration_end * r.n_samples)))}
            for r in records if r.label in normal_labels
        ],
    }  # fmt: skip


def training_overlap(record: SensorRecord, fingerprint: dict) -> str:
    """A one-line warning when `record` shares blocks with the data a model trained on, else ""."""
    if fingerprint.get("block") != BLOCK:
        return ""
    mine = block_hashes(record.samples)
    for trained in fingerprint["records"]:
        shared = len(set(mine) & set(trained["blocks"]))
        if shared:
            return (
                f"{record.path.name}: {shared} of its {len(mine)} blocks of {BLOCK} samples are in the data "
                f"that trained this model or set its threshold ({trained['file']}); "
                "its scores say nothing about unseen data"
            )
    return ""
