"""Stage function `assign_split`: add the tile-grouped train/val/test column to a checked manifest.

The test part is a *frozen evaluation set*: written on the first run for a data set
(`<frozen_test_dir>/<product line>.csv`, relative paths; the line is the data set's name unless declared) and reused by every later run, so all
models of one line are compared on the same held-out tiles and none ever trains on them. The
promotion gate scores candidate and champion on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataError
from training.images.config import SplitConfig
from training.images.split import Split, check_disjoint, grouped_holdout, split_off


def read_split_manifest(path: Path) -> pd.DataFrame:
    """A manifest written by the prepare stage (with its `split` column), as it was: empty cells
    stay empty strings, and a missing mask is None again."""
    manifest = pd.read_csv(path, keep_default_na=False)
    manifest["mask_path"] = manifest["mask_path"].replace("", None)
    return manifest


def frozen_test_path(cfg: SplitConfig, dataset_name: str) -> Path | None:
    return cfg.frozen_test_dir / f"{dataset_name}.csv" if cfg.frozen_test_dir else None


def _split_with_frozen_test(manifest: pd.DataFrame, frozen: pd.DataFrame, cfg: SplitConfig) -> Split:
    labels, groups = manifest["label"].to_numpy(), manifest["group"].to_numpy()
    listed = manifest["relpath"].isin(set(frozen["relpath"])).to_numpy()
    if not listed.any():
        raise DataError(
            "the frozen evaluation set shares no image with this data set; point split.frozen_test_dir elsewhere or delete the file to start a new one"
        )
    test = np.flatnonzero(np.isin(groups, groups[listed]))  # whole parts: a tile's other views go to test too
    rest = np.setdiff1d(np.arange(len(manifest)), test)
    train, val = split_off(rest, labels, groups, cfg.val_fraction, cfg.seed)
    return check_disjoint(Split(np.sort(train), np.sort(val), test), groups)


def assign_split(manifest: pd.DataFrame, cfg: SplitConfig, dataset_name: str) -> pd.DataFrame:
    """Copy of `manifest` with `split` in {train, val, test}; a group never spans two parts."""
    frozen_file = frozen_test_path(cfg, dataset_name)
    if frozen_file is not None and frozen_file.exists():
        split = _split_with_frozen_test(manifest, pd.read_csv(frozen_file), cfg)
    else:
        split = grouped_holdout(manifest["label"].to_numpy(), manifest["group"].to_numpy(), cfg)
        if frozen_file is not None:
            frozen_file.parent.mkdir(parents=True, exist_ok=True)
            manifest.iloc[split.test][["relpath", "label"]].to_csv(frozen_file, index=False)
    column = np.empty(len(manifest), dtype=object)
    for name in ("train", "val", "test"):
        column[getattr(split, name)] = name
    return manifest.assign(split=column)
