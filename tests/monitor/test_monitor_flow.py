"""The Prefect flow `monitor-drift` on a real store: one MLflow run per cycle with its HTML report,
and a drift event for the device that newly entered drift."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from edge.telemetry import TelemetryStore
from registry.references import log_reference
from tests.fixtures.models import register_exports
from tests.monitor.test_cycle import images, window

pytestmark = pytest.mark.slow


def test_a_cycle_is_an_mlflow_run_with_a_report_and_drift_raises_an_event(
    prefect_harness, exported_pair, registry_store, tmp_path
):
    from edge.samples import SampleStore
    from flows.monitor.flow import monitor_drift
    from monitor.reference import ImageItems, image_reference

    cfg, client = registry_store
    [version] = register_exports(exported_pair[0][:1])
    proba, embeddings, stats = images(600, np.random.default_rng(0))
    reference = image_reference(ImageItems(proba, embeddings, stats, proba.argmax(1)))
    with mlflow.start_run(run_id=client.get_model_version("tiles", version).run_id):
        log_reference(client, "tiles", version, reference)
    telemetry, rng = TelemetryStore(tmp_path / "edge" / "telemetry.db"), np.random.default_rng(1)
    summaries = []
    for cycle in range(4):
        for device in range(6):
            w = window(rng, cycle * 10 + device, 125.0 if device == 3 else 100.0).model_copy(
                update={"version": version}
            )
            telemetry.add(f"cam-{device}", w)
        summaries.append(monitor_drift(str(tmp_path / "edge"), cfg.tracking_uri, 0.01))
    assert [s.windows for s in summaries] == [6, 6, 6, 6]
    assert summaries[-1].drift == ["cam-3/tiles"] and sum(s.events for s in summaries) == 1
    runs = mlflow.search_runs(experiment_names=["drift-monitoring"], output_format="list")
    assert len(runs) == 4
    latest = max(runs, key=lambda r: r.info.start_time)
    assert latest.data.metrics["drift.cam-3.tiles"] == 1.0 and latest.data.metrics["drift.cam-0.tiles"] == 0.0
    wanted = SampleStore(tmp_path / "edge" / "samples")  # the camera is asked for the window that tipped it
    tipped = next(cycle for cycle, s in enumerate(summaries) if s.events)
    assert wanted.pending("cam-3") == [f"w{tipped * 10 + 3:04d}"]
    assert wanted.pending("cam-0") == []
    assert any(
        a.path == "monitoring/drift_report.html"
        for a in client.list_artifacts(latest.info.run_id, "monitoring")
    )


def test_cycles_never_overlap_and_each_retraining_runs_alone():
    """CI finding (closed loop on a slow machine): a cycle that outlasts its interval must not run beside
    the next one, which would judge the same new windows again."""
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    from flows.monitor.config import LoopConfig
    from flows.monitor.deployments import loop_deployments

    monitor, *retrain = loop_deployments(LoopConfig(every_s=10))
    for deployment in (monitor, *retrain):
        assert deployment.concurrency_limit == 1
        assert deployment.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW


def test_each_image_product_line_retrains_its_own_model_on_its_own_data():
    """Issue 26: with two lines in one store, a drift of the ball-screw model must retrain the ball-screw
    model on the ball-screw data (there was one image target: every image drift retrained the tiles)."""
    import pytest
    from pydantic import ValidationError

    from flows.monitor.config import LoopConfig, RetrainTarget
    from flows.monitor.deployments import loop_deployments

    lines = (RetrainTarget(model="defect-classifier", data="data/magnetic_tiles"),
             RetrainTarget(model="ball_screw-defects", data="data/ball_screw/ball_screw.csv", overrides=("fit.epochs=4",)))  # fmt: skip
    _, vibration, tiles, screws = loop_deployments(LoopConfig(images=lines))
    assert (tiles.name, screws.name) == ("on-drift", "on-drift-ball_screw-defects")
    for deployment, model, data in ((tiles, "defect-classifier", "data/magnetic_tiles"),
                                    (screws, "ball_screw-defects", "data/ball_screw/ball_screw.csv")):  # fmt: skip
        [trigger] = deployment.triggers
        assert trigger.match["shopfloor.model"] == [model] and trigger.parameters["data"] == data
        assert trigger.parameters["overrides"][0] == f"tracking.model_name={model}"
    assert trigger.parameters["overrides"][1:] == ["fit.epochs=4"]  # the target's own come after
    assert (
        LoopConfig.model_validate({"images": {"model": "m", "data": "d"}}).images[0].model == "m"
    )  # one mapping
    with pytest.raises(ValidationError, match="one retraining target per registered model"):
        LoopConfig(images=(lines[0], lines[0]))


def test_a_drift_of_an_image_anomaly_model_retrains_it_with_its_own_flow():
    """A line's image anomaly model drifts (its windows are judged like the classifier's): the retraining
    its event starts is the image anomaly flow, with the drifted device to receive the new version first."""
    from flows.monitor.config import LoopConfig, RetrainTarget
    from flows.monitor.deployments import loop_deployments

    lines = (RetrainTarget(model="defect-classifier", data="data/magnetic_tiles"),
             RetrainTarget(model="tiles-anomaly", data="data/magnetic_tiles", kind="image-anomaly"))  # fmt: skip
    _, _, classifier, anomaly = loop_deployments(LoopConfig(images=lines))
    assert (classifier.flow_name, anomaly.flow_name) == ("train-defect-classifier", "train-image-anomaly")
    [trigger] = anomaly.triggers
    assert trigger.match["shopfloor.model"] == ["tiles-anomaly"]
    assert trigger.parameters["device"] == "{{ event.payload.device }}" and "state" in trigger.parameters
    assert trigger.parameters["overrides"] == ["tracking.model_name=tiles-anomaly"]
