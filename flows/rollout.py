"""The one rollout step a training flow takes itself: a version retrained for a drifted device goes
to that device first. Everything else about rollout is the edge server's (edge.devices, edge.catalog)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE


@task(name="canary-first", cache_policy=NO_CACHE)
def canary_first(version, device: str, state: Path) -> None:
    """Run before the gate may promote `version`: once it is champion, `device` gets it at once and
    the rest of the fleet when it is rolled out to all. A version the gate refuses never ships."""
    from edge.devices import DeviceStore

    DeviceStore(state / "devices.db").add_canaries(version.name, version.version, [device])
