"""Fine-tune on several processes: `torchrun` starts them, each runs the one-process stage function.

`fit.processes: N` (`shopfloor train defects --processes N`) makes the flow call `train_on_processes`
instead of `train_classifier`: it decodes the pixels once into the cache, writes the job (manifest,
settings, the MLflow run to report to) beside the checkpoints, starts
`torchrun --standalone --nproc-per-node N -m training.images.torchrun JOB` and waits. Each rank
joins the process group (gloo on CPU, nccl on GPUs) and runs `train_classifier`; rank 0 writes the
checkpoints, logs each epoch to the flow's MLflow run and writes the result, so evaluation, export
and registration then run once, in the flow, on `best.pt`. `--resume` works as on one process: every
rank loads `last.pt`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from core.errors import TrainingError
from training.images.config import AugmentConfig, FitConfig, ModelConfig
from training.images.data import colour_of, training_data
from training.images.fit import FitResult
from training.images.ranks import Rank, per_rank_batch
from training.images.train import TrainOutput

JOB, MANIFEST, RESULT = "torchrun_job.json", "torchrun_manifest.csv", "torchrun_result.json"


def train_on_processes(manifest: pd.DataFrame, classes: list[str], model_cfg: ModelConfig,
                       augment_cfg: AugmentConfig, fit_cfg: FitConfig, out_dir: Path,
                       cache_dir: Path | None = None, resume: bool = False,
                       mlflow_run: tuple[str, str] | None = None) -> TrainOutput:  # fmt: skip
    """`train_classifier` on `fit_cfg.processes` processes; `mlflow_run` is (tracking URI, run id)."""
    processes = fit_cfg.processes
    per_rank_batch(fit_cfg.batch_size, Rank(0, processes))  # a batch that does not split fails here
    out_dir.mkdir(parents=True, exist_ok=True)
    colour = colour_of(model_cfg.colour, manifest)
    training_data(
        manifest, classes, model_cfg.image_size, cache_dir, colour
    )  # decoded once, read by every rank
    manifest.to_csv(out_dir / MANIFEST, index=False)
    job = {"classes": classes, "model": model_cfg.model_dump(mode="json"),
           "augment": augment_cfg.model_dump(mode="json"), "fit": fit_cfg.model_dump(mode="json"),
           "cache_dir": str(cache_dir) if cache_dir else None, "resume": resume, "mlflow_run": mlflow_run}  # fmt: skip
    (out_dir / JOB).write_text(json.dumps(job, indent=2))
    (out_dir / RESULT).unlink(missing_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", __name__, str(out_dir)]  # fmt: skip
    # each rank's share of the cores; torchrun would otherwise set 1 thread and warn about it
    threads = max(1, (os.cpu_count() or 1) // processes)
    code = _wait(subprocess.Popen(command, env=os.environ | {"OMP_NUM_THREADS": str(threads)}))
    if code or not (out_dir / RESULT).exists():
        raise TrainingError(
            f"training on {processes} processes failed (torchrun exit {code}); the failing rank's error "
            "is printed above. Run again with --resume to continue from the last finished epoch"
        )
    return _read_result(out_dir / RESULT)


def _wait(child: subprocess.Popen) -> int:
    """Wait for torchrun; if this process is interrupted, torchrun is stopped (it stops its ranks)."""
    try:
        return child.wait()
    except BaseException:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise


def _write_result(path: Path, out: TrainOutput) -> None:
    fit = asdict(out.fit) | {"best_checkpoint": str(out.fit.best_checkpoint),
                             "last_checkpoint": str(out.fit.last_checkpoint)}  # fmt: skip
    path.write_text(json.dumps({"fit": fit, "augmentation_preview": str(out.augmentation_preview)}, indent=2))


def _read_result(path: Path) -> TrainOutput:
    saved = json.loads(path.read_text())
    fit = saved["fit"] | {"best_checkpoint": Path(saved["fit"]["best_checkpoint"]),
                          "last_checkpoint": Path(saved["fit"]["last_checkpoint"])}  # fmt: skip
    return TrainOutput(FitResult(**fit), Path(saved["augmentation_preview"]))


def _mlflow_reporter(mlflow_run: list[str] | None):
    """Rank 0 logs each epoch's figures to the flow's run, as the one-process fit does from the flow."""
    if not mlflow_run:
        return None
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client, run_id = MlflowClient(mlflow_run[0]), mlflow_run[1]

    def report(row: dict) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, row["epoch"]) for k, v in row.items() if isinstance(v, float)]
        client.log_batch(run_id, metrics=metrics, synchronous=True)

    return report


def main(out_dir: Path) -> None:
    """One rank: join the group, train, and (rank 0) write the result the waiting flow reads."""
    import torch
    import torch.distributed as dist

    from training.images.prepare import read_split_manifest
    from training.images.ranks import current
    from training.images.train import train_classifier

    job = json.loads((out_dir / JOB).read_text())
    fit_cfg = FitConfig(**job["fit"])
    dist.init_process_group("nccl" if torch.cuda.is_available() and fit_cfg.device != "cpu" else "gloo")
    try:
        rank = current()
        out = train_classifier(
            read_split_manifest(out_dir / MANIFEST), job["classes"], ModelConfig(**job["model"]),
            AugmentConfig(**job["augment"]), fit_cfg, out_dir,
            Path(job["cache_dir"]) if job["cache_dir"] else None, job["resume"],
            _mlflow_reporter(job["mlflow_run"]) if rank.main else None,
        )  # fmt: skip
        if rank.main:
            _write_result(out_dir / RESULT, out)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
