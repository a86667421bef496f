"""A PostgreSQL cluster of a test's own, for tests that crash or stop the server.

Never the shared server (STRONGROOM_TEST_PG_URL): other tests, and other people's
runs, use that one. The cluster is the faults benchmark's (`benchmarks/faults.py`:
`initdb` and `pg_ctl` from the newest installed PostgreSQL, on a free port, as the
`postgres` user when the tests run as root), so the tests and the benchmark crash
PostgreSQL the same way.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from benchmarks.faults import ThrowawayCluster


@pytest.fixture
def cluster() -> Iterator[ThrowawayCluster]:
    """A started cluster with an empty `strongroom` database, removed after the test."""
    root = Path(tempfile.mkdtemp(prefix="strongroom-pg-"))
    made = ThrowawayCluster(root)
    try:
        made.start()
        with psycopg.connect(made.url(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE strongroom")
        yield made
    finally:
        made.remove()
        shutil.rmtree(root, ignore_errors=True)
