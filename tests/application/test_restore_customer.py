"""One customer at a point in time (R4.5): read as of a past moment, revert to it by
appending a compensating event; history is never rewritten, erasure never undone."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from application.errors import CustomerErased, CustomerNotFound, ValidationFailed
from tests.application.conftest import customer_fields


def _moment() -> datetime:
    # Rows are stamped by the database clock; step clear of the last stamp.
    time.sleep(0.01)
    now = datetime.now(UTC)
    time.sleep(0.01)
    return now


def test_a_customer_reads_as_it_was_at_each_past_moment(app):
    before = _moment()
    record = app.register_customer(customer_fields())
    registered = _moment()
    app.update_customer(record["id"], {"email": "second@example.org", "risk_rating": "high"})
    changed = _moment()
    app.update_customer(record["id"], {"email": "third@example.org"})

    with pytest.raises(CustomerNotFound):
        app.customer_as_of(record["id"], before)  # it did not exist yet
    at_registration = app.customer_as_of(record["id"], registered)
    assert at_registration["email"] == "ada.planted@example.org"
    assert at_registration["risk_rating"] == "low" and at_registration["version"] == 1
    assert app.customer_as_of(record["id"], changed)["email"] == "second@example.org"
    assert app.customer_as_of(record["id"], datetime.now(UTC))["email"] == "third@example.org"
    # A time in another zone means the same instant.
    assert app.customer_as_of(record["id"], registered.astimezone(timezone(timedelta(hours=2))))["version"] == 1


def test_a_naive_time_is_refused_rather_than_guessed(app):
    record = app.register_customer(customer_fields())
    with pytest.raises(ValidationFailed):
        app.customer_as_of(record["id"], datetime.now())  # noqa: DTZ005 - the point of the test


def test_unknown_ids_are_not_found(app):
    with pytest.raises(CustomerNotFound):
        app.customer_as_of("not-a-uuid", datetime.now(UTC))
    with pytest.raises(CustomerNotFound):
        app.customer_as_of("6c1b3a52-55b0-4a43-9a5c-2f1f3f0b7e12", datetime.now(UTC))


def test_revert_appends_a_compensating_event_and_keeps_history(app):
    record = app.register_customer(customer_fields())
    good = _moment()
    app.update_customer(record["id"], {"email": "wrong@example.org", "risk_rating": "high"})
    app.update_customer(record["id"], {"address": {"line1": "9 Wrong Way", "city": "Leeds",
                                                   "postcode": "LS1 1AA", "country": "GB"}})
    mistaken = app.get_customer(record["id"])

    reverted = app.revert_customer(record["id"], good, "bulk edit applied to the wrong record")

    assert reverted["email"] == "ada.planted@example.org" and reverted["risk_rating"] == "low"
    assert reverted["address"]["line1"] == "1 Planted Street"
    assert reverted["version"] == mistaken["version"] + 1  # appended, not rewritten
    # The mistaken state is still in the history, at its own moment.
    assert app.customer_as_of(record["id"], datetime.now(UTC))["email"] == "ada.planted@example.org"
    events = list(app.events.get(uuid.UUID(record["id"])))
    assert type(events[-1]).__name__ == "Reverted" and events[-1].reason.startswith("bulk edit")
    assert [type(e).__name__ for e in events[:-1]] == ["Registered", "ContactChanged", "RiskRated",
                                                       "AddressChanged"]
    # Read models follow: the search finds the restored address, not the mistake.
    assert [c["id"] for c in app.find_customers("email", "ada.planted@example.org")] == [record["id"]]
    assert app.find_customers("email", "wrong@example.org") == []


def test_revert_to_before_the_customer_existed_is_refused(app):
    before = _moment()
    record = app.register_customer(customer_fields())
    with pytest.raises(ValidationFailed) as refused:
        app.revert_customer(record["id"], before, "operator typo")
    assert "to" in refused.value.errors


def test_an_erased_customer_cannot_be_read_at_any_past_moment(app):
    record = app.register_customer(customer_fields())
    when = _moment()
    app.erase_customer(record["id"], "GDPR Art. 17 request")
    with pytest.raises(CustomerErased):
        app.customer_as_of(record["id"], when)
    with pytest.raises(CustomerErased):
        app.revert_customer(record["id"], when, "trying to bring it back")


def test_as_of_after_snapshots_still_answers_each_version(app):
    record = app.register_customer(customer_fields())
    moments = []
    for i in range(60):  # past the snapshotting interval of 50
        app.update_customer(record["id"], {"segment": f"s{i}"})
        moments.append(_moment() if i in (3, 55) else None)
    assert app.customer_as_of(record["id"], moments[3])["segment"] == "s3"
    assert app.customer_as_of(record["id"], moments[55])["segment"] == "s55"
    assert app.customer_as_of(record["id"], datetime.now(UTC) + timedelta(seconds=1))["segment"] == "s59"
