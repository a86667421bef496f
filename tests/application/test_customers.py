"""Customer use cases against the real stores: write, read your write, search,
erase (R1.1-R1.3, R1.5, R3.1, R5.4)."""

from __future__ import annotations

import uuid

import pytest

from application.context import acting_as
from application.errors import AnonymousWrite, CustomerErased, CustomerNotFound, VersionConflict
from domain.errors import DomainError
from tests.application.conftest import OPERATOR, customer_fields, make_components


def test_a_registered_customer_reads_back_and_is_searchable_at_once(app):
    record = app.register_customer(customer_fields())
    assert uuid.UUID(record["id"]).version == 4  # random, never derived from data (R1.5)
    assert app.get_customer(record["id"])["email"] == "ada.planted@example.org"
    # Read-your-write: the read model committed with the events.
    view = app.customer_view(record["id"])
    assert view["full_name"] == "Ada Plantedname" and view["cards"][0]["last4"] == "1111"
    assert "pan" not in view["cards"][0] and "pan_hash" not in view["cards"][0]
    for field, value in [("email", "ADA.planted@Example.org "), ("phone", "+447700900123"),
                         ("national_id", "qq 123456 c"), ("pan", "4111 1111 1111 1111")]:
        assert [c["id"] for c in app.find_customers(field, value)] == [record["id"]], field


@pytest.mark.controls("ASVS-V11")
def test_search_never_returns_a_mere_blind_index_collision(app):
    # 8-bit indexes in tests: 40 customers share 256 buckets, so collisions happen;
    # only exact matches may come back.
    ids = [app.register_customer(customer_fields(email=f"c{i}@example.org", cards=[], bank_accounts=[],
                                                  national_id=None, phone=None))["id"] for i in range(40)]
    for i in (0, 17, 39):
        assert [c["id"] for c in app.find_customers("email", f"c{i}@example.org")] == [ids[i]]
    assert app.find_customers("email", "nobody@example.org") == []


def test_updates_apply_domain_rules_and_respect_the_expected_version(app):
    record = app.register_customer(customer_fields())
    updated = app.update_customer(record["id"], {"email": "new@example.org"}, expected_version=record["version"])
    assert updated["email"] == "new@example.org"
    assert [c["id"] for c in app.find_customers("email", "new@example.org")] == [record["id"]]
    assert app.find_customers("email", "ada.planted@example.org") == []
    with pytest.raises(VersionConflict):
        app.update_customer(record["id"], {"risk_rating": "high"}, expected_version=record["version"])
    with pytest.raises(DomainError):
        app.update_customer(record["id"], {"kyc_status": "verified"})  # not_started -> verified is not allowed
    assert app.get_customer(record["id"])["kyc_status"] == "not_started"


def test_interactions_are_projected_with_sealed_notes(app, components):
    record = app.register_customer(customer_fields())
    app.record_interaction(record["id"], kind="call", channel="phone", notes="Called about a planted complaint")
    (row,) = app.interactions(record["id"])
    assert row["notes"] == "Called about a planted complaint" and row["kind"] == "call"


@pytest.mark.controls("PCI-DSS-10.2.2")
def test_no_actor_no_write(components):
    with acting_as(None), pytest.raises(AnonymousWrite):  # type: ignore[arg-type]
        components.app.register_customer(customer_fields())
    assert components.directory.counts()["rm_customers"] == 0


def test_unknown_and_malformed_ids_are_not_found(app):
    with pytest.raises(CustomerNotFound):
        app.get_customer(uuid.uuid4())
    with pytest.raises(CustomerNotFound):
        app.get_customer("not-a-uuid")


@pytest.mark.controls("PCI-DSS-3.7.5", "GDPR-5.1.e", "GDPR-17", "CCPA-1798.105")
def test_erasure_destroys_keys_purges_read_models_and_spares_others(app, components):
    erased = app.register_customer(customer_fields())
    app.record_interaction(erased["id"], kind="note", channel="branch", notes="planted note")
    kept = app.register_customer(customer_fields(email="kept@example.org", full_name="Kept Customer"))
    result = app.erase_customer(erased["id"], reason="GDPR Art. 17 request #1")
    # R5.4: the relationship ends with the erasure, so the AML hold keeps the KYC key.
    assert result["keys_destroyed"] == ["profile"] and result["kept"] == {"kyc": ["aml_retention"]}
    with pytest.raises(CustomerErased):
        app.get_customer(erased["id"])
    with pytest.raises(CustomerErased):
        app.customer_view(erased["id"])
    assert app.find_customers("email", "ada.planted@example.org") == []
    assert app.find_customers("national_id", "QQ123456C") == [app.customer_view(kept["id"])]
    assert components.keyring.status(erased["id"]) == {"profile": "destroyed", "kyc": "active"}
    assert app.get_customer(kept["id"])["full_name"] == "Kept Customer"
    # Erasing again finds the first record: idempotent, and still erased.
    assert app.erase_customer(erased["id"], reason="again")["erasure_id"] == result["erasure_id"]


def test_the_erasure_record_is_readable_without_the_destroyed_keys(app):
    erased = app.register_customer(customer_fields())
    result = app.erase_customer(erased["id"], reason="GDPR Art. 17 request #2")
    (recorded,) = app.events.get(uuid.UUID(result["erasure_id"]))
    assert recorded.customer_id == erased["id"] and recorded.reason == "GDPR Art. 17 request #2"
    stored = app.recorder.select_events(uuid.UUID(result["erasure_id"]))[0]
    assert app.mapper.metadata(stored)["actor_id"] == "operator:test"


def test_rebuild_reproduces_the_read_model_and_skips_erased_customers(app, components):
    a = app.register_customer(customer_fields())
    b = app.register_customer(customer_fields(email="b@example.org"))
    app.update_customer(a["id"], {"risk_rating": "high"})
    app.record_interaction(b["id"], kind="call", channel="phone", notes="hello")
    app.erase_customer(a["id"], reason="request")
    before = components.directory.get(b["id"])
    count = components.projection.rebuild(app)
    assert count == app.recorder.max_notification_id()
    assert components.directory.get(a["id"]) is None
    assert components.directory.get(b["id"]) == before
    assert len(app.interactions(b["id"])) == 1


def test_rebuild_to_a_position_shows_the_past(app, components):
    a = app.register_customer(customer_fields())
    position = app.recorder.max_notification_id()
    app.update_customer(a["id"], {"risk_rating": "high"})
    components.projection.rebuild(app, upto=position)
    assert components.directory.get(a["id"])["risk_rating"] == "low"
    components.projection.catch_up(app)
    assert components.directory.get(a["id"])["risk_rating"] == "high"


def test_many_events_snapshot_encrypted_and_reload(app):
    record = app.register_customer(customer_fields())
    for i in range(55):
        app.record_interaction(record["id"], kind="note", channel="web", notes=f"planted snapshot note {i}")
    assert app.snapshots is not None
    snapshot = app.snapshots.recorder.select_events(uuid.UUID(record["id"]), desc=True, limit=1)[0]
    assert b"planted snapshot note" not in snapshot.state
    assert len(app.get_customer(record["id"]) and app.repository.get(uuid.UUID(record["id"])).interactions) == 55


def test_a_second_process_with_the_wrong_kek_cannot_start(tmp_path, database_url):
    from infrastructure.crypto.kek import KekError

    first = make_components(tmp_path, database_url)
    with acting_as(OPERATOR):
        first.app.register_customer(customer_fields())
    first.close()
    (tmp_path / "instance" / "kek.key").unlink()
    with pytest.raises(KekError):
        make_components(tmp_path, database_url)
