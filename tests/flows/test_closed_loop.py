"""Issue 23's closed loop, for real (benchmarks/closed_loop.py holds the scenario): a Prefect server,
`shopfloor monitor serve`, the edge server and two device agents as separate process groups; a
5 % gain change on one device -> telemetry -> monitor cycle -> drift event -> automation -> retraining
run on that device's alarm-free windows -> new version registered and gated -> that device (only)
runs it. The figures (event to retraining start, ...) go to RESULTS.md from the benchmark's run."""

from __future__ import annotations

import psutil
import pytest

from benchmarks.closed_loop import run_loop

pytestmark = pytest.mark.slow


def test_drift_on_one_device_retrains_and_the_new_version_reaches_that_device_only(tmp_path):
    result = run_loop(tmp_path / "loop", timeout_s=300)
    print(result)
    assert result["drift_event"]["device"] == "shopfloor.device.motor-b"
    assert result["retrain_parameters"]["device"] == "motor-b"
    assert result["retrained_for_device"] == "motor-b" and result["new_version_champion"]
    assert result["versions_run"] == {"motor-a": ["1"], "motor-b": ["1", str(result["new_version"])]}
    assert result["event_to_retrain_start_s"] >= 0
    left = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert not left, [p.info["cmdline"] for p in left]
