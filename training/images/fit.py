"""Fine-tune the defect classifier: head warm-up on a frozen backbone, then the whole network.

Reads top to bottom like nanoGPT's loop. Each epoch ends with validation macro-F1, a `last.pt`
checkpoint (so a killed run resumes) and, when it improved, `best.pt`; training stops early when
validation has not improved for `early_stopping_patience` epochs. Every epoch re-seeds from
(seed, epoch), so a resumed run draws the same samples and augmentations as an unbroken one.
Under torchrun the same loop runs on every rank (training.images.ranks): gradients are averaged,
validation is shared, and rank 0 alone saves, prints and reports.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import Progress, TextColumn

from training.images.augment import build_augmentation
from training.images.checkpoint import read_checkpoint, save_checkpoint
from training.images.config import AugmentConfig, FitConfig
from training.images.data import TrainingData
from training.images.device import autocast, resolve_device
from training.images.evaluate import predict_proba
from training.images.loader import make_loader
from training.images.losses import classification_loss
from training.images.metrics import macro_f1
from training.images.model import DefectClassifier, ModelSpec
from training.images.ranks import Rank, all_sum, barrier, current, gather, rank_device, trainable

console = Console(stderr=True)


@dataclass
class FitResult:
    best_checkpoint: Path
    last_checkpoint: Path
    best_epoch: int
    best_val_macro_f1: float
    history: list[dict] = field(default_factory=list)
    train_images_per_s: float = 0.0
    device: str = "cpu"


def _set_phase(model: DefectClassifier, frozen_backbone: bool, cfg: FitConfig) -> None:
    """Warm-up trains the new head only; fine-tuning trains everything. BatchNorm statistics stay
    ImageNet's unless asked otherwise."""
    model.train()
    for p in model.backbone_parameters():
        p.requires_grad = not frozen_backbone
    if frozen_backbone or cfg.freeze_bn_stats:
        for module in model.net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()


def _optimizer(model: DefectClassifier, cfg: FitConfig, frozen_backbone: bool, steps: int):
    groups = [{"params": model.head_parameters(), "lr": cfg.lr_head}]
    if not frozen_backbone:
        groups.append({"params": model.backbone_parameters(), "lr": cfg.lr_backbone})
    # On CUDA the fused kernel updates every tensor in one launch; at batch 32 a step is bound by
    # launches, not arithmetic. The CPU keeps the default implementation.
    on_cuda = next(model.parameters()).is_cuda
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay, fused=on_cuda)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in groups], total_steps=max(steps, 1), pct_start=0.15
    )
    return optimizer, scheduler


def _phase_optimizer(model: DefectClassifier, cfg: FitConfig, frozen: bool, batches: int, saved: dict | None,
                     state: dict):  # fmt: skip
    """The optimiser and one-cycle schedule of a phase, or of what is left of it after a restart (at the
    lowered rates); a resumed run takes the saved ones back."""
    scale, left = state["lr_scale"], cfg.warmup_epochs + cfg.epochs - state["epoch"]
    scaled = cfg.model_copy(update={"lr_head": cfg.lr_head * scale, "lr_backbone": cfg.lr_backbone * scale})
    epochs = cfg.warmup_epochs if frozen else (left if state["restarts"] else cfg.epochs)
    optimizer, scheduler = _optimizer(model, scaled, frozen, epochs * batches)
    if saved is not None and saved.get("frozen") == frozen and "optimizer" in saved:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
    return optimizer, scheduler


def _mask_loss(mask_logits: torch.Tensor, masks: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
    # masks: (B, 1, S, S) in 0..1 -> the head's stride-16 grid by area averaging
    target = F.adaptive_avg_pool2d(masks, mask_logits.shape[-2:])
    per_image = F.binary_cross_entropy_with_logits(mask_logits.float(), target, reduction="none").mean(
        (1, 2, 3)
    )
    return (per_image * has_mask).sum() / has_mask.sum().clamp(min=1)


def _step_loss(model, loss_fn, batch, device, aux_seg_weight: float) -> torch.Tensor:
    """The loss of one batch: classification, plus the mask loss where the model has a mask head."""
    grey, target, masks, has_mask = batch
    grey = grey.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)  # (B, 1, S, S)
    target = target.to(device, non_blocking=True)
    with autocast(device):
        logits, mask_logits = model.forward_with_mask(grey)
        loss = loss_fn(logits.float(), target)
        if mask_logits is not None and aux_seg_weight > 0:
            # non_blocking: from pinned memory the copy queues behind the step; a blocking copy
            # would make the CPU wait for the GPU to drain before launching more
            masks, has_mask = masks.to(device, non_blocking=True), has_mask.to(device, non_blocking=True)
            loss = loss + aux_seg_weight * _mask_loss(mask_logits, masks, has_mask)
    return loss


def _train_epoch(
    model,
    loader,
    loss_fn,
    optimizer,
    scheduler,
    device,
    aux_seg_weight: float,
    max_grad_norm: float | None,
    rank: Rank,
) -> tuple[int, float, float, float]:
    """One pass over `loader`; returns (images seen, summed loss, seconds, largest gradient norm before
    clipping), over all ranks (gradients are already averaged when they are clipped, so every rank
    clips alike).

    The loss is summed on the device and read once at the end: a `.item()` per step would make
    the CPU wait for every GPU step before it can queue the next one.
    """
    started, seen = time.perf_counter(), 0
    loss_sum, norm_max = torch.zeros((), device=device), torch.zeros((), device=device)
    limit = max_grad_norm or math.inf
    columns = (*Progress.get_default_columns(), TextColumn("{task.fields[speed]}"))
    with Progress(*columns, console=console, transient=True, disable=not rank.main) as bar:
        task = bar.add_task("  training", total=len(loader), speed="")
        for batch in loader:
            loss = _step_loss(model, loss_fn, batch, device, aux_seg_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(trainable_parameters(model), limit)
            norm_max = torch.maximum(norm_max, norm.detach())
            optimizer.step()
            scheduler.step()
            seen += len(batch[1])
            loss_sum += loss.detach() * len(batch[1])
            speed = seen * rank.world / (time.perf_counter() - started)
            bar.update(task, advance=1, speed=f"{speed:.1f} img/s")
    seen, loss_total = all_sum([seen, float(loss_sum)], rank)
    return int(seen), loss_total, time.perf_counter() - started, float(norm_max)


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _validate(
    model: DefectClassifier, data: TrainingData, val_idx: np.ndarray, device, batch_size: int, rank: Rank
) -> tuple[float, np.ndarray]:
    """Validation macro-F1 (what early stopping and the choice of `best.pt` follow) and the predicted
    classes. Each rank predicts its share; all ranks get the same answer, so they stop together."""
    mine = np.array_split(val_idx, rank.world)[rank.rank]
    predicted = gather(predict_proba(model.eval(), data.images[mine], device, batch_size).argmax(1), rank)
    return macro_f1(data.labels[val_idx], predicted, len(data.classes)), predicted


def _collapse(
    state: dict, predicted: np.ndarray, truth: np.ndarray, frozen: bool, cfg: FitConfig
) -> str | None:
    """Why this fine-tuning epoch counts as collapsed, or None: one class for every validation item, or
    the training loss up `collapse_loss_rises` epochs in a row."""
    if frozen:
        return None
    if len(np.unique(truth)) > 1 and len(np.unique(predicted)) == 1:
        return "every validation item predicted as one class"
    losses = [row["train_loss"] for row in state["history"] if row["phase"] == "finetune"][
        -cfg.collapse_loss_rises - 1 :
    ]
    if len(losses) > cfg.collapse_loss_rises and all(b > a for a, b in zip(losses, losses[1:], strict=False)):
        return f"training loss rose {cfg.collapse_loss_rises} epochs in a row"
    return None


def _restart(model: DefectClassifier, best_path: Path, state: dict, cfg: FitConfig, reason: str) -> bool:
    """Back to best.pt at lower learning rates; False when no restart is left (or no best.pt to go back to)."""
    if state["restarts"] >= cfg.max_restarts or state["best_epoch"] < 0:
        return False
    model.load_state_dict(read_checkpoint(best_path)["model"])
    state["restarts"] += 1
    state["lr_scale"] *= cfg.collapse_lr_factor
    state["bad_epochs"] = 0
    state["history"][-1]["restart"] = (f"{reason}: back to epoch {state['best_epoch'] + 1}'s weights, learning "
                                       f"rates x{state['lr_scale']:.2g} (restart {state['restarts']}/{cfg.max_restarts})")  # fmt: skip
    return True


def _resume(
    model: DefectClassifier, last_path: Path, resume: bool, total_epochs: int, rank: Rank
) -> tuple[dict, dict | None]:
    """The loop's state, fresh or from `last.pt` (whose weights go into `model`), and the saved payload."""
    state = {"epoch": 0, "best_score": -1.0, "best_epoch": -1, "history": [], "bad_epochs": 0, "restarts": 0, "lr_scale": 1.0}  # fmt: skip
    saved = read_checkpoint(last_path) if resume and last_path.exists() else None
    if saved is None:
        return state, None
    model.load_state_dict(saved["model"])
    if rank.main:
        console.print(f"Resuming from {last_path} at epoch {saved['epoch'] + 1}/{total_epochs}", markup=False)
    return {k: saved.get(k, default) for k, default in state.items()}, saved


def _record(
    state: dict, score: float, frozen: bool, trained: tuple[int, float, float, float], lr: float
) -> tuple[dict, bool]:
    """Update the loop's state with one epoch's validation score; returns its history row and whether it improved."""
    epoch, (seen, loss_sum, seconds, grad_norm_max) = state["epoch"], trained
    improved = score > state["best_score"]
    if improved:
        state["best_score"], state["best_epoch"], state["bad_epochs"] = score, epoch, 0
    elif not frozen:
        state["bad_epochs"] += 1
    row = {"epoch": epoch + 1, "phase": "warmup" if frozen else "finetune", "train_loss": loss_sum / max(seen, 1),
           "val_macro_f1": score, "train_images_per_s": seen / seconds, "lr": lr, "grad_norm_max": grad_norm_max}  # fmt: skip
    state["history"].append(row)
    state["epoch"] = epoch + 1
    return row, improved


def _report(row: dict, improved: bool, total_epochs: int, seconds: float) -> None:
    remaining = (total_epochs - row["epoch"]) * seconds
    console.print(
        f"epoch {row['epoch']}/{total_epochs} [{row['phase']}] loss {row['train_loss']:.3f} "
        f"val macro-F1 {row['val_macro_f1']:.3f}{' *' if improved else ''} | {row['train_images_per_s']:.1f} img/s | "
        f"ETA {math.ceil(remaining / 60)} min",
        markup=False,
    )
    if "restart" in row:
        console.print(f"  collapsed ({row['restart']})", markup=False)


def _save(model: DefectClassifier, state: dict, paths: tuple[Path, ...], on_epoch_end, row: dict,
          optimizer_state: dict) -> None:  # fmt: skip
    """Rank 0's end of an epoch: `last.pt` (and `best.pt` when validation improved), then the report.
    `optimizer_state` is empty after a restart: a resumed run then builds the lowered schedule afresh."""
    for path in paths:
        save_checkpoint(path, model, **(state | optimizer_state))
    if on_epoch_end is not None:
        on_epoch_end(row)


def fit(
    cfg: FitConfig,
    augment: AugmentConfig,
    spec: ModelSpec,
    data: TrainingData,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    out_dir: Path,
    resume: bool = False,
    aux_seg_weight: float = 0.0,
    on_epoch_end: Callable[[dict], None] | None = None,
    pretrained: bool = True,
) -> FitResult:
    """Train on `train_idx`, select on `val_idx`; checkpoints go to `out_dir`."""
    rank = current()
    device = rank_device(resolve_device(cfg.device), rank)
    torch.manual_seed(cfg.seed)
    model = DefectClassifier(spec, pretrained=pretrained).to(device, memory_format=torch.channels_last)
    loss_fn = classification_loss(cfg, data.labels[train_idx], len(spec.classes)).to(device)
    transform = build_augmentation(augment)
    total_epochs = cfg.warmup_epochs + cfg.epochs
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    state, saved = _resume(model, last_path, resume, total_epochs, rank)

    optimizer = scheduler = phase = stepped = None
    speeds = []
    while state["epoch"] < total_epochs and state["bad_epochs"] < cfg.early_stopping_patience:
        frozen = state["epoch"] < cfg.warmup_epochs
        loader = make_loader(data, train_idx, transform, cfg, device, state["epoch"], rank)
        _set_phase(model, frozen, cfg)
        # a new phase, or a restart, gets a fresh optimiser and schedule (and DDP wrapper)
        if phase != frozen:
            optimizer, scheduler = _phase_optimizer(model, cfg, frozen, len(loader), saved, state)
            stepped, phase = trainable(model, rank, device), frozen
        torch.manual_seed(cfg.seed * 1000 + state["epoch"] + 7919 * rank.rank)

        trained = _train_epoch(stepped, loader, loss_fn, optimizer, scheduler, device, aux_seg_weight, cfg.max_grad_norm, rank)  # fmt: skip
        speeds.append(trained[0] / trained[2])
        score, predicted = _validate(model, data, val_idx, device, cfg.batch_size, rank)
        row, improved = _record(state, score, frozen, trained, scheduler.get_last_lr()[0])
        reason = _collapse(state, predicted, data.labels[val_idx], frozen, cfg)
        restarted = bool(reason) and not improved and _restart(model, best_path, state, cfg, reason)
        if restarted:  # the rest of the fine-tune: a new optimiser at the lowered rates
            phase = saved = None
        if rank.main:
            _report(row, improved, total_epochs, trained[2])
            kept = {} if restarted else {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "frozen": frozen}  # fmt: skip
            _save(model, state, (best_path, last_path) if improved else (last_path,), on_epoch_end, row, kept)

    if state["best_epoch"] < 0 and rank.main:  # zero epochs asked for: the pretrained start is the model
        save_checkpoint(best_path, model, **state)
    barrier(rank)  # the files exist before any rank returns
    mean_speed = float(np.mean(speeds)) if speeds else 0.0
    return FitResult(best_path, last_path, state["best_epoch"] + 1, state["best_score"], state["history"], mean_speed, str(device))  # fmt: skip
