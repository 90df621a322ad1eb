"""One store holding a vibration champion (the flow's) and an image champion, its live edge server and one
enrolled device: what the device tests pull from."""

from __future__ import annotations

import mlflow
import pytest

from edge.devices import DeviceStore
from edge.guard import RateLimits
from edge.server import EdgeSettings, create_app
from registry.lifecycle import promote
from tests.fixtures.models import approve_for_test, register_exports
from tests.fixtures.servers import live_server


@pytest.fixture(scope="module")
def fleet(vibration_runs, exported_pair, tmp_path_factory):
    """One store holding a vibration champion (the flow's) and an image champion; its edge server; one device."""
    _, _, _, root = vibration_runs
    uri = f"sqlite:///{root}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    if (
        mlflow.get_experiment_by_name("tiles-for-devices") is None
    ):  # artifacts beside the store, not in the repository
        mlflow.create_experiment("tiles-for-devices", artifact_location=str(root / "mlruns-devices"))
    mlflow.set_experiment("tiles-for-devices")
    [version] = register_exports(exported_pair[0][:1], "tiles")
    approve_for_test(mlflow.MlflowClient(), "tiles", version)
    promote(mlflow.MlflowClient(), "tiles", version, "test", None)
    device_dir = tmp_path_factory.mktemp("device")
    limits = RateLimits(
        per_address_per_s=10_000, per_token_per_s=10_000
    )  # tests check every file, not every minute
    settings = EdgeSettings(state_dir=device_dir / "edge-server", tracking_uri=uri, limits=limits)
    with live_server(create_app(settings)) as url:
        store = DeviceStore(settings.devices_path)
        token = store.enroll("gateway-1")
        yield {
            "url": url,
            "token": token,
            "key": settings.public_key_path,
            "dir": device_dir,
            "uri": uri,
            "settings": settings,
            "devices": store,
            "tiles_version": version,
        }
