"""A line manager moves the reject threshold without retraining: a new version, gated, recorded in the
history, and the devices' decisions change on their next pull."""

from __future__ import annotations

import mlflow
import pytest
from typer.testing import CliRunner

from core.card import read_card
from core.errors import RegistryError
from device.client import EdgeClient
from device.images import predict_files
from edge.devices import DeviceStore
from edge.server import EdgeSettings, create_app
from flows.cli.main import app as cli
from registry.artifacts import shipped_file
from registry.lifecycle import CHAMPION, alias_version, history, promote
from registry.references import log_reference, reference_loader
from registry.threshold import set_threshold
from tests.fixtures.models import LENIENT, approve_for_test, register_exports
from tests.fixtures.servers import live_server

pytestmark = pytest.mark.slow
MODEL = "tiles"


@pytest.fixture
def line(exported_pair, registry_store, tmp_path):
    """v1 (with its frozen set) champion, a live edge server, one enrolled device."""
    reports, manifest = exported_pair
    cfg, client = registry_store
    [v1] = register_exports(reports[:1], manifest=manifest)
    approve_for_test(client, MODEL, v1)
    promote(client, MODEL, v1, "user:test", None)
    settings = EdgeSettings(state_dir=tmp_path / "edge", tracking_uri=cfg.tracking_uri, alias_ttl_s=0.0)
    with live_server(create_app(settings)) as url:
        token = DeviceStore(settings.devices_path).enroll("press-1", "all")
        device = EdgeClient(url, token, settings.public_key_path.read_bytes(), tmp_path / "press-1")
        yield {
            "client": client,
            "v1": v1,
            "device": device,
            "images": manifest["path"].tolist()[:12],
            "cfg": cfg,
        }


def test_set_threshold_changes_what_devices_decide_after_their_next_pull(line, tmp_path):
    client, v1, device = line["client"], line["v1"], line["device"]
    before, _ = predict_files(device.pull(MODEL).path, line["images"])
    assert not all(v.reject for v in before)  # v1's rule rejects at most 5 % of good validation parts

    change = set_threshold(LENIENT, MODEL, v1, 0.0, "stop every part until the lamp is fixed")

    assert alias_version(client, MODEL, CHAMPION) == change.version != v1
    pulled = device.pull(MODEL)
    assert pulled.changed and pulled.version == change.version
    after, _ = predict_files(pulled.path, line["images"])
    assert all(v.reject for v in after) and "REJECT: defect probability" in after[0].explain()
    card = read_card(pulled.path)
    assert card["decision"]["defect_threshold"] == 0.0
    assert card["decision"]["reject_rule"]["from_version"] == v1
    assert card["metrics"]["operating_point"]["defect_recall"] == 1.0
    moves = [e for e in history(client, MODEL) if e.action == "set-threshold" and e.alias == CHAMPION]
    assert [(m.from_version, m.to_version) for m in moves] == [(v1, change.version)]
    assert moves[0].gate["threshold"]["to"] == 0.0 and "lamp" in moves[0].gate["reason"]
    version = client.get_model_version(MODEL, change.version)
    assert version.tags["shopfloor.threshold_from"] == f"v{v1}" and "same network" in version.description
    # the network is v1's, byte for byte: only the card differs
    original = shipped_file(MODEL, v1, tmp_path / "v1")
    assert read_card(original)["decision"]["defect_threshold"] != 0.0


def test_a_threshold_that_fails_the_gate_is_refused_and_devices_keep_the_champion(line):
    client, v1, device = line["client"], line["v1"], line["device"]
    device.pull(MODEL)
    strict = LENIENT.model_copy(update={"max_false_reject_rate": 0.25})
    with pytest.raises(RegistryError, match="false_reject_rate_at_threshold"):
        set_threshold(strict, MODEL, v1, 0.0, "reject everything")
    assert alias_version(client, MODEL, CHAMPION) == v1
    assert device.pull(MODEL).changed is False


def test_the_cli_shows_the_held_out_table_and_picks_a_row_for_a_false_reject_rate(line):
    runner, uri = CliRunner(), line["cfg"].tracking_uri
    shown = runner.invoke(cli, ["registry", "set-threshold", MODEL, line["v1"], "--tracking-uri", uri])
    assert shown.exit_code == 2 and "good parts rejected" in shown.output and "--threshold T" in shown.output
    no_reason = runner.invoke(cli, ["registry", "set-threshold", MODEL, line["v1"], "--threshold", "0.5", "--tracking-uri", uri])  # fmt: skip
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    unknown = runner.invoke(cli, ["registry", "set-threshold", MODEL, "99", "--threshold", "0.5", "--tracking-uri", uri])  # fmt: skip
    assert unknown.exit_code == 2 and "no version '99'" in unknown.output


def test_the_new_version_keeps_its_sources_monitoring_reference(line):
    """Finding: the new version inherited the tag pointing at `monitoring/reference.json` but not the
    file (it lives with the source's run), so the monitor found no reference for it and drift
    monitoring stopped at the first threshold change."""
    client, v1 = line["client"], line["v1"]
    reference = {"kind": "image-classifier", "items": 3, "floors": {"brightness_ks": 0.5}}
    with mlflow.start_run(run_id=client.get_model_version(MODEL, v1).run_id):
        log_reference(client, MODEL, v1, reference)
    change = set_threshold(LENIENT, MODEL, v1, 0.5, "drift monitoring must go on")
    assert reference_loader(line["cfg"].tracking_uri)(MODEL, change.version) == reference
