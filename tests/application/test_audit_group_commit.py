"""Access records are committed in groups, and no caller is told a lie (R3.2).

Sixteen staff members read at once; each one's access record must carry that
staff member (not whoever happened to commit the group), be durable when
`record()` returns, and share its transaction with others'. When a group's commit
fails, every caller in that group hears about it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from application.context import RequestContext, acting_as
from domain.audit import AccessRecord

CALLERS = 16


class SlowRecorderSpy:
    """Wraps the recorder: counts transactions, slows them so callers pile up, can fail."""

    def __init__(self, recorder: Any, delay: float = 0.05) -> None:
        self.recorder = recorder
        self.delay = delay
        self.groups: list[int] = []
        self.fail_next = False
        self._lock = threading.Lock()

    def insert_events(self, stored_events: Sequence[Any], **kwargs: Any) -> Any:
        time.sleep(self.delay)
        with self._lock:
            self.groups.append(len(stored_events))
            if self.fail_next:
                self.fail_next = False
                raise ConnectionError("the database went away mid-commit")
        return self.recorder.insert_events(stored_events, **kwargs)


def _staff(n: int) -> RequestContext:
    return RequestContext(actor_id=f"staff-{n:02d}", via="api", session_id=f"session-{n}", purpose=f"case {n}")


def _read_concurrently(app: Any, count: int) -> tuple[list[BaseException | None], list[float]]:
    results: list[BaseException | None] = [None] * count
    returned_at: list[float] = [0.0] * count
    barrier = threading.Barrier(count)

    def read(n: int) -> None:
        with acting_as(_staff(n)):
            barrier.wait()
            try:
                app.access_log.record(kind="view", customer_ids=[f"customer-{n}"], fields=["email"])
            except BaseException as exc:  # noqa: BLE001 - compared below
                results[n] = exc
            returned_at[n] = time.monotonic()

    threads = [threading.Thread(target=read, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results, returned_at


def _access_records(app: Any) -> list[tuple[Any, dict[str, Any], Any]]:
    found = []
    for notification in app.recorder.select_notifications(start=1, limit=10_000):
        event = app.mapper.to_domain_event(notification)
        if isinstance(event, AccessRecord.Event):
            found.append((notification, app.mapper.metadata(notification), event))
    return found


def test_sixteen_readers_share_transactions_and_keep_their_own_actor(app: Any) -> None:
    spy = SlowRecorderSpy(app.recorder)
    app.access_log.app = type("Store", (), {"mapper": app.mapper, "recorder": spy})()
    results, _ = _read_concurrently(app, CALLERS)
    assert results == [None] * CALLERS
    # Fewer transactions than records: callers waited for a group rather than
    # taking a transaction each (the first caller leads alone; the rest pile up).
    assert sum(spy.groups) == CALLERS
    assert len(spy.groups) < CALLERS and max(spy.groups) > 1
    records = _access_records(app)
    assert len(records) == CALLERS
    for _, meta, event in records:
        n = int(meta["actor_id"].split("-")[1])
        assert event.customer_ids == [f"customer-{n}"]
        assert meta["session_id"] == f"session-{n}" and meta["purpose"] == f"case {n}"
        assert meta["via"] == "api"


def test_when_more_wait_than_a_group_holds_the_lead_passes_on_until_all_are_committed(app: Any) -> None:
    """Groups of at most two for sixteen callers: each leader commits one group and hands
    the lead to the oldest caller still waiting; nobody is left waiting or committed twice."""
    spy = SlowRecorderSpy(app.recorder, delay=0.01)
    app.access_log.app = type("Store", (), {"mapper": app.mapper, "recorder": spy})()
    app.access_log.max_group = 2
    results, returned_at = _read_concurrently(app, CALLERS)
    assert results == [None] * CALLERS
    assert all(returned_at)  # every caller returned (none left waiting past the join)
    assert sum(spy.groups) == CALLERS and max(spy.groups) <= 2
    assert len(_access_records(app)) == CALLERS


def test_a_failed_group_commit_is_raised_to_every_caller_in_it(app: Any) -> None:
    spy = SlowRecorderSpy(app.recorder, delay=0.1)
    app.access_log.app = type("Store", (), {"mapper": app.mapper, "recorder": spy})()
    spy.fail_next = True
    results, _ = _read_concurrently(app, 8)
    failed = [r for r in results if r is not None]
    # The first group failed: exactly its members heard about it, and nothing of
    # that group was stored (one transaction: all or nothing).
    assert len(failed) == spy.groups[0]
    assert all(isinstance(r, ConnectionError) for r in failed)
    assert len(_access_records(app)) == 8 - len(failed)
    # The log goes on working for the next readers.
    with acting_as(_staff(99)):
        app.access_log.record(kind="view", customer_ids=["customer-99"], fields=[])
    assert len(_access_records(app)) == 9 - len(failed)


def test_record_returns_only_once_the_record_is_readable_from_the_store(app: Any, components: Any) -> None:
    before = app.recorder.max_notification_id() or 0
    with acting_as(_staff(1)):
        app.access_log.record(kind="reveal", customer_ids=["customer-1"], fields=["national_id"])
    # Read back through a separate connection pool: committed, not merely queued.
    from eventsourcing.persistence import InfrastructureFactory
    from eventsourcing.utils import Environment

    from infrastructure.eventstore import recorder_environment

    factory = InfrastructureFactory.construct(
        Environment("strongroom", recorder_environment(components.settings.database_url) | {"CREATE_TABLE": "n"})
    )
    try:
        notifications = factory.application_recorder().select_notifications(start=before + 1, limit=10)
    finally:
        factory.close()
    assert len(notifications) == 1
    assert app.mapper.metadata(notifications[0])["actor_id"] == "staff-01"


def test_no_actor_is_refused_before_anything_is_queued(app: Any) -> None:
    from application.errors import AnonymousWrite

    with acting_as(None), pytest.raises(AnonymousWrite):  # type: ignore[arg-type]
        app.access_log.record(kind="view", customer_ids=["x"])
    assert app.access_log._queue == []
