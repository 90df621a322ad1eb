"""fp32 ONNX of the defect classifier that verifies itself before anyone ships it.

`torch.onnx.export` (dynamo, opset 18, dynamic batch), then onnx.checker and ONNX Runtime against
PyTorch on real images. Preprocessing (grey values 0..255 -> normalised 3 channels) and the softmax
are inside the graph, so a device feeds grey pixels and reads probabilities. The int8 file is made
from this one (export.images.int8).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from core.errors import ExportError
from core.onnx_runtime import run_batched, session
from export.torch_onnx import export_dynamic_batch
from training.images.model import DefectClassifier, ProbabilityModel

OPSET = 18  # asking for 17 prints a traceback and yields 18 anyway (STACK_NOTES)
INPUT, OUTPUT = "grey", "probabilities"


def export_fp32(model: DefectClassifier, path: Path) -> Path:
    """ONNX with a dynamic batch axis; the softmax and the normalisation are inside."""
    shipped = ProbabilityModel(model.eval().to("cpu", memory_format=torch.contiguous_format)).eval()
    size = model.spec.image_size
    example = torch.full((2, 1, size, size), 128.0).contiguous()  # contiguous: channels-last fails export
    export_dynamic_batch(shipped, example, path, INPUT, OUTPUT, OPSET, max_batch=1024)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def check_parity(model: DefectClassifier, onnx_path: Path, grey: np.ndarray, atol: float = 1e-4) -> float:
    """Max |ONNX Runtime - PyTorch| over real images; raises ExportError above `atol`."""
    with torch.inference_mode():
        reference = ProbabilityModel(model.eval()).eval()(torch.from_numpy(grey)).numpy()
    got = run_batched(session(onnx_path), grey)
    gap = float(np.abs(got - reference).max())
    if gap > atol:
        raise ExportError(f"{onnx_path.name}: ONNX Runtime differs from PyTorch by {gap:.2e} (> {atol:.0e})")
    return gap
