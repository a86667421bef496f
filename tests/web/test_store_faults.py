"""Store faults, injected for real, answer 503 with Retry-After within the deadline (R7.6).

Each test names the fault it injects:

- PostgreSQL killed (`pg_ctl stop -m immediate`, a crash: no goodbye to clients)
  while the API answers, then started again: on a throwaway cluster of the test's
  own, never the shared server.
- SQLite's file system full: the events database on a small tmpfs, filled up.
- PostgreSQL's disk full: the database in a tablespace on a small tmpfs, filled up.

The outage test prints what it measured (503 vs 500 share, answer times, /healthz
p99, the time from PostgreSQL back to the first successful write); run with -s.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql
import pytest

from tests.throwaway_pg import cluster  # noqa: F401 - the fixture, used by name
from tests.web.customers_support import customer_body
from tests.web.helpers import quick_login
from infrastructure.faults import Watchdog
from web.errors import RETRY_AFTER_SECONDS

DEADLINE = 5.0  # the default request_deadline_seconds
SLACK = 1.5  # scheduling on a busy two-core machine, one statement after the last wait


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _requests_until(stop: threading.Event, app, agent, customer_id: str, kind: str) -> Iterator[tuple[float, float, Any]]:
    """A client creating ("write") or reading customers until `stop`: (started, finished, response) each time."""
    own = app.test_client()
    while not stop.is_set():
        started = time.monotonic()
        if kind == "write":
            response = own.post("/api/v1/customers", json=customer_body(), headers=agent)
        else:
            response = own.get(f"/api/v1/customers/{customer_id}", headers=agent)
        yield started, time.monotonic(), response


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_crash_answers_503_in_time_healthz_stays_fast_and_the_restart_heals(app_factory, cluster):
    app = app_factory(database_url=cluster.url("strongroom"))
    client = app.test_client()
    agent = quick_login(client, app)
    created = client.post("/api/v1/customers", json=customer_body(), headers=agent)
    assert created.status_code == 201, created.get_json()
    customer_id = created.get_json()["id"]
    assert client.get("/readyz").status_code == 200

    # Fault: PostgreSQL crashes while three clients read and write customers.
    answers: list[tuple[float, float, str, int, str | None]] = []
    stop = threading.Event()

    def hammer(kind: str) -> None:
        for started, finished, response in _requests_until(stop, app, agent, customer_id, kind):
            answers.append((started, finished, kind, response.status_code, response.headers.get("Retry-After")))

    cluster.crash()
    crashed_at = time.monotonic()
    workers = [threading.Thread(target=hammer, args=(kind,)) for kind in ("read", "write", "read")]
    for worker in workers:
        worker.start()
    health: list[float] = []
    ready: list[int] = []
    while time.monotonic() - crashed_at < 2 * DEADLINE + 2:
        started = time.monotonic()
        assert client.get("/healthz").status_code == 200
        health.append(time.monotonic() - started)
        if len(health) % 20 == 0:
            ready.append(client.get("/readyz").status_code)
        time.sleep(0.02)
    stop.set()
    for worker in workers:
        worker.join(timeout=3 * DEADLINE)

    # PostgreSQL comes back: the first write after it succeeds, not a stale connection's error.
    cluster.start()
    back_at = time.monotonic()
    after: list[int] = []
    while True:
        status = client.post("/api/v1/customers", json=customer_body(), headers=agent).status_code
        after.append(status)
        if status == 201 or time.monotonic() - back_at > 30:
            break
        time.sleep(0.05)
    first_write = time.monotonic() - back_at
    read_back = client.get(f"/api/v1/customers/{customer_id}", headers=agent).status_code

    during = [a for a in answers if a[0] >= crashed_at]
    statuses = [a[3] for a in during]
    durations = [a[1] - a[0] for a in during]
    print(f"\noutage: {len(during)} customer requests: {statuses.count(503)} x 503, "
          f"{statuses.count(500)} x 500, other {sorted(set(statuses) - {503, 500})}; "
          f"slowest {max(durations):.2f} s, p99 {_p99(durations):.2f} s")
    print(f"/healthz during it: {len(health)} probes, p99 {_p99(health) * 1000:.1f} ms, "
          f"max {max(health) * 1000:.1f} ms; /readyz {sorted(set(ready))}")
    print(f"PostgreSQL back -> first successful write: {first_write:.2f} s "
          f"(answers on the way: {after})")

    assert during and all(status == 503 for status in statuses), statuses
    assert all(a[4] == str(RETRY_AFTER_SECONDS) for a in during)
    assert max(durations) < DEADLINE + SLACK
    assert _p99(health) < 0.5
    assert ready and set(ready) == {503}
    assert after[-1] == 201 and first_write < 5, after
    assert 500 not in after
    assert read_back == 200
    assert client.get("/readyz").status_code == 200


@contextmanager
def small_disk(mount: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs at `mount` (mounting needs root), which the test fills."""
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        # A full disk is a fault this suite must prove handled: never skipped (CI runs as root).
        pytest.fail(f"could not mount a small tmpfs (needs root): {done.stderr.decode(errors='replace')}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "small-disk") as mount:
        yield mount


def _fill(folder: Path) -> None:
    """Write zeros until the file system refuses one more byte."""
    for name, size in (("filler", 65536), ("filler-tail", 1)):
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * size)
        except OSError:
            pass
        finally:
            os.close(fd)


def test_sqlite_disk_full_answers_503_and_readyz_is_not_ready(app_factory, full_disk):
    app = app_factory(database_url=f"sqlite:///{full_disk / 'strongroom.sqlite'}")
    client = app.test_client()
    agent = quick_login(client, app)
    assert client.post("/api/v1/customers", json=customer_body(), headers=agent).status_code == 201
    assert client.get("/readyz").status_code == 200

    # Fault: the file system holding the events database is full.
    _fill(full_disk)
    response = client.post("/api/v1/customers", json=customer_body(), headers=agent)
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["code"] == "unavailable"
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["message"] == "event store space unavailable"
    assert client.get("/healthz").status_code == 200

    # Space again: writes and readiness come back.
    (full_disk / "filler").unlink()
    (full_disk / "filler-tail").unlink()
    assert client.post("/api/v1/customers", json=customer_body(), headers=agent).status_code == 201
    assert client.get("/readyz").status_code == 200



@pytest.mark.postgres
@pytest.mark.slow
def test_a_hung_postgres_answers_503_within_the_deadline_and_heals_when_it_answers_again(app_factory, cluster):
    # Fault: every server process stopped (SIGSTOP): connections stay open and nothing
    # answers, no error either. Found from outside (issue 9): requests waited the whole
    # hang (60 s) before answering, because the deadline bounded only waits in the pool.
    deadline = 1.0
    app = app_factory(database_url=cluster.url("strongroom"), request_deadline_seconds=deadline)
    client = app.test_client()
    agent = quick_login(client, app)
    created = client.post("/api/v1/customers", json=customer_body(), headers=agent)
    assert created.status_code == 201, created.get_json()
    customer_id = created.get_json()["id"]

    answers: list[tuple[float, int]] = []
    stop = threading.Event()

    def hammer(kind: str) -> None:
        for started, finished, response in _requests_until(stop, app, agent, customer_id, kind):
            answers.append((finished - started, response.status_code))

    cluster.freeze()
    try:
        clients = [threading.Thread(target=hammer, args=(kind,)) for kind in ("write", "read", "read")]
        for thread in clients:
            thread.start()
        time.sleep(4 * deadline)
        stop.set()
        for thread in clients:
            thread.join(10 * deadline)
        assert not any(thread.is_alive() for thread in clients), "a request is still waiting on the hung server"
        ready = client.get("/readyz")
    finally:
        cluster.thaw()
    durations = [duration for duration, _ in answers]
    statuses = {status for _, status in answers}
    assert answers and statuses == {503}, statuses
    assert max(durations) < deadline + Watchdog.GRACE_SECONDS + 1.0, max(durations)
    assert ready.status_code == 503
    # The server answers again: the next requests succeed without a restart.
    healed = None
    until = time.monotonic() + 10
    while time.monotonic() < until:
        healed = client.get(f"/api/v1/customers/{customer_id}", headers=agent)
        if healed.status_code == 200:
            break
        time.sleep(0.1)
    assert healed is not None and healed.status_code == 200, healed.get_json() if healed else None
    assert client.post("/api/v1/customers", json=customer_body(), headers=agent).status_code == 201


def test_postgres_disk_full_answers_503_and_readyz_is_not_ready(app_factory, cluster):
    # The database lives in a tablespace on a small tmpfs (inside the cluster's own
    # folder, which the server's user can reach); the WAL stays on the cluster's own
    # disk, so a full tablespace refuses writes (53100) without stopping the server.
    with small_disk(cluster.root / "small-disk") as full_disk:
        _postgres_disk_full(app_factory, cluster, full_disk)


def _postgres_disk_full(app_factory, cluster, full_disk: Path) -> None:
    tablespace = full_disk / "tablespace"
    tablespace.mkdir()
    if os.geteuid() == 0:
        shutil.chown(tablespace, "postgres")
    with psycopg.connect(cluster.url(), autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("CREATE TABLESPACE small LOCATION {}").format(
            psycopg.sql.Literal(str(tablespace))))
        admin.execute("CREATE DATABASE strongroom_small TABLESPACE small")
    app = app_factory(database_url=cluster.url("strongroom_small"))
    client = app.test_client()
    agent = quick_login(client, app)
    assert client.post("/api/v1/customers", json=customer_body(), headers=agent).status_code == 201
    assert client.get("/readyz").status_code == 200

    # Fault: the disk under the database is full. Rows still fit in pages with room
    # left, so write until the server refuses one: never anything but 201 or 503.
    _fill(full_disk)
    statuses = []
    for _ in range(400):
        response = client.post("/api/v1/customers", json=customer_body(), headers=agent)
        statuses.append(response.status_code)
        if response.status_code != 201:
            break
    assert set(statuses) <= {201, 503} and statuses[-1] == 503, statuses
    assert response.get_json()["code"] == "unavailable"
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    ready = client.get("/readyz")  # a read still works; the refused write is remembered
    assert ready.status_code == 503
    assert ready.get_json()["message"] in ("event store space unavailable", "key store space unavailable")
    assert client.get("/healthz").status_code == 200

    # Space again: the next write succeeds and readiness comes back.
    (full_disk / "filler").unlink()
    (full_disk / "filler-tail").unlink()
    assert client.post("/api/v1/customers", json=customer_body(), headers=agent).status_code == 201
    assert client.get("/readyz").status_code == 200


def test_sqlite_locked_by_another_writer_answers_503_within_the_deadline(app_factory, tmp_path):
    app = app_factory(request_deadline_seconds=1)
    client = app.test_client()
    agent = quick_login(client, app)
    assert client.post("/api/v1/customers", json=customer_body(), headers=agent).status_code == 201

    # Fault: another process holds the database's write lock and does not let go.
    holder = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        response = client.post("/api/v1/customers", json=customer_body(), headers=agent)
        took = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    print(f"\nSQLite locked: {response.status_code} after {took:.2f} s")
    assert response.status_code == 503, response.get_json()
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert took < 1 + SLACK
    assert client.post("/api/v1/customers", json=customer_body(), headers=agent).status_code == 201
