"""The PatchCore scorer (training.images.patchcore) as an ONNX file devices run: input `grey`
(N, 1, S, S) in 0..255, outputs `score` (N,) and `anomaly_map` (N, 1, S, S), batch axis dynamic;
checked by onnx.checker and against PyTorch in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.onnx_runtime import session
from export.images.onnx import INPUT, parity_gap
from export.torch_onnx import export_dynamic_batch
from training.images.patchcore import PatchCoreScorer

SCORE, ANOMALY_MAP = "score", "anomaly_map"  # input: INPUT, as the classifier's
OPSET = 18  # as export/images/onnx.py: asking for 17 yields 18 anyway


def export_onnx(scorer: PatchCoreScorer, path: Path, image_size: int, max_batch: int = 256) -> Path:
    """Export and check the file's structure (onnx.checker, full)."""
    import onnx

    example = torch.full((2, 1, image_size, image_size), 128.0)
    export_dynamic_batch(scorer.eval(), example, path, INPUT, [SCORE, ANOMALY_MAP], OPSET, max_batch)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def check_parity(scorer: PatchCoreScorer, path: Path, grey: np.ndarray, atol: float = 1e-4) -> float:
    """Max |ONNX Runtime - PyTorch| over both outputs, relative to each output's scale (at least 1);
    raises ExportError above `atol`. `grey`: (N, 1, S, S) float32 in 0..255."""
    grey = np.ascontiguousarray(grey, dtype=np.float32)
    with torch.inference_mode():
        reference = [t.numpy() for t in scorer.eval()(torch.from_numpy(grey))]
    return parity_gap(session(path).run([SCORE, ANOMALY_MAP], {INPUT: grey}), reference, path, atol)
