"""Image properties fanned out over Dask (checks.fan_out) equal the plain loop's, row for row.

On real tiles with a truncated file among them (its decode-error row) and a half-warm cache; the
whole gate on a running cluster (checks.fan_out.address) gives the plain gate's result. No Dask
process outlives a check, and the check leaves this process's environment as it found it.
"""

from __future__ import annotations

import os

import pandas as pd
import psutil
import pytest

import core.fan_out
from core.config import load_config
from core.errors import ConfigError
from core.fan_out import FanOut, dask_scope, local_cluster_options
from data_checks.images.config import ChecksConfig
from data_checks.images.gate import check_image_dataset
from data_checks.images.properties import compute_image_properties
from tests.data_checks.test_gate import make_bad_corpus
from tests.fixtures.data import CLASSES

CACHE_FILE = "image_properties_v2.parquet"


def _children() -> dict[int, str]:
    """This process's descendants, less multiprocessing's resource tracker (it lives as long as we do)."""
    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            found[child.pid] = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
    return {pid: line for pid, line in found.items() if "resource_tracker" not in line}


@pytest.fixture(scope="module")
def dask_address(prefect_harness):
    """A running 2-worker cluster, as a team would point checks.fan_out.address at one."""
    from distributed import LocalCluster

    before, environ = _children(), dict(os.environ)
    with dask_scope(), LocalCluster(**local_cluster_options(2)) as cluster:
        yield cluster.scheduler_address
    assert dict(os.environ) == environ
    assert _children().keys() <= before.keys(), "Dask processes outlived their cluster"


def test_two_local_workers_measure_what_the_plain_loop_measures(tile_subset, tmp_path, prefect_harness):
    crack = sorted((tile_subset / "MT_Crack" / "Imgs").glob("*.jpg"))
    crack[3].write_bytes(crack[3].read_bytes()[:500])  # truncated in the middle of the input order
    paths = sorted(str(p) for p in tile_subset.rglob("*.jpg"))
    plain = compute_image_properties(paths, tmp_path / "plain")
    assert not plain.set_index("path").loc[str(crack[3]), "decodable"]

    compute_image_properties(paths[::2], tmp_path / "fan")  # half of the rows come from the cache
    before, environ = _children(), dict(os.environ)
    fanned = compute_image_properties(paths, tmp_path / "fan", FanOut(workers=2))

    pd.testing.assert_frame_equal(fanned, plain)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "fan" / CACHE_FILE), pd.read_parquet(tmp_path / "plain" / CACHE_FILE)
    )
    assert _children().keys() <= before.keys(), "Dask processes outlived the check"
    assert dict(os.environ) == environ


def test_a_warm_cache_starts_no_cluster(tile_subset, tmp_path, monkeypatch):
    paths = sorted(str(p) for p in tile_subset.rglob("*.jpg"))
    plain = compute_image_properties(paths, tmp_path)
    monkeypatch.setattr(core.fan_out, "_task_runner", lambda cfg: pytest.fail("a cluster was started"))
    pd.testing.assert_frame_equal(compute_image_properties(paths, tmp_path, FanOut(workers=2)), plain)


def test_the_gate_on_a_running_cluster_gives_the_plain_gate_result(tile_subset, tmp_path, dask_address):
    make_bad_corpus(tile_subset)
    results = {}
    for name, fan_out in {"plain": FanOut(), "dask": FanOut(address=dask_address)}.items():
        cfg = ChecksConfig(classes=tuple(CLASSES), quarantine_dir=tmp_path / name / "quarantine",
                           cache_dir=tmp_path / name / "cache", max_error_fraction=0.2, fan_out=fan_out)  # fmt: skip
        results[name] = check_image_dataset(cfg, tile_subset, tmp_path / name / "out")
    plain, dask = results["plain"], results["dask"]

    pd.testing.assert_frame_equal(dask.manifest, plain.manifest)
    pd.testing.assert_frame_equal(dask.properties, plain.properties)
    assert dask.findings == plain.findings and dask.fingerprint == plain.fingerprint
    assert (dask.duplicates.part_group == plain.duplicates.part_group).all()
    assert [(q.original, q.rules, q.reason) for q in dask.quarantined] == [
        (q.original, q.rules, q.reason) for q in plain.quarantined
    ]
    assert len(plain.quarantined) >= 7  # the planted bad files did reach the comparison


def test_fan_out_is_set_from_the_command_line():
    cfg = load_config(ChecksConfig, None, ["fan_out.workers=2"])
    assert cfg.fan_out == FanOut(workers=2) and ChecksConfig().fan_out.enabled is False
    with pytest.raises(ConfigError, match="not both"):
        load_config(ChecksConfig, None, ["fan_out.workers=2", "fan_out.address=tcp://10.0.0.5:8786"])
