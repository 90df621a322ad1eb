"""A device with only the device extra pulls and runs both kinds of model from a live edge server.

The device commands run in a subprocess where the platform's libraries cannot be imported (torch,
timm, MLflow, Prefect, pandas, scikit-learn, GX, onnx, OpenCV, ...), as on a camera box or a sensor
gateway that installed `pip install ".[device]"`. The sensor file's alarms must be the ones
`shopfloor score anomaly` gives on the platform for the same file and version.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from device.images import predict_files
from flows.cli.main import app
from tests.fixtures.data import CWRU, TILES

pytestmark = pytest.mark.slow

NOT_ON_A_DEVICE = (
    "torch", "torchvision", "timm", "mlflow", "prefect", "great_expectations", "sklearn", "pandas", "scipy",
    "onnx", "skl2onnx", "onnxscript", "albumentations", "cv2", "dvc", "matplotlib", "fastapi", "uvicorn",
    "pyarrow", "skimage",
)  # fmt: skip
DEVICE_CLI = textwrap.dedent(f"""
    import sys

    class NotInstalled:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {NOT_ON_A_DEVICE!r}:
                raise ImportError(f"{{name}} is not installed on this device")

    sys.meta_path.insert(0, NOT_INSTALLED := NotInstalled())
    from flows.cli.main import main

    sys.argv = ["shopfloor", *sys.argv[1:]]
    main()
""")
SENSOR_FILE = CWRU / "cwru12k_DE_OR_007_at6_2hp.npz"
IMAGES = (
    sorted((TILES / "MT_Free" / "Imgs").glob("*.jpg"))[:2]
    + sorted((TILES / "MT_Crack" / "Imgs").glob("*.jpg"))[:2]
)


def on_device(fleet, *args: str) -> subprocess.CompletedProcess:
    script = fleet["dir"] / "device_cli.py"
    script.write_text(DEVICE_CLI)
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=fleet["dir"], capture_output=True, text=True, timeout=300
    )


def pull(fleet, model: str) -> None:
    out = on_device(fleet, "edge", "pull", model, "--server", fleet["url"], "--token", fleet["token"],
                    "--public-key", str(fleet["key"]), "--dest", "models")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "running version" in out.stderr


def test_the_device_environment_really_lacks_the_platform(fleet):
    probe = on_device(fleet, "--help")
    assert probe.returncode == 0, probe.stderr
    script = fleet["dir"] / "probe.py"
    script.write_text(
        DEVICE_CLI.replace("from flows.cli.main import main", "import torch").replace("main()", "")
    )
    blocked = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert blocked.returncode != 0 and "torch is not installed on this device" in blocked.stderr


def test_a_sensor_gateway_pulls_the_vibration_model_and_raises_the_platforms_alarms(fleet, tmp_path):
    pull(fleet, "bearing-anomaly")
    device_json = fleet["dir"] / "device_scores.json"
    out = on_device(fleet, "edge", "score", str(SENSOR_FILE), "--dest", "models", "--json", str(device_json))
    assert out.returncode == 0, out.stderr
    assert "ALARM" in out.stderr and "outer-race signature" in out.stderr

    platform_json = tmp_path / "platform_scores.json"
    result = CliRunner().invoke(app, ["score", "anomaly", "--model", "bearing-anomaly@champion", "--tracking-uri",
                                      fleet["uri"], "--json", str(platform_json), str(SENSOR_FILE)])  # fmt: skip
    assert result.exit_code == 0, result.output
    [device], [platform] = json.loads(device_json.read_text()), json.loads(platform_json.read_text())
    assert [w["alarm"] for w in device["windows"]] == [w["alarm"] for w in platform["windows"]]
    assert [w["flag"] for w in device["windows"]] == [w["flag"] for w in platform["windows"]]
    assert [w["score"] for w in device["windows"]] == pytest.approx([w["score"] for w in platform["windows"]])
    assert sum(w["alarm"] for w in device["windows"]) >= 0.9 * len(device["windows"])


def test_a_camera_box_pulls_the_image_model_and_classifies_like_the_platform(fleet):
    pull(fleet, "tiles")
    out = on_device(fleet, "edge", "predict", *map(str, IMAGES), "--model", "tiles", "--dest", "models")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith(str(TILES))]
    expected, _ = predict_files(
        fleet["dir"] / "models" / "tiles" / "current" / "model.onnx", list(map(str, IMAGES))
    )
    assert len(lines) == len(IMAGES)
    for line, verdict in zip(lines, expected, strict=True):
        # Finding: "MT_Free (0.87) REJECT" was the whole line; an operator could not tell why
        decision = "REJECT" if verdict.reject else "accept"
        assert line.startswith(
            f"{verdict.path}: {decision}: defect probability {verdict.defect_probability:.2f} "
        )
        assert line.endswith(f"{verdict.threshold:.2f}; top class {verdict.label} {verdict.probability:.2f}")


def test_predict_goes_on_past_a_bad_file_and_exits_2_naming_it(fleet, tmp_path):
    pull(fleet, "tiles")
    out = on_device(
        fleet,
        "edge",
        "predict",
        str(tmp_path / "gone.jpg"),
        str(IMAGES[0]),
        "--model",
        "tiles",
        "--dest",
        "models",
    )
    assert out.returncode == 2
    assert any(
        line.startswith(f"{IMAGES[0]}: ") and "top class MT_" in line for line in out.stderr.splitlines()
    )
    assert f"error: {tmp_path / 'gone.jpg'}: no such file" in out.stderr
    assert "1 of 2 files could not be read" in out.stderr and "Traceback" not in out.stderr


def test_a_missing_public_key_file_is_named_not_an_unexpected_error(fleet, tmp_path):
    """Finding: `edge pull` with a missing public-key file exited 1 with "unexpected error (FileNotFoundError)"."""
    out = on_device(fleet, "edge", "pull", "tiles", "--server", "http://127.0.0.1:9", "--token", "t",
                    "--public-key", str(tmp_path / "server.pem"), "--dest", "models")  # fmt: skip
    assert out.returncode == 2 and "unexpected" not in out.stderr
    assert out.stderr.strip() == (
        f"error: --public-key {tmp_path / 'server.pem'}: No such file or directory; copy the server's public key "
        "(the file `shopfloor edge enroll` names) onto this device and pass its path"
    )


def test_a_model_of_the_wrong_kind_is_refused_in_one_line(fleet):
    pull(fleet, "tiles")
    out = on_device(fleet, "edge", "score", str(SENSOR_FILE), "--model", "tiles", "--dest", "models")
    assert (
        out.returncode == 2 and "is a image-classifier model" in out.stderr and "Traceback" not in out.stderr
    )
