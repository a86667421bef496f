"""The monitor's position when a page raised nothing (R3.6, R7.4), on SQLite and on
PostgreSQL: it is written with the next batch rather than every 0.1 s, and a monitor
killed before writing it reads those rows again and still raises each alert once."""

from __future__ import annotations

import infrastructure.monitor
from infrastructure.monitor import build_monitor
from tests.application.test_monitoring import as_client, signed_in, stored_alerts, watched  # noqa: F401


def _search_nothing(built, actor, words):
    with as_client("192.0.2.10", actor.staff_id, actor.session_id):
        for word in words:
            built.customers.search(actor, field="email", value=f"{word}@example.org")


def test_rows_that_raised_nothing_are_read_again_after_a_kill_and_the_alert_is_stored_once(watched, monkeypatch):
    monkeypatch.setattr(infrastructure.monitor, "POSITION_EVERY", 600.0)  # no timed write in this story
    _, opened, _ = signed_in(watched)
    actor = watched.identity.authenticate(opened.token).actor
    first = build_monitor(watched)
    _search_nothing(watched, actor, [f"a{n}" for n in range(4)])
    first.catch_up()
    head = watched.app.recorder.max_notification_id()
    assert first.store.position() == first.position == head  # caught up: written

    _search_nothing(watched, actor, [f"b{n}" for n in range(4)])
    assert first.step() > 0  # eight empty searches: below the rule's ten, nothing found
    assert first.position > head and first.store.position() == head  # read, not yet written
    # The monitor is killed here. The oracle attack goes on.
    _search_nothing(watched, actor, [f"c{n}" for n in range(4)])

    second = build_monitor(watched)
    second.catch_up()  # the four unwritten rows read again, with the four new ones
    found = stored_alerts(watched.app, "searches_empty")
    assert len(found) == 1 and found[0][0].details["count"] == "10"  # one burst across the kill
    assert second.store.position() == watched.app.recorder.max_notification_id()
    build_monitor(watched).catch_up()
    assert len(stored_alerts(watched.app, "searches_empty")) == 1
