"""Training throughput of shopfloor's fit loop against a bare timm + PyTorch loop, side by side.

  python -m benchmarks.train_throughput [--images 256] [--size 224] [--repeats 2]

Same data (the cached magnetic-tile pixels), same model (EfficientNet-Lite0, ImageNet weights),
same device and batch size, in one process; the runs alternate so drift hits both. The bare
loop is what one would write by hand: random batches of tensors, forward, cross-entropy,
backward, AdamW step. It is run twice, NCHW and channels-last, and the faster one is the
baseline. shopfloor's loop adds augmentation, the sampler, the mask loss plumbing and
checkpointing per epoch; it runs two epochs and reports the second, as the bare loop leaves its
first step out (validation is excluded from its images/s). On CUDA each run also
records the GPU's mean utilisation while it ran (NVML through `torch.cuda.utilization`, sampled
every 50 ms), which says whether the loader keeps the GPU busy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from core.settings import apply_offline_defaults
from data_checks.images.manifest import load_dataset
from training.images.backbones import create_backbone
from training.images.config import AugmentConfig, FitConfig, ModelConfig
from training.images.data import training_data
from training.images.device import autocast, resolve_device
from training.images.fit import fit
from training.images.model import make_spec

BATCH = 32


def with_gpu_utilisation(run: Callable[[], float], device: torch.device) -> tuple[float, float | None]:
    """Run `run()`; on CUDA also return the mean GPU utilisation (%) sampled while it ran."""
    if device.type != "cuda":
        return run(), None
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            samples.append(torch.cuda.utilization(device))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        speed = run()
    finally:
        done.set()
        sampler.join()
    return speed, float(np.mean(samples)) if samples else None


def bare_loop(
    images: np.ndarray, labels: np.ndarray, count: int, device: torch.device, channels_last: bool
) -> float:
    model = create_backbone("efficientnet_lite0", num_classes=int(labels.max()) + 1).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    rng = np.random.default_rng(0)
    seen, started = 0, None
    for step in range(count // BATCH + 1):
        if step == 1:  # the first step pays for allocation; time the rest
            started, seen = time.perf_counter(), 0
        pick = rng.integers(0, len(images), BATCH)
        x = torch.from_numpy(images[pick]).float()[:, None].div(255).sub(0.5).div(0.5).expand(-1, 3, -1, -1)
        x = x.to(device).contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format
        )
        y = torch.from_numpy(labels[pick]).to(device)
        with autocast(device):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += BATCH
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def shopfloor_loop(data, classes, count: int, size: int, mask_head: bool = False) -> float:
    """Two epochs of `count` images; the second one's images/s. The bare loop leaves its first step
    out of the clock (allocation, kernel selection); leaving out the first epoch does the same here,
    while the second still pays what every epoch pays (starting the loader's workers, checkpoints)."""
    cfg = FitConfig(
        epochs=2, warmup_epochs=0, samples_per_epoch=count, batch_size=BATCH, early_stopping_patience=2
    )
    shipped = ModelConfig()  # with `mask_head`, the mask head and pooling as the defaults ship them
    spec = make_spec(
        shipped.backbone,
        classes,
        size,
        shipped.dropout,
        aux_seg=mask_head and shipped.aux_seg_weight > 0,
        mask_pooling=mask_head and shipped.mask_pooling,
    )
    idx = np.arange(len(data.labels))
    with tempfile.TemporaryDirectory() as out:
        result = fit(
            cfg,
            AugmentConfig(),
            spec,
            data,
            idx,
            idx[:64],
            Path(out),
            aux_seg_weight=shipped.aux_seg_weight if mask_head else 0.0,
        )
    return result.history[-1]["train_images_per_s"]


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mask-head", action="store_true", help="also time the shipped mask-head model")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_throughput.json"))
    args = parser.parse_args()
    device = resolve_device("auto")
    manifest = load_dataset(Path("data/magnetic_tiles")).manifest
    classes = sorted(manifest["label"].unique())
    data = training_data(manifest, classes, args.size, Path(".shopfloor/cache"))
    loops: dict[str, Callable[[], float]] = {
        "bare_nchw": lambda: bare_loop(data.images, data.labels, args.images, device, channels_last=False),
        "bare_channels_last": lambda: bare_loop(
            data.images, data.labels, args.images, device, channels_last=True
        ),
        "shopfloor_fit": lambda: shopfloor_loop(data, classes, args.images, args.size),
    }
    if args.mask_head:  # the shipped model (defect-mask head, mask pooling): no bare twin, for reference
        loops["shopfloor_fit_mask_head"] = lambda: shopfloor_loop(
            data, classes, args.images, args.size, mask_head=True
        )
    runs: dict[str, list[float]] = {name: [] for name in loops}
    utilisation: dict[str, list[float | None]] = {name: [] for name in loops}
    for _ in range(args.repeats):
        for name, loop in loops.items():
            speed, busy = with_gpu_utilisation(loop, device)
            runs[name].append(speed)
            utilisation[name].append(busy)
    best = {k: max(v) for k, v in runs.items()}
    baseline = max(best["bare_nchw"], best["bare_channels_last"])
    result = {
        "device": str(device),
        "size": args.size,
        "batch": BATCH,
        "images_per_run": args.images,
        "runs": runs,
        "best_images_per_s": best,
        "ratio_vs_best_bare": best["shopfloor_fit"] / baseline,
    }
    if args.mask_head:
        result["mask_head_ratio_vs_best_bare"] = best["shopfloor_fit_mask_head"] / baseline
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
        result["gpu_utilisation_percent"] = utilisation
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
