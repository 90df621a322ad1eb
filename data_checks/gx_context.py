"""A quiet, offline great-expectations context: in memory, analytics off, no progress bars.

Suites are rebuilt from config on every run (they are a few lines each), so nothing needs to
persist between runs except the Data Docs HTML, which goes to the run's folder and to MLflow.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
import great_expectations as gx  # noqa: E402  (must follow GX_ANALYTICS_ENABLED)
from great_expectations.data_context.types.base import (  # noqa: E402  (likewise)
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)


def quiet_context(docs_dir: Path | None = None):
    """An ephemeral GX context; with `docs_dir`, validations also render Data Docs there."""
    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    if docs_dir is not None:
        context.add_data_docs_site(
            "shopfloor",
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(docs_dir).resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return context


def run_suite(
    context, suite: gx.ExpectationSuite, frame: pd.DataFrame, key_column: str, build_docs: bool
) -> list:
    """Validate `frame` against `suite`; each result lists the failing rows by `key_column`."""
    name = suite.name
    asset = context.data_sources.add_pandas(f"{name}_source").add_dataframe_asset(f"{name}_frame")
    batch = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    actions = [gx.checkpoint.UpdateDataDocsAction(name="docs")] if build_docs else []
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{name}_checkpoint",
            validation_definitions=[definition],
            actions=actions,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [key_column]},
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": frame})
    return [r for run in outcome.run_results.values() for r in run.results]
