"""Image properties (decode, md5, brightness, blur, phash, view) on all magnetic tiles: the plain
in-process loop against the Dask fan-out (checks.fan_out) on 2 local workers, in the same process.

  python -m benchmarks.image_checks_fan_out [--rounds 3] [--workers 2]

Every call starts from a cold cache (cache_dir=None), so each one decodes every file. Three paths
per round, in an order that rotates so machine drift hits each: plain; fan-out with its own local
cluster (cluster start and close included: what `--set checks.fan_out.workers=2` costs); fan-out on
a cluster started once beforehand (`checks.fan_out.address`: start-up excluded). The figures are
ratios of medians, plain seconds / fan-out seconds (> 1: fan-out is faster), and every fan-out
table must equal the plain one. The temporary Prefect server a script starts (a flow run has one
already) is started before timing and reported apart. The load average goes in the result: on a
shared 2-core machine other jobs take cores from both paths. Writes
benchmarks/results/image_checks_fan_out.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import pandas as pd

from core.settings import apply_offline_defaults

REPO = Path(__file__).resolve().parents[1]
TILES = REPO / "data" / "magnetic_tiles"


def _timed(paths: list[str], fan_out) -> tuple[float, pd.DataFrame]:
    from data_checks.images.properties import compute_image_properties

    started = time.perf_counter()
    table = compute_image_properties(paths, None, fan_out)
    return time.perf_counter() - started, table


def _rounds(paths: list[str], configs: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds per path and round; asserts every table equals the plain one."""
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    reference = None
    names = list(configs)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            took, table = _timed(paths, configs[name])
            reference = table if reference is None else reference
            pd.testing.assert_frame_equal(table, reference)  # results identical, or no figure at all
            seconds[name].append(took)
            print(f"round {r} {name}: {took:.2f} s  (load {os.getloadavg()[0]:.2f})", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    apply_offline_defaults()
    from distributed import LocalCluster
    from prefect.client.orchestration import get_client

    from core.fan_out import FanOut, dask_scope, local_cluster_options

    paths = sorted(str(p) for p in TILES.rglob("*.jpg"))
    load_before = os.getloadavg()
    started = time.perf_counter()
    get_client(sync_client=True).api_url  # noqa: B018 (starts the temporary Prefect server, untimed)
    server_s = time.perf_counter() - started
    started = time.perf_counter()
    with dask_scope(), LocalCluster(**local_cluster_options(args.workers)) as cluster:
        cluster_s = time.perf_counter() - started
        configs = {"plain": FanOut(), "fan_out_own_cluster": FanOut(workers=args.workers),
                   "fan_out_running_cluster": FanOut(address=cluster.scheduler_address)}  # fmt: skip
        seconds = _rounds(paths, configs, args.rounds)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    result = {
        "images": len(paths), "workers": args.workers, "threads_per_worker": 1,
        "chunks_per_worker": FanOut().chunks_per_worker, "rounds": args.rounds, "cpu_count": os.cpu_count(),
        "seconds": seconds, "median_seconds": median,
        "ratio_plain_over_fan_out_with_cluster_start": median["plain"] / median["fan_out_own_cluster"],
        "ratio_plain_over_fan_out_running_cluster": median["plain"] / median["fan_out_running_cluster"],
        "results_identical": True,
        "prefect_server_start_seconds_excluded": server_s, "local_cluster_start_seconds": cluster_s,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    (REPO / "benchmarks" / "results" / "image_checks_fan_out.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
