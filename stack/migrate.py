"""`shopfloor stack import-store SOURCE`: move an embedded store (sqlite + local artifacts) into the team
stack without losing history: every experiment and run (parameters, metric histories, tags, artifacts,
status and times), every registered model with its versions (same numbers: gaps left by deleted
versions stay gaps), their tags, descriptions and aliases. The registry's own history experiment
(`shopfloor-registry-events`) is a set of runs, so it moves too.

Only into a registry that does not have the model yet: merging two histories of one model would
renumber versions that devices, manifests and the history refer to.
"""

from __future__ import annotations

import tempfile

import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from stack.services import StackError

IMPORTED = "shopfloor.imported_from"


def _copy_run(
    src: MlflowClient, dst: MlflowClient, source_uri: str, run_id: str, experiments: dict[str, str]
) -> str:
    run = src.get_run(run_id)
    name = src.get_experiment(run.info.experiment_id).name
    if name not in experiments:
        found = dst.get_experiment_by_name(name)
        experiments[name] = found.experiment_id if found else dst.create_experiment(name)
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.log-model")} | {
        IMPORTED: f"{source_uri} run {run_id}"
    }
    new = dst.create_run(
        experiments[name], start_time=run.info.start_time, tags=tags, run_name=run.info.run_name
    )
    metrics = [
        Metric(m.key, m.value, m.timestamp, m.step)
        for key in run.data.metrics
        for m in src.get_metric_history(run_id, key)
    ]
    params = [Param(k, v) for k, v in run.data.params.items()]
    for start in range(0, len(params), 100):  # MLflow's batch limits
        dst.log_batch(new.info.run_id, params=params[start : start + 100])
    for start in range(0, len(metrics), 1000):
        dst.log_batch(new.info.run_id, metrics=metrics[start : start + 1000])
    with tempfile.TemporaryDirectory() as scratch:
        if src.list_artifacts(run_id):
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, dst_path=scratch, tracking_uri=source_uri
            )
            dst.log_artifacts(new.info.run_id, local)
    dst.set_terminated(new.info.run_id, run.info.status, end_time=run.info.end_time)
    return new.info.run_id


def import_store(source_uri: str, target_uri: str, report=print) -> dict[str, int]:
    """Copy everything in `source_uri` into `target_uri`; returns counts."""
    src, dst = MlflowClient(source_uri), MlflowClient(target_uri)
    models = src.search_registered_models()
    for model in models:
        if dst.search_model_versions(f"name = '{model.name}'"):
            raise StackError(
                f"the team registry already has versions of {model.name!r}: import into a registry without it"
            )
    experiments: dict[str, str] = {}
    runs: dict[str, str] = {}
    for experiment in src.search_experiments():
        for run in src.search_runs([experiment.experiment_id], max_results=50_000):
            runs[run.info.run_id] = _copy_run(src, dst, source_uri, run.info.run_id, experiments)
        report(f"experiment {experiment.name}: {len(runs)} run(s) copied so far")
    versions = 0
    for model in models:
        dst.create_registered_model(model.name, tags=model.tags, description=model.description)
        made = 0
        found = sorted(src.search_model_versions(f"name = '{model.name}'"), key=lambda v: int(v.version))
        for version in found:
            made = _copy_version(src, dst, source_uri, model.name, version, runs, made)
        versions += len(found)
        for alias, number in model.aliases.items():
            dst.set_registered_model_alias(model.name, alias, number)
        report(f"model {model.name}: {len(found)} version(s), aliases {dict(model.aliases)}")
    return {"experiments": len(experiments), "runs": len(runs), "models": len(models), "versions": versions}


def _copy_version(src, dst, source_uri: str, name: str, version, runs: dict[str, str], made: int) -> int:
    """One version under its own number (placeholders, deleted again, fill a gap); returns that number."""
    run_id = runs[version.run_id]
    with tempfile.TemporaryDirectory() as scratch:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=version.source, dst_path=scratch, tracking_uri=source_uri
        )
        dst.log_artifacts(run_id, local, "registered_model")
    source = f"runs:/{run_id}/registered_model"
    while made + 1 < int(version.version):
        placeholder = dst.create_model_version(
            name, source, run_id=run_id, description="gap left by a deleted version"
        )
        dst.delete_model_version(name, placeholder.version)
        made = int(placeholder.version)
    created = dst.create_model_version(
        name, source, run_id=run_id, tags=version.tags, description=version.description
    )
    if str(created.version) != str(version.version):
        raise StackError(
            f"{name} version {version.version} came out as {created.version}; the import stopped"
        )
    return int(created.version)
