"""fp32 ONNX of the defect classifier that verifies itself before anyone ships it.

`torch.onnx.export` (dynamo, opset 18, dynamic batch), then onnx.checker and ONNX Runtime against
PyTorch on real images. Preprocessing (grey values 0..255 -> normalised 3 channels) and the softmax
are inside the graph, so a device feeds grey pixels and reads probabilities. A second output,
`embedding`, is a fixed low-dimensional projection (PCA on training images, fitted at export) of
the pooled features: what drift monitoring compares between a device's window and the reference.
The int8 file is made from this one (export.images.int8).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from core.errors import ExportError
from core.onnx_runtime import session
from export.torch_onnx import export_dynamic_batch
from training.images.model import DefectClassifier, ProbabilityModel

OPSET = 18  # asking for 17 prints a traceback and yields 18 anyway (STACK_NOTES)
INPUT, OUTPUT, EMBEDDING = "grey", "probabilities", "embedding"
EMBEDDING_DIMS = 16


class EdgeModel(torch.nn.Module):
    """What ships: class probabilities and the projected embedding, edge code needs no maths of its own."""

    def __init__(self, classifier: DefectClassifier, projection: np.ndarray, offset: np.ndarray) -> None:
        super().__init__()
        self.classifier = classifier
        self.projection = torch.nn.Linear(projection.shape[1], projection.shape[0])
        with torch.no_grad():
            self.projection.weight.copy_(torch.as_tensor(projection, dtype=torch.float32))
            self.projection.bias.copy_(torch.as_tensor(offset, dtype=torch.float32))

    def forward(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, pooled = self.classifier.logits_and_pooled(grey)
        return torch.softmax(logits, dim=1), self.projection(pooled)  # (N, C), (N, EMBEDDING_DIMS)


@torch.inference_mode()
def fit_projection(
    model: DefectClassifier, grey: np.ndarray, dims: int = EMBEDDING_DIMS
) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the pooled features of `grey` (N, 1, S, S) training images: (dims, F) weights and the
    bias that centres them, so embedding = W (pooled - mean)."""
    pooled = np.concatenate([model.eval().logits_and_pooled(torch.from_numpy(grey[i : i + 32]))[1].numpy()
                             for i in range(0, len(grey), 32)])  # fmt: skip
    mean = pooled.mean(0)
    _, _, components = np.linalg.svd(pooled - mean, full_matrices=False)
    weights = components[:dims]
    return weights, -weights @ mean


def shipped_module(
    model: DefectClassifier, projection: tuple[np.ndarray, np.ndarray] | None
) -> torch.nn.Module:
    model = model.eval().to("cpu", memory_format=torch.contiguous_format)
    return (EdgeModel(model, *projection) if projection is not None else ProbabilityModel(model)).eval()


def export_fp32(
    model: DefectClassifier, path: Path, projection: tuple[np.ndarray, np.ndarray] | None = None
) -> Path:
    """ONNX with a dynamic batch axis; the softmax and the normalisation are inside; with `projection`
    (fit_projection), a second output `embedding`."""
    shipped = shipped_module(model, projection)
    size = model.spec.image_size
    example = torch.full(
        (2, model.spec.channels, size, size), 128.0
    ).contiguous()  # contiguous: channels-last fails export
    outputs = [OUTPUT, EMBEDDING] if projection is not None else OUTPUT
    export_dynamic_batch(shipped, example, path, INPUT, outputs, OPSET, max_batch=1024)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def check_parity(model: DefectClassifier, onnx_path: Path, grey: np.ndarray, atol: float = 1e-4,
                 projection: tuple[np.ndarray, np.ndarray] | None = None) -> float:  # fmt: skip
    """Max |ONNX Runtime - PyTorch| over real images and every output; raises ExportError above `atol`
    (the embedding is compared relative to its own scale)."""
    with torch.inference_mode():
        reference = shipped_module(model, projection)(torch.from_numpy(grey))
    reference = [r.numpy() for r in (reference if isinstance(reference, tuple) else (reference,))]
    sess = session(onnx_path)
    got = [np.concatenate(parts) for parts in zip(*(sess.run(None, {INPUT: grey[i : i + 32]})
                                                    for i in range(0, len(grey), 32)), strict=True)]  # fmt: skip
    return parity_gap(got, reference, onnx_path, atol)


def parity_gap(got: list[np.ndarray], reference: list[np.ndarray], onnx_path: Path, atol: float) -> float:
    """Max |ONNX Runtime - PyTorch| over the outputs, each relative to its own scale (at least 1);
    raises ExportError above `atol`. Every image exporter's parity check ends here."""
    gap = max(
        float(np.abs(g - r).max() / max(1.0, float(np.abs(r).max())))
        for g, r in zip(got, reference, strict=True)
    )
    if gap > atol:
        raise ExportError(f"{onnx_path.name}: ONNX Runtime differs from PyTorch by {gap:.2e} (> {atol:.0e})")
    return gap
