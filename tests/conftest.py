"""Shared fixtures: small real data copied from the shipped sets, offline settings, one Prefect harness.

Tests never modify data/ in the repository: anything that quarantines or edits files works on
a copy under pytest's tmp_path.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flows.settings import apply_offline_defaults

apply_offline_defaults()

REPO = Path(__file__).resolve().parents[1]
TILES = REPO / "data" / "magnetic_tiles"
CWRU = REPO / "data" / "cwru_bearings"
CLASSES = ["MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Free", "MT_Uneven"]


def copy_tile_subset(target: Path, per_class: int) -> Path:
    """The first `per_class` images (with masks) of every class, in the shipped folder layout."""
    for class_dir in sorted(TILES.glob("MT_*")):
        out = target / class_dir.name / "Imgs"
        out.mkdir(parents=True, exist_ok=True)
        for image in sorted((class_dir / "Imgs").glob("*.jpg"))[:per_class]:
            shutil.copy2(image, out / image.name)
            shutil.copy2(image.with_suffix(".png"), out / image.with_suffix(".png").name)
    return target


@pytest.fixture(scope="session")
def tile_subset_master(tmp_path_factory) -> Path:
    return copy_tile_subset(tmp_path_factory.mktemp("tiles") / "tiles", per_class=18)


@pytest.fixture
def tile_subset(tile_subset_master: Path, tmp_path: Path) -> Path:
    """A private copy per test (checks may move files into quarantine)."""
    return Path(shutil.copytree(tile_subset_master, tmp_path / "tiles"))


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for the whole session (about 9 s to start).

    The harness waits 30 s for its server unless told otherwise; on 2 busy cores it took longer and
    every Prefect test errored. None: use the flows' own wait (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS).
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=None):
        yield
