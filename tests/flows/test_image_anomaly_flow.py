"""`train image-anomaly` end to end on real tiles (small settings): a model from good parts only, registered
as the line's own, anomaly maps in MLflow, the line's classifier beside it, and a device that pulls and
runs it; and a line with no labelled defect at all."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from core.card import IMAGE_ANOMALY, read_card
from flows.images.anomaly import train_image_anomaly
from registry.config import ImageAnomalyPromotionConfig
from registry.image_anomaly import NO_DEFECTS, gate_image_anomaly
from tests.fixtures.data import TILES

pytestmark = pytest.mark.slow

SMALL = [
    "model.image_size=96", "model.coreset_fraction=0.25", "split.test_fraction=0.25", "split.val_fraction=0.25",
    "checks.rules.min_per_class=5",
]  # fmt: skip
LENIENT = ["promotion.max_false_reject_rate=1", "promotion.min_defect_recall=0", "promotion.min_auroc=0"]


def store_settings(root: Path) -> list[str]:
    return [f"tracking.tracking_uri=sqlite:///{root}/mlflow.db", f"work_dir={root}/runs",
            f"checks.quarantine_dir={root}/quarantine", f"checks.cache_dir={root}/cache"]  # fmt: skip


def run_in(root: Path, data: Path, settings: list[str], device: str | None = None):
    cwd = os.getcwd()
    os.chdir(root)  # MLflow puts artifacts beside the store's working folder; frozen test sets under data/
    try:
        return train_image_anomaly(str(data), None, settings, device=device, state=str(root / "edge"))
    finally:
        os.chdir(cwd)
        mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")


def register_line_classifier(root: Path, exported_pair) -> None:
    """The tile line's classifier champion in the same store (the fixture's tiny network)."""
    from registry.lifecycle import promote
    from registry.lines import LINE_TAG
    from tests.fixtures.models import approve_for_test, register_exports

    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    mlflow.set_experiment(
        experiment_id=mlflow.create_experiment("classifier", artifact_location=str(root / "mlruns-c"))
    )
    [version] = register_exports(exported_pair[0][:1], "tiles-classifier")
    client = mlflow.MlflowClient()
    client.set_registered_model_tag("tiles-classifier", LINE_TAG, "tiles")
    approve_for_test(client, "tiles-classifier", version)
    promote(client, "tiles-classifier", version, "test", None)


@pytest.fixture(scope="module")
def anomaly_run(prefect_harness, tile_subset_master, exported_pair, tmp_path_factory):
    root = tmp_path_factory.mktemp("image-anomaly")
    data = Path(shutil.copytree(tile_subset_master, root / "tiles"))
    register_line_classifier(root, exported_pair)
    summary = run_in(
        root, data, SMALL + LENIENT + store_settings(root), device="camera-7"
    )  # as a drift event starts it
    return summary, root, data


def test_a_model_from_good_parts_is_the_lines_own_with_its_maps_and_the_classifier_beside(anomaly_run):
    summary, root, _ = anomaly_run
    client = mlflow.MlflowClient()
    assert (summary.model_name, summary.model_version, summary.promoted) == ("tiles-anomaly", "1", True)
    registered = client.get_registered_model("tiles-anomaly")
    assert registered.tags["product_line"] == "tiles" and registered.tags["kind"] == IMAGE_ANOMALY
    run = client.get_run(summary.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["good_class"] == "MT_Free"
    for key in ("test_auroc", "test_defect_recall", "test_false_reject_rate", "val_false_reject_rate",
                "onnx_test_auroc", "classifier_test_defect_recall", "classifier_test_false_reject_rate"):  # fmt: skip
        assert key in run.data.metrics, key
    artifacts = [a.path for a in client.list_artifacts(summary.run_id, "evaluation/anomaly_maps")]
    assert any("caught_defect" in a for a in artifacts) and all(a.endswith(".png") for a in artifacts)
    assert client.list_artifacts(summary.run_id, "evaluation/test_scores.png") or any(
        a.path.endswith("test_scores.png") for a in client.list_artifacts(summary.run_id, "evaluation")
    )
    # only good training images built the bank; the threshold is the card's, set on validation good parts
    card = read_card(Path(summary.onnx_path))
    manifest = pd.read_csv(root / "runs" / summary.run_id / "checks" / "manifest_split.csv")
    train_good = ((manifest["split"] == "train") & (manifest["label"] == "MT_Free")).sum()
    assert card["kind"] == IMAGE_ANOMALY and card["model"]["good_training_images"] == train_good
    assert card["decision"]["threshold"] == pytest.approx(summary.threshold)
    assert (
        root / "data" / "frozen_eval" / "tiles.csv"
    ).exists()  # the line's frozen test parts, as the classifier's
    page = client.get_model_version("tiles-anomaly", "1").description
    assert "Beside it: the line's classifier tiles-classifier v1" in page and "Promotion gate" in page
    # started by a drift event of camera-7 (flows.monitor.deployments): the new version goes there first
    from edge.devices import DeviceStore

    assert DeviceStore(root / "edge" / "devices.db").canaries("tiles-anomaly", "1") == {"camera-7"}


def test_a_device_pulls_the_anomaly_model_and_says_where_a_part_looks_wrong(anomaly_run, tmp_path):
    from device.agent import Agent, AgentConfig
    from device.client import EdgeClient
    from device.images import predict_files
    from edge.devices import DeviceStore
    from edge.guard import RateLimits
    from edge.server import EdgeSettings, create_app
    from edge.telemetry import TelemetryStore
    from tests.fixtures.servers import live_server

    _, root, _ = anomaly_run
    images = sorted((TILES / "MT_Free" / "Imgs").glob("*.jpg"))[-2:] + sorted((TILES / "MT_Blowhole" / "Imgs").glob("*.jpg"))[-2:]  # fmt: skip
    (tmp_path / "inbox").mkdir()
    for path in images:
        shutil.copy2(path, tmp_path / "inbox" / path.name)
    limits = RateLimits(per_address_per_s=10_000, per_token_per_s=10_000)
    settings = EdgeSettings(
        state_dir=tmp_path / "server", tracking_uri=f"sqlite:///{root}/mlflow.db", limits=limits
    )
    with live_server(create_app(settings)) as url:
        token = DeviceStore(settings.devices_path).enroll("camera-1")
        client = EdgeClient(url, token, settings.public_key_path.read_bytes(), tmp_path / "models")
        cfg = AgentConfig("tiles-anomaly", tmp_path / "models", tmp_path / "outbox.jsonl", tmp_path / "state",
                          tmp_path / "inbox", check_every_s=0.0, window_items=4)  # fmt: skip
        assert Agent(cfg, client).run(stop_when_idle=True) == 4
    results = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    scored = [r for r in results if r["type"] == "result"]
    assert len(scored) == 4 and all("error" not in r for r in scored)
    for result in scored:
        assert result["reject"] == (result["score"] > result["threshold"]) and len(result["hotspot"]) == 2
    [window] = [w.window for _, w in TelemetryStore(settings.telemetry_path).windows("tiles-anomaly")]
    assert window.kind == IMAGE_ANOMALY and window.items == 4 and len(window.image_stats["brightness"]) == 4
    # on a workstation or the device's shell: the verdicts in words and the maps as pictures
    installed = next((tmp_path / "models").rglob("model.onnx"))
    verdicts, errors = predict_files(installed, [str(p) for p in images], tmp_path / "maps")
    on_device = {r["file"]: r["score"] for r in scored}
    assert not errors and [v.score for v in verdicts] == pytest.approx(
        [on_device[p.name] for p in images], rel=1e-4
    )
    assert len(list((tmp_path / "maps").glob("*_map.png"))) == 4


def test_a_line_with_no_labelled_defect_gets_a_model_from_good_parts(prefect_harness, tmp_path):
    data = tmp_path / "new_line"
    shutil.copytree(TILES / "MT_Free" / "Imgs", data / "good", ignore=shutil.ignore_patterns("*.png"))
    for extra in sorted((data / "good").glob("*.jpg"))[24:]:
        extra.unlink()
    summary = run_in(tmp_path, data, SMALL + store_settings(tmp_path))
    assert summary.model_name == "new_line-anomaly" and summary.test_defect_recall is None
    gate = json.loads(mlflow.MlflowClient().get_model_version("new_line-anomaly", "1").tags["gate_report"])
    unmeasured = [c for c in gate["checks"] if c["value"] is None]
    assert {c["name"] for c in unmeasured} == {"defect_recall", "auroc"} and all(
        c["passed"] for c in unmeasured
    )


def test_the_gate_judges_false_rejects_and_says_what_it_could_not_measure():
    cfg = ImageAnomalyPromotionConfig()
    good_only = gate_image_anomaly(cfg, {"onnx_test_false_reject_rate": 0.05})
    assert good_only.passed and {c.detail for c in good_only.checks if c.value is None} == {NO_DEFECTS}
    worse = gate_image_anomaly(cfg, {"onnx_test_false_reject_rate": 0.2, "onnx_test_defect_recall": 0.5,
                                     "onnx_test_auroc": 0.9})  # fmt: skip
    assert [f.split(":")[0] for f in worse.failures()] == ["false_reject_rate"]
    assert not gate_image_anomaly(cfg, {"onnx_test_false_reject_rate": float("nan")}).passed


def test_the_cli_refuses_a_missing_folder_and_an_undeclared_good_class_in_one_line(tmp_path):
    from flows.cli.main import app

    runner = CliRunner()
    missing = runner.invoke(app, ["train", "image-anomaly", "--data", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    wrong = runner.invoke(app, ["train", "image-anomaly", "--data", str(TILES), "--good", "OK", "--set",
                                f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db"])  # fmt: skip
    assert wrong.exit_code == 2 and "OK" in wrong.output
    remote = runner.invoke(app, ["train", "image-anomaly", "--data", str(TILES), "--remote"],
                           env={"PREFECT_API_URL": ""})  # fmt: skip
    assert remote.exit_code == 2 and "--remote needs the team stack" in remote.output


def test_the_version_carries_a_reference_that_flags_a_darker_camera_and_not_its_own_parts(anomaly_run):
    """Drift monitoring of an image anomaly model: held-out windows stay unflagged; a lamp that dims the
    images by 40 % moves the brightness beyond its floor (monitor.detect, as the monitor cycle runs it)."""
    from edge.telemetry import TelemetryWindow
    from monitor.detect import Rules, assess, correct
    from registry.references import reference_loader

    summary, root, _ = anomaly_run
    reference = reference_loader(f"sqlite:///{root}/mlflow.db")("tiles-anomaly", "1")
    assert reference["kind"] == IMAGE_ANOMALY and {"score_ks", "brightness_ks"} <= set(reference["floors"])
    n = min(16, reference["items"])
    same = {
        "scores": reference["scores"][:n],
        "image_stats": {k: v[:n] for k, v in reference["image_stats"].items()},
    }
    darker = same | {
        "image_stats": same["image_stats"]
        | {"brightness": [0.6 * b for b in same["image_stats"]["brightness"]]}
    }
    windows = [TelemetryWindow(window_id=f"w{i}", model="tiles-anomaly", version="1", kind=IMAGE_ANOMALY, started="s",
                               ended="e", items=n, alarms=0, **data) for i, data in enumerate((same, darker))]  # fmt: skip
    rules = Rules()
    assessments = [assess("camera-1", w, reference, rules) for w in windows]
    correct(assessments, {("tiles-anomaly", "1"): reference}, rules)
    assert [a.flagged for a in assessments] == [False, True] and "brightness_ks" in assessments[1].causes


def test_a_line_manager_sets_the_threshold_on_good_images_of_their_own_camera(anomaly_run, tmp_path):
    """Finding (ball screws): a threshold set on good parts of the validation camera position rejected 52 %
    of good parts of other positions. The remedy, without retraining: a new version whose threshold is
    set on good images of the line's own camera, re-measured on the frozen test parts, gated, champion,
    and still monitored (its reference's alarm rate at the new threshold)."""
    from core.card import read_card
    from flows.cli.main import app
    from registry.artifacts import shipped_file
    from registry.image_anomaly import score_file
    from registry.lifecycle import CHAMPION, alias_version
    from registry.references import reference_loader

    _, root, _ = anomaly_run
    uri, runner = f"sqlite:///{root}/mlflow.db", CliRunner()
    own = tmp_path / "own_camera"
    own.mkdir()
    for path in sorted((TILES / "MT_Free" / "Imgs").glob("*.jpg"))[:24]:
        shutil.copy2(path, own / path.name)
    (tmp_path / "lenient.yaml").write_text(
        "promotion: {max_false_reject_rate: 1, min_defect_recall: 0, min_auroc: 0}\n"
    )
    base = ["registry", "set-threshold", "tiles-anomaly", "1", "--tracking-uri", uri]
    asked = runner.invoke(app, base + ["--false-reject-rate", "0"])
    assert asked.exit_code == 2 and "--good-images DIR" in asked.output
    negative = runner.invoke(app, base + ["--threshold", "-1", "--reason", "typo"])
    assert negative.exit_code == 2 and "an anomaly score, 0 or more" in negative.output
    done = runner.invoke(app, base + ["--false-reject-rate", "0", "--good-images", str(own), "--reason",
                                      "camera moved to station 2", "--config", str(tmp_path / "lenient.yaml")])  # fmt: skip
    assert done.exit_code == 0, done.output

    new = alias_version(mlflow.MlflowClient(), "tiles-anomaly", CHAMPION)
    assert new != "1"
    card = read_card(shipped_file("tiles-anomaly", new, tmp_path / "new"))
    own_scores = score_file(
        shipped_file("tiles-anomaly", "1", tmp_path / "v1"), [str(p) for p in sorted(own.iterdir())]
    )
    assert card["decision"]["threshold"] == pytest.approx(float(own_scores.max()))
    assert card["decision"]["reject_rule"]["chosen_on"].startswith(f"24 good images in {own}")
    old = read_card(shipped_file("tiles-anomaly", "1", tmp_path / "old"))
    if (
        card["decision"]["threshold"] > old["decision"]["threshold"]
    ):  # a higher bar rejects no more good parts
        assert card["metrics"]["onnx_test_false_reject_rate"] <= old["metrics"]["onnx_test_false_reject_rate"]
    reference = reference_loader(uri)("tiles-anomaly", new)
    assert reference["threshold"] == card["decision"]["threshold"]
    assert reference["alarm_rate"] == pytest.approx(
        float((pd.Series(reference["scores"]) > reference["threshold"]).mean())
    )
