"""What a device installs: a fresh virtual environment with only `pip install ".[device]"`.

  python -m benchmarks.device_install

Reports the venv's size on disk (and without pip/setuptools, which every venv carries), the
packages that came with it (none of torch, timm, MLflow, Prefect, pandas, OpenCV may be among them),
and the time `shopfloor edge --help` takes in it. Writes benchmarks/results/device_install.json.
The platform venv (`make install`) is measured the same way for scale.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLATFORM_ONLY = (
    "torch",
    "timm",
    "mlflow",
    "prefect",
    "pandas",
    "opencv-python-headless",
    "scikit-learn",
    "great-expectations",
)


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        venv, source = Path(scratch) / "venv", Path(scratch) / "src"
        shutil.copytree(
            REPO,
            source,
            ignore=shutil.ignore_patterns(".venv", ".git", "data", "artifacts", "mlruns", "*.db"),
        )
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        started = time.perf_counter()
        subprocess.run(
            [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", f"{source}[device]"], check=True
        )
        install_s = time.perf_counter() - started
        packages = json.loads(subprocess.run([str(venv / "bin/python"), "-m", "pip", "list", "--format=json"],
                                             capture_output=True, text=True, check=True).stdout)  # fmt: skip
        names = sorted(p["name"].lower() for p in packages)
        site = next((venv / "lib").glob("python3*/site-packages"))
        started = time.perf_counter()
        subprocess.run([str(venv / "bin/shopfloor"), "edge", "--help"], capture_output=True, check=True)
        help_s = time.perf_counter() - started
        result = {
            "venv_mb": round(size_mb(venv), 1),
            "without_pip_setuptools_mb": round(
                size_mb(venv) - size_mb(site / "pip") - size_mb(site / "setuptools"), 1
            ),
            "largest_mb": {
                p.name: round(size_mb(p), 1) for p in sorted(site.iterdir(), key=size_mb)[-6:] if p.is_dir()
            },
            "packages": names,
            "platform_only_packages_present": [n for n in PLATFORM_ONLY if n in names],
            "install_s": round(install_s, 1),
            "edge_help_s": round(help_s, 2),
            "platform_venv_mb": round(size_mb(REPO / ".venv"), 1) if (REPO / ".venv").exists() else None,
        }
    print(json.dumps(result, indent=2))
    out = REPO / "benchmarks/results/device_install.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
