"""An access record's event made directly (issue 15 item 4) is the event the
aggregate would record (R3.2): same class, so the same topic as records already
stored, same attributes, same checks, and replaying it builds the same aggregate."""

from __future__ import annotations

import pytest
from eventsourcing.utils import get_topic

from domain.audit import AccessRecord
from domain.errors import InvalidField

FIELDS = {"kind": "view", "outcome": "allowed", "customer_ids": ["c-1", "c-2"], "fields": ["email"],
          "details": {"reason": "support"}}


def test_the_direct_event_is_the_one_the_aggregate_records() -> None:
    made = AccessRecord(**FIELDS).collect_events()[0]
    direct = AccessRecord.recorded(**FIELDS)

    assert type(direct) is type(made)
    assert get_topic(type(direct)) == "domain.audit:AccessRecord.Recorded"
    assert direct.originator_topic == made.originator_topic == get_topic(AccessRecord)
    assert direct.originator_version == made.originator_version == 1
    ignore = {"originator_id", "timestamp"}
    assert {k: v for k, v in vars(direct).items() if k not in ignore} == {
        k: v for k, v in vars(made).items() if k not in ignore}
    assert direct.originator_id != AccessRecord.recorded(**FIELDS).originator_id  # a new id each time


def test_replaying_the_direct_event_builds_the_aggregate() -> None:
    event = AccessRecord.recorded(**FIELDS)

    record = event.mutate(None)

    assert isinstance(record, AccessRecord)
    assert (record.id, record.version, record.kind, record.outcome, record.customer_ids, record.fields,
            record.details) == (event.originator_id, 1, "view", "allowed", ["c-1", "c-2"], ["email"],
                                {"reason": "support"})


@pytest.mark.parametrize("change", [{"kind": "peek"}, {"outcome": "maybe"}])
def test_the_direct_event_refuses_what_the_aggregate_refuses(change: dict[str, str]) -> None:
    with pytest.raises(InvalidField):
        AccessRecord(**{**FIELDS, **change})
    with pytest.raises(InvalidField):
        AccessRecord.recorded(**{**FIELDS, **change})
