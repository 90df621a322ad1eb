"""The fan-out's pure parts: chunking keeps order, the config refuses two clusters, and off means off."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from core.fan_out import FanOut, map_chunks, split


@pytest.mark.parametrize(("n", "parts"), [(10, 3), (3, 8), (1, 1), (7, 7), (1344, 4)])
def test_chunks_are_contiguous_near_equal_and_keep_every_item_once(n, parts):
    chunks = split(list(range(n)), parts)
    assert [x for chunk in chunks for x in chunk] == list(range(n))
    assert len(chunks) == min(n, parts) and max(map(len, chunks)) - min(map(len, chunks)) <= 1


def test_workers_and_an_address_together_are_refused():
    with pytest.raises(ValidationError, match="not both"):
        FanOut(workers=2, address="tcp://127.0.0.1:8786")
    assert not FanOut().enabled and FanOut(workers=2).enabled and FanOut(address="tcp://h:8786").enabled


def test_off_runs_in_process_without_importing_prefect_or_dask():
    """The default path pays no start-up: nothing of Prefect or Dask is imported to run it."""
    code = (
        "import sys; from core.fan_out import FanOut, map_chunks; "
        "assert map_chunks(lambda xs: [x * 2 for x in xs], [1, 2, 3], FanOut(), 't') == [2, 4, 6]; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'prefect_dask', 'distributed', 'dask'}))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"
    assert map_chunks(lambda xs: xs, [], FanOut(workers=2), "t") == []  # nothing to do starts nothing
