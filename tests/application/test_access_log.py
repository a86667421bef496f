"""Access records are events in the same encrypted log (R3.2), with who in metadata."""

from __future__ import annotations

import pytest

from application.context import acting_as
from application.errors import AnonymousWrite
from domain.audit import AccessRecord
from tests.application.conftest import customer_fields


@pytest.mark.controls("PCI-DSS-10.2.1.1")
def test_an_access_record_is_durable_and_names_what_was_seen(app):
    record = app.register_customer(customer_fields())
    before = app.recorder.max_notification_id()
    app.access_log.record(kind="view", customer_ids=[record["id"]], fields=["email", "full_name"])
    (notification,) = app.recorder.select_notifications(start=before + 1, limit=10)
    event = app.mapper.to_domain_event(notification)
    assert isinstance(event, AccessRecord.Event)
    assert event.customer_ids == [record["id"]] and event.fields == ["email", "full_name"]
    assert app.mapper.metadata(notification)["actor_id"] == "operator:test"
    assert b"email" not in notification.state  # field names are sealed too


def test_no_actor_no_access_record(app):
    with acting_as(None), pytest.raises(AnonymousWrite):  # type: ignore[arg-type]
        app.access_log.record(kind="view", customer_ids=["x"])


def test_the_acting_context_is_stamped_field_for_field() -> None:
    """`as_metadata` is written out by hand (asdict's deep copies were a quarter of
    sealing an access record, issue 15): a field added to the context must not be
    left out of what is stamped and chained."""
    from dataclasses import asdict, fields

    from application.context import RequestContext

    context = RequestContext(actor_id="staff-1", via="api", session_id="s", client_addr="10.0.0.1",
                             purpose="case 7")
    assert context.as_metadata() == asdict(context)
    assert list(context.as_metadata()) == [f.name for f in fields(RequestContext)]
