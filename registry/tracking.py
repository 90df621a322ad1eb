"""Where runs and models are recorded: an MLflow tracking store, SQLite in the working folder by default.

`sqlite:///mlflow.db` needs no server; point `tracking_uri` at `postgresql://...` for a shared
store. Nothing here runs at import time: callers pass a `TrackingConfig`.

A tracking server that stops answering, or loses its database (MLflow answers 503), is one
`TrackingUnavailable` line saying which and what to do, after bounded retries (`HTTP_BOUNDS`): MLflow's
own defaults retry a call for about 4 minutes, and a flow makes many calls.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import RegistryError
from registry.config import TrackingConfig  # noqa: F401  (re-exported: the stage and its settings)
from registry.store import follow_moves

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow  # noqa: E402  (must follow MLFLOW_DISABLE_TELEMETRY)

# A call to a tracking server that fails is retried 5 times, 0+2+4+8+16 s apart (plus up to 1 s of jitter
# each): a PostgreSQL restart (seconds) is ridden out, an outage ends the flow within about 40 s, not 4 min.
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",  # per attempt; the largest upload (a model, ~20 MB) takes seconds
}
log = logging.getLogger("shopfloor.tracking")


class TrackingUnavailable(RegistryError):
    """The tracking server does not answer or cannot reach its database; the message says what to do."""


def bound_http(cfg: TrackingConfig) -> None:
    """MLflow's HTTP retries bounded (HTTP_BOUNDS) for a tracking server; a value the user exported wins."""
    if cfg.tracking_uri.startswith(("http://", "https://")):
        for key, value in HTTP_BOUNDS.items():
            os.environ.setdefault(key, value)


def configure(cfg: TrackingConfig) -> mlflow.MlflowClient:
    """Point MLflow at the store and experiment; quiet the store's own INFO lines."""
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    bound_http(cfg)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    try:
        mlflow.set_experiment(cfg.experiment)
    except Exception as err:
        if (said := unavailable(err, "nothing was started")) is None:
            raise
        raise TrackingUnavailable(said) from err
    follow_moves(cfg.tracking_uri)  # after set_experiment: a new store has its tables now
    return mlflow.MlflowClient(cfg.tracking_uri)


_FAILED = re.compile(
    r"API request to (?P<server>https?://[^/\s]+)/api/[\d.]+/mlflow/(?P<endpoint>[^?\s]+)\S* failed"
)
_STATUS = re.compile(r"too many (\d{3}) error responses|error code (\d{3}) != 200")


def unavailable(err: BaseException | None, consequence: str = "") -> str | None:
    """One line for a tracking server that is down or without its database, or None for any other error.

    The exception's causes count too: ending a run after such a failure fails the same way."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        found = _FAILED.search(str(err)) if type(err).__name__ == "MlflowException" else None
        if found:
            said = _outage(str(err), found["server"], found["endpoint"])
            if said:
                what, fix = said
                return f"{what}: {consequence}; {fix}" if consequence else f"{what}; {fix}"
        err = err.__cause__ or err.__context__
    return None


def _outage(text: str, server: str, endpoint: str) -> tuple[str, str] | None:
    codes = _STATUS.search(text)
    status = int(codes[1] or codes[2]) if codes else 0
    if status == 503:
        return (f"the tracking server's database is unavailable (MLflow at {server} answered 503 to {endpoint})",
                "start PostgreSQL (`shopfloor stack up` on the stack's machine) and run again")  # fmt: skip
    if status >= 500:
        return (f"the tracking server failed (MLflow at {server} answered {status} to {endpoint})",
                "its log says why (`shopfloor stack status` shows where it runs); run again once it answers")  # fmt: skip
    if "Connection refused" in text or "timeout" in text.lower():
        how = "refused the connection" if "Connection refused" in text else "did not answer in time"
        return (f"the tracking server at {server} {how} ({endpoint})",
                "start it (`shopfloor stack up` on the stack's machine) and run again")  # fmt: skip
    return None


@contextmanager
def tracked_run(start: Callable[[], mlflow.ActiveRun]) -> Iterator[mlflow.ActiveRun]:
    """The flow's MLflow run, all or nothing: when the body fails, the run ends FAILED and the version it
    may have registered is removed (`publish.remove_unfinished_versions`; the next run does it when the
    tracking server is what failed). A tracking outage becomes one `TrackingUnavailable` line."""
    from registry.publish import remove_unfinished_versions

    run_id = None
    try:
        with start() as run:  # ActiveRun's exit ends the run FINISHED, or FAILED on an exception
            run_id = run.info.run_id
            try:
                yield run
            except Exception as err:
                if (said := unavailable(err)) is not None:
                    log.error(said)  # at once: ending the run waits for the server too
                raise
    except Exception as err:
        said = unavailable(
            err, f"run {run_id} failed and registered nothing" if run_id else "no run was started"
        )
        if said is not None:
            raise TrackingUnavailable(said) from err
        if run_id is not None:
            try:
                remove_unfinished_versions(mlflow.MlflowClient(), [run_id])
            except Exception as cleanup:  # the failure that matters is `err`; the next run tries again
                log.warning("a version of run %s stays until the next run removes it: %s", run_id, cleanup)
        raise


def git_commit(repo: Path | None = None) -> str:
    """HEAD's sha of the code that runs (this checkout), `-dirty` when tracked files changed.

    `unknown` when shopfloor is installed outside a git checkout.
    """
    cwd = repo or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty.strip() else sha


def existing_store(tracking_uri: str) -> mlflow.MlflowClient:
    """A client on a store that must exist already: commands that only read never create one.

    (MLflow creates a SQLite file and its tables on first contact, and `set_experiment` creates an
    experiment: neither may happen because someone typed `registry list` in the wrong folder.)
    """
    from core.errors import RegistryError

    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise RegistryError(
                f"no tracking store at {path.resolve()}; run the command where `shopfloor train` ran, or pass --tracking-uri"
            )
    follow_moves(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.MlflowClient(tracking_uri)


def approved_version(tracking_uri: str, model: str, version: str):
    """The registered version, when it exists and has an approval record; RegistryError saying which is missing."""
    from core.errors import RegistryError
    from registry.lifecycle import approval_of, require_version

    found = require_version(existing_store(tracking_uri), model, version)
    if approval_of(found.tags) is None:
        raise RegistryError(
            f"{model} v{version} has no approval record (its gate failed or it was never judged); "
            f"see `shopfloor registry approve {model} {version}`"
        )
    return found


def process_tags() -> dict[str, str]:
    """Which process runs a flow: lets a later run tell a crashed run from one still going."""
    import socket

    return {"shopfloor.host": socket.gethostname(), "shopfloor.pid": str(os.getpid())}


def _owner_alive(tags: dict[str, str], started_ms: int) -> bool:
    import psutil

    try:
        process = psutil.Process(int(tags["shopfloor.pid"]))
        return process.create_time() * 1000 <= started_ms + 1000  # not a new process that reused the pid
    except (psutil.NoSuchProcess, ValueError):
        return False


def fail_abandoned_runs(
    client: mlflow.MlflowClient, experiment_id: str, keep: str | None = None
) -> list[str]:
    """Mark FAILED the runs of this experiment left RUNNING by a process of this host that is gone
    (killed, or its machine restarted): a run must never look like it is still going. `keep`: a
    run about to be resumed. Runs of other hosts, or without a recorded process, are left alone.
    Then the versions failed runs registered but never gated are removed (registration is all or nothing)."""
    import socket

    from registry.publish import remove_unfinished_versions

    host, ended = socket.gethostname(), []
    for run in client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    ):
        tags = run.data.tags
        if run.info.run_id == keep or tags.get("shopfloor.host") != host or "shopfloor.pid" not in tags:
            continue
        if not _owner_alive(tags, run.info.start_time):
            client.set_tag(
                run.info.run_id, "shopfloor.ended", "marked FAILED by a later run: its process had died"
            )
            client.set_terminated(run.info.run_id, status="FAILED")
            ended.append(run.info.run_id)
    remove_unfinished_versions(client, _failed_runs(client, experiment_id))
    return ended


def _failed_runs(client: mlflow.MlflowClient, experiment_id: str) -> list[str]:
    """The experiment's latest runs that ended FAILED or KILLED and whose versions were not looked at yet."""
    from registry.publish import UNFINISHED_TAG

    found = []
    for status in ("FAILED", "KILLED"):
        runs = client.search_runs([experiment_id], filter_string=f"attributes.status = '{status}'",
                                  max_results=200, order_by=["attributes.start_time DESC"])  # fmt: skip
        found += [run.info.run_id for run in runs if UNFINISHED_TAG not in run.data.tags]
    return found
