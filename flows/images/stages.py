"""DVC stage entry points: `python -m flows.images.stages <stage>`. Each calls the same stage function as the flow.

Stages exchange files under `artifacts/dvc/` (declared as outs in dvc.yaml), so `dvc repro`
re-runs only what changed; `register` logs the result to MLflow and registers a version tagged
with the data folder's DVC hash, the one `dvc.lock` records for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from core.config import load_config
from flows.images.config import DefectJobConfig
from flows.report import console, print_findings

app = typer.Typer(
    help="DVC stages of the defect pipeline (see dvc.yaml).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
OUT = Path("artifacts/dvc")
ConfigArg = Annotated[Path, typer.Option("--config", help="Job config YAML.")]
DataArg = Annotated[Path, typer.Option("--data", help="Image folder or CSV manifest.")]


def _manifest() -> tuple[pd.DataFrame, list[str]]:
    from training.images.prepare import read_split_manifest

    manifest = read_split_manifest(OUT / "prepare" / "manifest.csv")
    classes = json.loads((OUT / "prepare" / "classes.json").read_text())
    return manifest, classes


@app.command()
def prepare(config: ConfigArg, data: DataArg) -> None:
    """Data checks (quarantining bad files) and the tile-grouped split."""
    from data_checks.images.gate import check_image_dataset
    from registry.lines import line_of
    from training.images.prepare import assign_split

    cfg = load_config(DefectJobConfig, config)
    checked = check_image_dataset(cfg.checks, data, OUT / "prepare")
    print_findings(checked.findings)
    line = line_of(data, cfg.tracking.line)  # the frozen test set is the product line's
    assign_split(checked.manifest, cfg.split, line).to_csv(OUT / "prepare" / "manifest.csv", index=False)
    (OUT / "prepare" / "classes.json").write_text(json.dumps(checked.classes))
    (OUT / "prepare" / "fingerprint.txt").write_text(checked.fingerprint)


@app.command()
def train(config: ConfigArg) -> None:
    """Fine-tune on the train part, select on validation."""
    from training.images.probe import choose_candidate
    from training.images.train import train_classifier

    cfg = load_config(DefectJobConfig, config)
    manifest, classes = _manifest()
    out = train_classifier(
        manifest, classes, cfg.model, cfg.augment, cfg.fit, OUT / "train", cfg.checks.cache_dir
    )
    (OUT / "train" / "history.json").write_text(json.dumps(out.fit.history, indent=2))
    candidate = choose_candidate(
        manifest, classes, cfg.model, cfg.fit, out.fit, OUT / "train", cfg.checks.cache_dir
    )
    console.print(f"candidate: {candidate.words()}", markup=False)


@app.command()
def evaluate(config: ConfigArg) -> None:
    """Pick the reject threshold on validation, score the held-out tiles, write model.pt."""
    from training.images.evaluate import evaluate_checkpoint
    from training.images.probe import Candidate

    cfg = load_config(DefectJobConfig, config)
    manifest, classes = _manifest()
    result, _ = evaluate_checkpoint(
        Candidate.load(OUT / "train" / "candidate.json").checkpoint,
        manifest,
        classes,
        cfg.eval,
        OUT / "evaluate",
        cfg.checks.cache_dir,
    )
    metrics = {"test": result.test.flat(), "val": result.val.flat()}
    (OUT / "evaluate" / "metrics.json").write_text(json.dumps(metrics, indent=2))
    console.print(f"test macro-F1 {result.test.macro_f1:.3f}")


@app.command()
def export(config: ConfigArg) -> None:
    """fp32 + int8 ONNX, verified (checker, parity) and measured (agreement, F1, size, latency)."""
    from export.images.stage import export_edge_models
    from training.images.probe import Candidate

    cfg = load_config(DefectJobConfig, config)
    manifest, classes = _manifest()
    lineage = {"data_fingerprint": (OUT / "prepare" / "fingerprint.txt").read_text().strip(),
               "candidate": Candidate.load(OUT / "train" / "candidate.json").words()}  # fmt: skip
    report = export_edge_models(
        OUT / "evaluate" / "model.pt",
        manifest,
        classes,
        cfg.export,
        OUT / "export",
        cfg.checks.cache_dir,
        lineage,
    )
    (OUT / "export" / "export_metrics.json").write_text(json.dumps(report.flat(), indent=2))


def _log_outputs(cfg: DefectJobConfig, metrics: dict, export_metrics: dict, lineage: dict) -> None:
    """What the earlier stages wrote, logged to the open MLflow run: params, metrics, curves, plots, models."""
    import mlflow

    from registry import publish
    from registry.images import log_pytorch_model

    mlflow.log_params(publish.flatten("", cfg.model_dump(mode="json")))
    mlflow.log_metrics(
        {f"test_{k}": v for k, v in metrics["test"].items()}
        | {f"eval_val_{k}": v for k, v in metrics["val"].items()}
        | export_metrics
    )
    for row in json.loads((OUT / "train" / "history.json").read_text()):
        mlflow.log_metrics({k: v for k, v in row.items() if isinstance(v, float)}, step=row["epoch"])
    publish.log_directory(OUT / "evaluate", "evaluation")
    publish.log_files({"preview": OUT / "train" / "augmentation_preview.png"}, "augmentation")
    log_pytorch_model(OUT / "evaluate" / "model.pt", lineage)


@app.command()
def register(config: ConfigArg, data: DataArg) -> None:
    """Log the outputs to MLflow, register the int8 model (candidate), run the promotion gate."""
    import mlflow

    from data_checks.versioning import dvc_data_version
    from export.images.stage import ExportReport
    from flows.images.preflight import preflight
    from registry import publish
    from registry.images import log_frozen_set, log_onnx_models, release
    from registry.tracking import configure, git_commit
    from training.images.probe import Candidate

    cfg = load_config(DefectJobConfig, config)
    client = configure(cfg.tracking)
    cfg = preflight(cfg, data, "claim", client)  # as the flow: never gated against another line's champion
    line = cfg.tracking.line
    manifest, _ = _manifest()
    lineage = {"product_line": line, "data_fingerprint": (OUT / "prepare" / "fingerprint.txt").read_text().strip(),
               "dvc_data_version": dvc_data_version(data), "candidate": Candidate.load(OUT / "train" / "candidate.json").words()}  # fmt: skip
    metrics = json.loads((OUT / "evaluate" / "metrics.json").read_text())
    export_metrics = json.loads((OUT / "export" / "export_metrics.json").read_text())
    with mlflow.start_run(run_name="dvc-repro") as run:
        _log_outputs(cfg, metrics, export_metrics, lineage)
        model_uri = log_onnx_models(ExportReport.from_folder(OUT / "export"))
        tags = lineage | {"git_commit": git_commit(), "flow": "dvc-repro"}
        mlflow.set_tags(tags)
        version = publish.register(
            model_uri, cfg.tracking.model_name, tags | {"test_macro_f1": f"{metrics['test']['macro_f1']:.4f}"}
        )
        frozen = log_frozen_set(manifest)
        gate, promoted = release(
            cfg.promotion, version.name, version.version, export_metrics, frozen, "dvc-repro"
        )
        mlflow.log_dict(gate.to_dict(), "promotion/gate_report.json")
    (OUT / "register").mkdir(parents=True, exist_ok=True)
    record = version.__dict__ | {"run_id": run.info.run_id, "gate_passed": gate.passed, "promoted": promoted}
    (OUT / "register" / "version.json").write_text(json.dumps(record, indent=2))
    verdict = "passed" if gate.passed else "failed: " + "; ".join(gate.failures())
    console.print(f"registered {version.name} version {version.version}; gate {verdict}")


if __name__ == "__main__":
    from flows.cli.main import run_guarded

    run_guarded(app)
