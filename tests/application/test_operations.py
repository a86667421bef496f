"""The operator's use cases over the log, the read models and the keys, as the command
line calls them, on SQLite and again on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.application.conftest import customer_fields


def test_rebuilding_to_a_past_moment_leaves_out_what_came_after(components, app):
    first = app.register_customer(customer_fields())
    between = datetime.now(UTC)
    app.register_customer(customer_fields(email="bea@example.org", national_id="QQ123457C",
                                          phone="+44 7700 900124"))
    operations = components.operations
    head = operations.log_head()
    upto = operations.position_at(between)
    assert 0 < upto < head
    rebuilt = operations.rebuild_read_models(upto)
    assert rebuilt.position == upto == operations.read_model_position()
    assert [c["id"] for c in app.find_customers("email", "ada.planted@example.org")] == [first["id"]]
    assert app.find_customers("email", "bea@example.org") == []
    progressed = []
    assert operations.rebuild_read_models(progress=progressed.append).position == head
    assert sum(progressed) == head
    assert len(app.find_customers("email", "bea@example.org")) == 1
    assert operations.position_at(between - timedelta(days=1)) == 0


def test_key_status_counts_keys_and_shows_a_customers_erasure(components, app):
    customer = app.register_customer(customer_fields())
    before = components.operations.key_status(customer["id"])
    assert before["customer"] == {"id": customer["id"], "profile": "active", "kyc": "active"}
    app.erase_customer(customer["id"], "data subject request")
    after = components.operations.key_status(customer["id"])
    assert after["kek_id"] == before["kek_id"]
    # R5.4: the AML hold keeps the KYC key of a relationship that ends with the erasure.
    assert after["customer"]["kyc"] == "active"
    assert after["customer"]["profile"] == "destroyed" and after["data_keys"]["destroyed"] == 1
    assert "customer" not in components.operations.key_status()


def test_following_the_log_stops_when_told(components):
    calls = []
    components.operations.follow_log(stop=lambda: calls.append(1) or len(calls) > 2)
    assert len(calls) == 3
