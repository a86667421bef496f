"""A record rebuilt from its events is the record that made them: replay is deterministic,
and events and snapshots go through the library's JSON transcoder unchanged."""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from typing import Any

import pytest
from eventsourcing.application import Application

from tests.domain.lives import WHOLE_LIVES


@pytest.mark.parametrize("live", WHOLE_LIVES, ids=lambda live: live.__name__)
def test_replaying_the_events_rebuilds_the_same_state(live: Callable[[], Any]) -> None:
    original = live()
    events = original.collect_events()
    rebuilt = reduce(lambda aggregate, event: event.mutate(aggregate), events, None)
    assert rebuilt == original
    assert rebuilt.to_record() == original.to_record()


@pytest.mark.parametrize("live", WHOLE_LIVES, ids=lambda live: live.__name__)
def test_stored_events_and_a_snapshot_read_back_the_same(live: Callable[[], Any]) -> None:
    app: Application[Any] = Application(env={"IS_SNAPSHOTTING_ENABLED": "y"})
    original = live()
    app.save(original)

    from_events = app.repository.get(original.id)
    assert from_events == original

    app.take_snapshot(original.id)
    from_snapshot = app.repository.get(original.id)
    assert from_snapshot == original
    assert from_snapshot.to_record() == original.to_record()
