"""Offline settings for every test, the shared fixtures (tests/fixtures/), and one Prefect harness."""

from __future__ import annotations

import pytest

from core.settings import apply_offline_defaults

apply_offline_defaults()

pytest_plugins = ["tests.fixtures.data", "tests.fixtures.models", "tests.fixtures.vibration"]


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for the whole session (about 9 s to start).

    The harness waits 30 s for its server unless told otherwise; on 2 busy cores it took longer and
    every Prefect test errored. None: use the flows' own wait (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS).
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=None):
        yield
