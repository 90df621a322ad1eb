"""Fan-out of CPU-heavy per-item work over a Dask cluster, through Prefect's Dask task runner.

Work that grows with the data (decoding and measuring every image) runs as a small Prefect sub-flow
whose tasks, one per chunk of items, go to Dask workers: a temporary local cluster (worker processes
on loopback) or an existing scheduler. The plain in-process loop stays the default: a local cluster
costs seconds to start and each chunk about 0.15 s of Prefect bookkeeping, so fan-out pays only when
the work itself takes much longer than that. Prefect and Dask are imported only when it is on.

Inside a flow run (the `check-data` task) the sub-flow shows up as that run's child. Called outside
one (the DVC stage, `shopfloor check`) it needs a Prefect API like any flow: PREFECT_API_URL, or
the temporary server Prefect starts for the process (about 8 s once).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

T = TypeVar("T")
R = TypeVar("R")


class FanOut(BaseModel):
    """Where per-item work runs: in this process (the default), a local Dask cluster, or a given one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int = Field(0, ge=0)  # local Dask worker processes, 1 thread each; 0 = plain loop in-process
    # An existing Dask scheduler (tcp://host:8786) instead of a local cluster. Its workers need
    # PREFECT_API_URL set to a Prefect server they can reach, or each starts a temporary one of its own.
    address: str | None = None
    chunks_per_worker: int = Field(
        2, ge=1
    )  # per worker thread; more even out slow workers, each costs ~0.15 s

    @model_validator(mode="after")
    def _one_cluster(self) -> FanOut:
        if self.workers and self.address:
            raise ValueError(
                f"give workers (a local cluster) or address (an existing one), not both: "
                f"workers={self.workers}, address={self.address!r}"
            )
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.workers or self.address)


def map_chunks(fn: Callable[[list[T]], list[R]], items: Sequence[T], cfg: FanOut, name: str) -> list[R]:
    """`fn` over `items` (one call per chunk), results in input order, wherever `cfg` says.

    `fn` must be a module-level function (Dask pickles it to the workers) that returns one result
    per item. An empty list never starts a cluster.
    """
    if not cfg.enabled or not items:
        return fn(list(items))
    runner = _task_runner(cfg)
    with dask_scope():
        results = _fan_out_flow().with_options(name=f"fan-out-{name}", task_runner=runner)(
            fn, list(items), cfg
        )
    assert len(results) == len(items), "a chunk returned the wrong number of results"
    return results


def split(items: list[T], parts: int) -> list[list[T]]:
    """Contiguous, near-equal chunks (so concatenating the results keeps the input order)."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _task_runner(cfg: FanOut):
    """A DaskTaskRunner for `cfg`: it starts the local cluster on entry and closes it on exit."""
    from prefect_dask import DaskTaskRunner

    if cfg.address:
        return DaskTaskRunner(address=cfg.address)
    return DaskTaskRunner(cluster_kwargs=local_cluster_options(cfg.workers))


def local_cluster_options(workers: int) -> dict[str, Any]:
    """LocalCluster arguments: worker processes of 1 thread (the work holds the GIL), loopback only.

    The workers get this process's Prefect API address: without it each worker process starts a
    temporary Prefect server of its own (measured: 8-20 s before the first chunk ran, and the task
    runs landed in databases nobody reads).
    """
    from prefect.client.orchestration import get_client

    api_url = str(get_client(sync_client=True).api_url)  # starts the temporary server if none is set
    return {"n_workers": workers, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
            "dashboard_address": None, "env": {"PREFECT_API_URL": api_url}}  # fmt: skip


@contextmanager
def dask_scope() -> Iterator[None]:
    """Wrap any Dask cluster this process starts: workers that decode fast, a process left as it was.

    - Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536: glibc then hands every freed
      image buffer back to the OS and faults it in again for the next image, which doubled the CPU
      time of a chunk (0.6 -> 1.3 s per 336 tiles). Dropped here; glibc's own default applies.
    - The nanny also sets OMP_NUM_THREADS=1 (and MKL, OpenBLAS, PYTHONHASHSEED) in *this* process's
      environment before it spawns a worker and never takes them back: a training step later in the
      same run would hand one thread to every subprocess it starts. Restored on the way out.
    - Inside a flow run Dask's INFO lines (some 30 per cluster start and stop) reach Prefect's
      console: LocalCluster(silence_logs=) quiets only Dask's own handlers, which Dask does not
      install when the root logger already has one. Warnings only, here and in the workers.
    """
    import dask

    environ = dict(os.environ)
    os.environ["DASK_LOGGING__DISTRIBUTED"] = "warning"  # read by the workers when they import Dask
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            yield
    finally:
        logger.setLevel(level)
        for key in set(os.environ) - set(environ):
            del os.environ[key]
        os.environ.update(environ)


@cache
def _fan_out_flow():
    """The sub-flow and its chunk task, built on first use so that the plain path never imports Prefect."""
    from prefect import flow, task, unmapped
    from prefect.cache_policies import NO_CACHE
    from prefect.context import FlowRunContext

    @task(name="chunk", cache_policy=NO_CACHE)
    def run_chunk(fn: Callable[[list[Any]], list[Any]], chunk: list[Any]) -> list[Any]:
        return fn(chunk)

    @flow(name="fan-out", validate_parameters=False)
    def fan_out(fn: Callable[[list[Any]], list[Any]], items: list[Any], cfg: FanOut) -> list[Any]:
        client = FlowRunContext.get().task_runner.client  # the cluster is up: count its threads
        slots = sum(client.nthreads().values()) or 1
        futures = run_chunk.map(unmapped(fn), split(items, slots * cfg.chunks_per_worker))
        return [result for future in futures for result in future.result()]

    return fan_out
