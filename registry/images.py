"""How an image classifier version is logged, judged and released: the int8 ONNX file that ships decides.

Absolute gates (config): minimum macro-F1, minimum recall of every class, maximum int8 macro-F1
drop against fp32, minimum int8/fp32 top-1 agreement, maximum p95 latency at batch 1 on the CPU.
Relative gate: not worse than the current champion's shipped file on the same frozen
evaluation set, both scored now, by the same code. `release` runs last in the flow and the DVC
`register` stage, so a failed or killed run never moves `champion`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import infer_signature

import core
import data_checks
import inputs
import training
from core.card import classes as card_classes
from core.card import read_card
from core.errors import RegistryError
from core.onnx_runtime import run_batched, session
from export.images.stage import batch1_latency_ms
from inputs.images import card_colour, load_batch
from registry.artifacts import shipped_file
from registry.config import PromotionConfig
from registry.gates import GateCheck, GateReport, record_gate
from registry.lifecycle import CHAMPION, alias_version, reconcile
from registry.lifecycle import release as release_version
from registry.publish import ONNX_PIP_REQUIREMENTS
from registry.store import from_store, relative_to_store
from training.images.checkpoint import load_model
from training.images.metrics import classification_metrics, macro_f1, operating_point
from training.images.model import ProbabilityModel

PIP_REQUIREMENTS = ["torch==2.14.1", "timm==1.0.31", "numpy"]  # skip MLflow's slow inference
FP32_TAG = "shopfloor.fp32_model_uri"  # run tag: the fp32 ONNX model logged beside the int8 one


def score_onnx(path: Path, frozen: pd.DataFrame) -> dict:
    """Macro-F1, per-class recall and the reject decision at the file's own threshold (None without one)
    of an exported file on the frozen set, fed as its card says."""
    card = read_card(path)
    classes = card_classes(card)
    grey = load_batch(
        frozen["path"].tolist(), card["input"]["preprocessing"]["image_size"], card_colour(card)
    )
    labels = np.array([classes.index(label) for label in frozen["label"]])
    proba = run_batched(session(path), grey)
    metrics = classification_metrics(labels, proba, tuple(classes))
    ok, threshold = card["decision"].get("ok_class"), card["decision"].get("defect_threshold")
    point = (
        operating_point(labels, proba, classes.index(ok), threshold)
        if ok in classes and threshold is not None
        else None
    )
    return {"macro_f1": metrics.macro_f1, "recall": {c: v["recall"] for c, v in metrics.per_class.items()},
            "operating_point": point}  # fmt: skip


def _check(name: str, value: float, limit: float, higher_is_better: bool, unit: str = "") -> GateCheck:
    passed = value >= limit if higher_is_better else value <= limit
    sign = ">=" if higher_is_better else "<="
    return GateCheck(name, value, limit, passed, f"{value:.3f}{unit} (needs {sign} {limit:.3f}{unit})")


def judge(
    cfg: PromotionConfig, candidate: Path, export_metrics: dict, frozen: pd.DataFrame, champion: Path | None
) -> GateReport:
    """Run every gate on the candidate's int8 file; `export_metrics` comes from ExportReport.flat()."""
    scored = score_onnx(candidate, frozen)
    report = GateReport()
    report.checks.append(_check("int8_macro_f1", scored["macro_f1"], cfg.min_macro_f1, True))
    worst_class, worst = min(scored["recall"].items(), key=lambda kv: kv[1])
    report.checks.append(_check(f"min_class_recall ({worst_class})", worst, cfg.min_class_recall, True))
    report.checks.append(
        _check("int8_macro_f1_drop", export_metrics["int8_macro_f1_drop"], cfg.max_int8_macro_f1_drop, False)
    )
    report.checks.append(
        _check("int8_top1_agreement", export_metrics["export_top1_agreement"], cfg.min_top1_agreement, True)
    )
    report.checks.append(
        _check(
            "int8_latency_p95",
            export_metrics["onnx_int8_latency_ms_p95"],
            cfg.max_latency_ms_p95,
            False,
            " ms",
        )
    )
    report.checks.extend(reject_checks(cfg, scored["operating_point"]))
    if cfg.not_worse_than_champion:
        if champion is None:
            report.checks.append(GateCheck("not_worse_than_champion", None, None, True, "no champion yet"))
        else:
            theirs = score_onnx(champion, frozen)["macro_f1"]
            report.checks.append(
                _check("not_worse_than_champion", scored["macro_f1"], theirs - cfg.champion_tolerance, True)
            )
    return report


def reject_checks(cfg: PromotionConfig, point) -> list[GateCheck]:
    """The reject decision at the file's own threshold: enough defects caught, few enough good parts thrown."""
    if point is None:  # no ok class in the card: the device reports classes only
        return [
            GateCheck("reject_decision", None, None, True, "no ok class: the model makes no reject decision")
        ]
    checks = []
    if cfg.min_defect_recall is not None:
        checks.append(_check("defect_recall_at_threshold", point.defect_recall, cfg.min_defect_recall, True))
    if cfg.max_false_reject_rate is not None:
        checks.append(
            _check(
                "false_reject_rate_at_threshold", point.false_reject_rate, cfg.max_false_reject_rate, False
            )
        )
    return checks


def log_frozen_set(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest's test part, logged so `approve` can re-run the gate later; paths relative to the
    store's folder when the data lies inside it, so a moved project still finds its images."""
    frozen = manifest.loc[manifest["split"] == "test", ["path", "label"]].copy()
    frozen["path"] = [str(Path(p).resolve()) for p in frozen["path"]]
    logged = frozen.assign(
        path=[relative_to_store(Path(p), mlflow.get_tracking_uri()) for p in frozen["path"]]
    )
    mlflow.log_text(logged.to_csv(index=False), "promotion/frozen_eval.csv")
    return frozen


def frozen_set_of(run_id: str) -> pd.DataFrame:
    """The frozen evaluation set a version was gated on (logged with its run)."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="promotion/frozen_eval.csv", dst_path=scratch
            )
        except Exception as err:  # MlflowException / OSError: the run predates frozen sets
            raise RegistryError(
                f"run {run_id} has no promotion/frozen_eval.csv to re-run the gate on"
            ) from err
        frozen = pd.read_csv(local)
    frozen["path"] = [str(from_store(p, mlflow.get_tracking_uri())) for p in frozen["path"]]
    missing = [p for p in frozen["path"] if not Path(p).exists()]
    if missing:
        raise RegistryError(
            f"{len(missing)} frozen evaluation images are gone (e.g. {missing[0]}); restore the data to re-run the gate"
        )
    return frozen


def fp32_reference(run_id: str, into: Path) -> Path | None:
    """The fp32 file exported beside a run's int8 file: what int8 fidelity is measured against."""
    uri = mlflow.MlflowClient().get_run(run_id).data.tags.get(FP32_TAG)
    if not uri:
        return None
    folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(into)))
    return next(folder.rglob("*.onnx"), None)


def measure_file(
    candidate: Path, reference: Path | None, frozen: pd.DataFrame, runs: int = 50
) -> dict[str, float]:
    """The export measurements the gate reads, taken now on the file being judged: its batch-1 latency on
    this CPU, and its agreement with and macro-F1 drop against the fp32 file of the same run."""
    card = read_card(candidate)
    classes = card_classes(card)
    grey = load_batch(
        frozen["path"].tolist(), card["input"]["preprocessing"]["image_size"], card_colour(card)
    )
    labels = np.array([classes.index(label) for label in frozen["label"]])
    sess = session(candidate)
    proba = run_batched(sess, grey)
    _, p95 = batch1_latency_ms(lambda x: sess.run(None, {card["input"]["name"]: x}), grey, runs)
    if reference is None:
        if card["export"].get("precision") != "fp32":
            raise RegistryError(
                f"{candidate.name} is {card['export'].get('precision')} and its run has no fp32 file to measure it against"
            )
        ref_proba = proba  # the file is its own reference
    else:
        ref_proba = run_batched(session(reference), grey)
    drop = macro_f1(labels, ref_proba.argmax(1), len(classes)) - macro_f1(
        labels, proba.argmax(1), len(classes)
    )
    agreement = float((ref_proba.argmax(1) == proba.argmax(1)).mean())
    return {"int8_macro_f1_drop": drop, "export_top1_agreement": agreement, "onnx_int8_latency_ms_p95": p95}


def _judge_version(cfg: PromotionConfig, model: str, version: str, candidate: Path, metrics: dict,
                   frozen: pd.DataFrame, scratch: Path) -> GateReport:  # fmt: skip
    """Judge a downloaded candidate against the gates and the current champion; record the verdict."""
    client = mlflow.MlflowClient()
    reconcile(client, model)
    champion = alias_version(client, model, CHAMPION)
    compared = (
        shipped_file(model, champion, scratch / "champion") if champion and champion != version else None
    )
    report = judge(cfg, candidate, metrics, frozen, compared)
    record_gate(client, model, version, report, gate_champion_compared=champion or "none")
    return report


def gate_version(
    cfg: PromotionConfig, model: str, version: str, export_metrics: dict, frozen: pd.DataFrame
) -> GateReport:
    """The flow's gate: `export_metrics` were measured at export on this very file (ExportReport.flat())."""
    with tempfile.TemporaryDirectory() as scratch:
        candidate = shipped_file(model, version, Path(scratch) / "candidate")
        return _judge_version(cfg, model, version, candidate, export_metrics, frozen, Path(scratch))


def gate_file(cfg: PromotionConfig, model: str, version: str, candidate: Path, run_id: str) -> GateReport:
    """`registry approve`'s gate: every number measured now on the candidate file (never a run's metric)."""
    frozen = frozen_set_of(run_id)
    with tempfile.TemporaryDirectory() as scratch:
        metrics = measure_file(candidate, fp32_reference(run_id, Path(scratch) / "fp32"), frozen)
        return _judge_version(cfg, model, version, candidate, metrics, frozen, Path(scratch))


def release(
    cfg: PromotionConfig, model: str, version: str, export_metrics: dict, frozen: pd.DataFrame, flow: str
) -> tuple[GateReport, bool]:
    """Gate the candidate; promote it to champion when it passes and `auto_promote` is on."""
    report = gate_version(cfg, model, version, export_metrics, frozen)
    client = mlflow.MlflowClient()
    return report, release_version(
        client, model, version, report.to_dict(), report.passed, cfg.auto_promote, flow
    )


def log_pytorch_model(model_path: Path, metadata: dict) -> str:
    """Log the classifier (softmax included) with signature and input example; returns its model URI."""
    model, payload = load_model(model_path)
    shipped = ProbabilityModel(model).eval()
    size = model.spec.image_size
    example = np.full((1, model.spec.channels, size, size), 128.0, dtype=np.float32)  # a mid-grey image
    with torch.inference_mode():
        output = shipped(torch.from_numpy(example)).numpy()
    # Pickle, not pt2: pt2 traces the network and fixes the batch size of the example (1).
    # `code_paths` ships the packages the pickle needs, so the model loads without shopfloor.
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # its generic pickle warning
    info = mlflow.pytorch.log_model(
        shipped,
        name="pytorch-model",
        signature=infer_signature(example, output),
        input_example=example,
        serialization_format="pickle",
        code_paths=[str(Path(p.__file__).parent) for p in (core, inputs, data_checks, training)],
        pip_requirements=PIP_REQUIREMENTS,
        metadata={"spec": model.spec.to_dict(), "decision": payload.get("decision"), **metadata},
    )
    mlflow.log_artifact(str(model_path), "checkpoint")
    return info.model_uri


def log_edge_file(path: Path, card: dict, name: str = "edge-int8") -> str:
    """Log one exported file as an MLflow ONNX model with signature and card; returns its model URI."""
    import onnx

    example = np.full([1, *card["input"]["shape"][1:]], 128.0, dtype=np.float32)  # a mid-grey image
    signature = infer_signature(example, np.zeros((1, len(card_classes(card))), dtype=np.float32))
    info = mlflow.onnx.log_model(
        onnx.load(str(path)), name=name, signature=signature, input_example=example,
        onnx_execution_providers=["CPUExecutionProvider"], metadata={"card": card},
        save_as_external_data=False,  # one self-contained file: what the edge server streams
        pip_requirements=ONNX_PIP_REQUIREMENTS,
    )  # fmt: skip
    return info.model_uri


def log_onnx_models(report) -> str:
    """Log fp32 and int8 ONNX as MLflow models with signature and card; returns the int8 model URI.

    The int8 file is what edge devices run, so it is the model that gets registered.
    """
    card = read_card(report.int8_path)
    fp32_uri = log_edge_file(report.fp32_path, card, "onnx-fp32")
    int8_uri = log_edge_file(report.int8_path, card)
    mlflow.log_artifact(str(report.card_path), "export")
    mlflow.set_tag(FP32_TAG, fp32_uri)  # `registry approve` measures int8 fidelity against it
    return int8_uri
