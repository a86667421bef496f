"""The rebuild over worker processes, the log partitioned by customer (issue 15, R1.3,
R3.6, R5.4): row for row what the one-process rebuild makes, and a killed worker
loses nothing. On SQLite and again on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time

import pytest

from application.context import RequestContext, acting_as
from domain.alerts import Alert
from infrastructure.partitioned_rebuild import TABLE, RebuildInterrupted, create_partition_table, partition_of
from infrastructure.readmodel import CLEAR_COLUMNS, SEALED_COLUMNS
from tests.application.conftest import customer_fields


def _fill(app, customers: int, interactions: int = 1) -> list[str]:
    ids = []
    for n in range(customers):
        customer = app.register_customer(customer_fields(
            email=f"c{n}@example.org", national_id=f"QQ{100000 + n}C", phone=f"+44 7700 9{n:05d}"))
        for k in range(interactions):
            app.record_interaction(customer["id"], "call", "phone", f"note {n}/{k}")
        ids.append(customer["id"])
    return ids


def _raise_alert(app, key: str) -> None:
    alert = Alert.raise_alert(rule_id="search_burst", key=key, severity="high", summary="burst",
                              actor_id="staff-agent-1", client_addr="203.0.113.77", customer_ids=(),
                              positions=[int(key)])
    with acting_as(RequestContext(actor_id="monitor", via="worker")):
        app.save(alert)


def read_model_digest(components) -> dict[str, tuple[int, str]]:
    """Every read-model row, sealed columns opened (seals differ run to run, content must
    not), positions included: (rows, SHA-256) per table."""
    sealer, alerts = components.directory.sealer, components.alert_table
    tables: dict[str, list] = {}
    with components.events_db.transaction(write=False) as cur:
        columns = ("customer_id", *CLEAR_COLUMNS, *SEALED_COLUMNS, "position")
        cur.execute(f"SELECT {', '.join(columns)} FROM rm_customers ORDER BY customer_id")  # nosec B608
        rows = []
        for row in cur.fetchall():
            record = dict(zip(columns, row, strict=True))
            cid = record["customer_id"]
            for column in SEALED_COLUMNS:
                record[column] = sealer.open("rm_customers", column, cid, cid, record[column])
            rows.append(record)
        tables["rm_customers"] = rows
        cur.execute("SELECT field, digest, customer_id FROM rm_customer_search ORDER BY field, digest, customer_id")
        tables["rm_customer_search"] = [list(r) for r in cur.fetchall()]
        cur.execute("SELECT interaction_id, customer_id, kind, channel, occurred_at, notes, position"
                    " FROM rm_interactions ORDER BY interaction_id")
        tables["rm_interactions"] = [
            [*r[:5], sealer.open("rm_interactions", "notes", r[1], r[0], r[5], field="notes"), r[6]]
            for r in cur.fetchall()]
        cur.execute("SELECT id, rule_id, severity, status, raised_at, actor_id, version, position, record"
                    " FROM alerts ORDER BY id")
        tables["alerts"] = [[*r[:8], alerts._open(r[0], r[8])] for r in cur.fetchall()]  # noqa: SLF001
        cur.execute("SELECT name, position FROM rm_tracking ORDER BY name")
        tables["rm_tracking"] = [list(r) for r in cur.fetchall()]
    return {name: (len(rows), hashlib.sha256(json.dumps(rows, default=str, sort_keys=True).encode()).hexdigest())
            for name, rows in tables.items()}


def test_the_parallel_rebuild_makes_exactly_the_rows_the_sequential_one_makes(components, app):
    ids = _fill(app, 12)
    app.update_customer(ids[3], {"risk_rating": "high"})
    app.erase_customer(ids[5], "data subject request")  # R5.4: the purge follows the rows
    _raise_alert(app, "1")
    _raise_alert(app, "2")
    head = components.operations.log_head()
    assert {partition_of(i, 2) for i in ids} == {0, 1}  # both workers have customers

    sequential = components.operations.rebuild_read_models()
    expected = read_model_digest(components)
    assert expected["rm_customers"][0] == 11 and expected["alerts"][0] == 2
    assert expected["rm_interactions"][0] == 11  # the erased customer's went with it

    parallel = components.operations.rebuild_read_models(jobs=2)
    assert parallel.position == sequential.position == head
    assert parallel.events == head
    assert read_model_digest(components) == expected
    assert components.app.find_customers("email", "c3@example.org")[0]["risk_rating"] == "high"
    assert components.app.find_customers("email", "c5@example.org") == []

    # Up to a past position, as "rebuild to T" and a point-in-time restore ask.
    upto = head - 10
    components.operations.rebuild_read_models(upto)
    before = read_model_digest(components)
    assert components.operations.rebuild_read_models(upto, jobs=3).position == upto
    assert read_model_digest(components) == before


def _partition_positions(components) -> dict[int, int]:
    with components.events_db.transaction(write=False) as cur:
        cur.execute(f"SELECT partition_no, position FROM {TABLE}")  # nosec B608
        return {int(p): int(pos) for p, pos in cur.fetchall()}


def test_a_killed_worker_loses_nothing_and_the_rerun_resumes_its_partition(components, app):
    """Fault: one worker process is SIGKILLed mid-rebuild. Its committed pages stay; the
    read model does not claim to be current; the rerun resumes and ends the same."""
    _fill(app, 30, interactions=3)
    head = components.operations.log_head()
    partitioned, projection = components.projection.partitioned, components.projection
    partitioned.run(projection, app, jobs=1, page=2)  # uninterrupted, the same pages
    expected = read_model_digest(components)

    outcome: dict[str, object] = {}

    def rebuild() -> None:
        try:
            outcome["read"] = partitioned.run(projection, app, jobs=2, page=2)
        except RebuildInterrupted as exc:
            outcome["error"] = exc

    runner = threading.Thread(target=rebuild)
    runner.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        try:
            positions = _partition_positions(components)
        except Exception:  # the table is made by the run itself
            positions = {}
        if positions.get(1, 0) > 0:  # partition 0 runs in this process, partition 1 in a worker
            import multiprocessing

            victim = next((p for p in multiprocessing.active_children() if p.name == "strongroom-rebuild-1"), None)
            assert victim is not None, "partition 1 finished before it could be killed"
            os.kill(victim.pid, signal.SIGKILL)
        time.sleep(0.005)
    runner.join(120)
    assert isinstance(outcome.get("error"), RebuildInterrupted), outcome
    assert "partition 1 of 2" in str(outcome["error"])
    left = _partition_positions(components)
    assert 0 < left[1] < head  # killed part-way, its pages up to there committed
    assert components.operations.read_model_position() == 0  # not taken for current

    read = partitioned.run(projection, app, jobs=2, page=2)
    assert read < head  # resumed, not started over
    assert _partition_positions(components) == {}
    assert read_model_digest(components) == expected
    assert components.operations.read_model_position() == head


def test_when_this_process_fails_its_partition_the_workers_stop_and_the_rerun_resumes(components, app, monkeypatch):
    """Fault: partition 0, projected in the calling process, fails part-way (the store
    goes away). The rebuild raises that failure, stops the worker rather than leave it
    writing behind the caller's back, and claims nothing; the rerun ends the same."""
    import multiprocessing

    from infrastructure import partitioned_rebuild
    from infrastructure.sql import DatabaseUnavailable

    _fill(app, 30)
    head = components.operations.log_head()
    partitioned, projection = components.projection.partitioned, components.projection
    partitioned.run(projection, app, jobs=1, page=2)
    expected = read_model_digest(components)

    caller = os.getpid()
    real = partitioned_rebuild.project_partition

    def failing_here(*args, report=None, **kwargs):
        def report_then_fail(last: int) -> None:
            report(last)
            if os.getpid() == caller and last >= 30:  # the forked worker runs the real thing
                deadline = time.monotonic() + 30  # once the worker has committed a page
                while not _partition_positions(components).get(1) and time.monotonic() < deadline:
                    time.sleep(0.01)
                raise DatabaseUnavailable("the store went away")
        return real(*args, report=report_then_fail, **kwargs)

    monkeypatch.setattr(partitioned_rebuild, "project_partition", failing_here)
    with pytest.raises(DatabaseUnavailable):
        partitioned.run(projection, app, jobs=2, page=2)
    assert [p for p in multiprocessing.active_children() if p.name.startswith("strongroom-rebuild")] == []
    assert components.operations.read_model_position() == 0  # not taken for current
    assert 0 < _partition_positions(components)[0] < head  # partition 0 stopped part-way

    monkeypatch.setattr(partitioned_rebuild, "project_partition", real)
    read = partitioned.run(projection, app, jobs=2, page=2)
    assert read < head  # resumed, not started over
    assert read_model_digest(components) == expected
    assert components.operations.read_model_position() == head


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_rerun_with_other_jobs_after_a_kill_starts_over_cleanly(components, app, jobs):
    _fill(app, 6)
    components.operations.rebuild_read_models()
    expected = read_model_digest(components)
    projection = components.projection
    # A killed run of three partitions, frozen as it would be left: two pages in.
    with components.events_db.transaction() as cur:
        projection.directory.clear(cur)
        create_partition_table(cur, components.events_db.dialect)
        cur.execute(f"DELETE FROM {TABLE}")  # nosec B608
        for partition in range(3):
            cur.execute(f"INSERT INTO {TABLE} (partition_no, partitions, target, position)"  # nosec B608
                        " VALUES (?, 3, ?, 1)", (partition, components.operations.log_head()))
    assert components.operations.rebuild_read_models(jobs=jobs).events == components.operations.log_head()
    assert read_model_digest(components) == expected


def test_the_database_sends_each_partition_exactly_its_own_streams(components, app):
    """The partition the store computes from the stored id (SQL) is `partition_of`'s, on
    both stores: every row reaches exactly one partition, the one its stream belongs to,
    except erasure records, which every partition receives; the pages are the pages
    `select_notifications` makes."""
    from infrastructure.partitioned_rebuild import EVERY_PARTITION_TOPICS

    ids = _fill(app, 40)
    app.erase_customer(ids[7], "data subject request")
    head = components.operations.log_head()
    everything = app.recorder.select_notifications(start=1, limit=head)
    erasures = {n.id for n in everything if n.topic in EVERY_PARTITION_TOPICS}
    assert erasures
    for partitions in (2, 3, 5):
        seen: dict[int, list[int]] = {}
        start = 1
        while True:
            pages = [app.recorder.select_partition(start, 7, p, partitions, EVERY_PARTITION_TOPICS)
                     for p in range(partitions)]
            expected_page = app.recorder.select_notifications(start=start, limit=7)
            if not expected_page:
                assert {page.last for page in pages} == {None}
                break
            assert {(page.last, page.size) for page in pages} == {(expected_page[-1].id, len(expected_page))}
            for p, page in enumerate(pages):
                for n in page.notifications:
                    seen.setdefault(n.id, []).append(p)
            start = expected_page[-1].id + 1
        for n in everything:
            if n.id in erasures:
                assert seen[n.id] == list(range(partitions))
            else:
                assert seen[n.id] == [partition_of(n.originator_id, partitions)], (n.originator_id, partitions)
