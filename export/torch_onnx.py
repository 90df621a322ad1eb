"""One quiet `torch.onnx.export` call shared by every exporter (defect classifier, autoencoder).

The dynamo exporter prints warnings and progress through four loggers; an export that works
should print nothing, and one that fails raises. torch is imported inside, so modules that only
read ONNX files stay light.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path


def export_dynamic_batch(
    module, example, path: Path, input_name: str, output_name: str | list[str], opset: int, max_batch: int
) -> Path:
    """Export `module` with axis 0 of its one input dynamic (1..max_batch), weights inside the file;
    `output_name`: one name, or one per output in the order the module returns them."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=max_batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("torch.onnx", "onnxscript", "torch._export", "torch.export"):
            logging.getLogger(name).setLevel(logging.ERROR)
        torch.onnx.export(
            module, (example,), str(path), dynamo=True, opset_version=opset, external_data=False,
            input_names=[input_name], output_names=[output_name] if isinstance(output_name, str) else output_name, dynamic_shapes={input_name: {0: batch}},
            verbose=False,
        )  # fmt: skip
    return path
