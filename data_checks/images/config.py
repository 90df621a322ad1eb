"""Typed settings of the image data checks: light to import (no GX, no image libraries), so the CLI
validates a config in a fraction of a second before anything heavy loads."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.fan_out import FanOut
from data_checks.findings import Severity
from data_checks.images.manifest import GroupBy


class ImageRules(BaseModel):
    """Ranges an image must fall in; defaults are wide enough for real factory cameras."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_side: int = 32
    max_side: int = 8192
    min_aspect: float = 0.2
    max_aspect: float = 5.0
    channels: tuple[int, ...] = (1, 3)
    modes: tuple[str, ...] = ("L", "RGB")
    # None: set from the data set's own spread (data_checks.images.thresholds); a number: that bound
    min_brightness: float | None = None  # mean grey level
    max_brightness: float | None = None
    min_contrast: float | None = None  # grey-level standard deviation
    min_blur: float | None = None  # variance of the Laplacian
    outlier_spread: float = Field(6.0, gt=0)  # robust standard deviations (log scale) from the median
    min_per_class: int = 10
    severity: dict[str, Severity] = {}  # rule -> severity, overriding image_suite.DEFAULT_SEVERITY


class DuplicateConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Unset (None): these fixed values, or less on a data set whose images all look alike at thumbnail
    # size (data_checks.images.duplicates.thresholds); set: used as given.
    view_distance: float | None = Field(None, gt=0, lt=2)  # 1 - correlation where the linkage tree is cut
    copy_distance: float | None = Field(None, ge=0, lt=2)  # near-copy: thumbnails correlate >= 0.998 ...
    copy_brightness: float = Field(4.0, ge=0)  # ... and mean grey levels within this: the same shot
    max_images: int = Field(20000, ge=2)  # the distance matrix is N x N; beyond this, split the data


class ChecksConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: tuple[str, ...] | None = None  # the known class set; None = whatever folders exist
    group_by: GroupBy = GroupBy.AUTO
    frame_gap: int = Field(100, ge=1)
    rules: ImageRules = ImageRules()
    duplicates: DuplicateConfig = DuplicateConfig()
    max_error_fraction: float = Field(0.05, ge=0, le=1)
    stop_on_error: bool = True  # False: data-set level errors are logged and the flow goes on
    quarantine_dir: Path = Path("quarantine")
    # "exclude": bad files stay in the data folder, the run trains without them, the store keeps a copy;
    # "move": they are taken out of the data folder too (refused on a DVC-tracked folder)
    quarantine_mode: Literal["exclude", "move"] = "exclude"
    cache_dir: Path = Path(".shopfloor/cache")
    # Decoding and measuring the uncached images, on Dask workers when on (`--set checks.fan_out.workers=2`);
    # off by default: on the 1,344 tiles the plain loop takes ~2 s and 2 local workers ~8 s, start included
    # (benchmarks/results/image_checks_fan_out.json); it pays on data sets many times larger
    fan_out: FanOut = FanOut()
