"""Erasure against AML holds, certified, and the retention run (R5.4, R5.5, R4.6),
on SQLite and again on PostgreSQL (STYLE 12).

A data-protection officer's questions: after an erasure under hold, is the contact
data gone, is the KYC part kept and readable only by a compliance officer for a
stated purpose, does the certificate verify (and a changed one not), and does a
retention run with the clock moved forward destroy exactly what is due?
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from domain.audit import AccessRecord
from application.context import acting_as
from application.errors import CustomerErased, CustomerNotFound, ValidationFailed
from application.policy import AccessDenied, StepUpRequired
from application.security import Actor
from infrastructure.audit.erasure_certificate import CertificateInvalid, verify_certificate
from tests.application.conftest import OPERATOR, customer_fields, make_components

YEAR = timedelta(days=365.25)


def staff(*roles: str, stepped_up: bool = True) -> Actor:
    """Trained (R6.4): the held KYC read is a reveal, which an untrained member never gets."""
    return Actor(staff_id=f"staff-{'-'.join(roles)}", username="-".join(roles), roles=frozenset(roles),
                 portfolios=frozenset({"retail"}), trained_at=datetime.now(UTC),
                 stepped_up_at=datetime.now(UTC) if stepped_up else None)


@pytest.fixture
def built(tmp_path, database_url):
    components = make_components(tmp_path, database_url)
    with acting_as(OPERATOR):
        yield components
    components.close()


def access_records(app, customer_id):
    """(event, metadata) of every access record naming the customer, from the log."""
    found = []
    for notification in app.recorder.select_notifications(start=1, limit=100_000):
        if "AccessRecord" not in notification.topic:
            continue  # the erased customer's own events no longer open
        event = app.mapper.to_domain_event(notification)
        if isinstance(event, AccessRecord.Event) and customer_id in getattr(event, "customer_ids", ()):
            found.append((event, app.mapper.metadata(notification)))
    return found


@pytest.mark.controls("GDPR-17", "CCPA-1798.105")
def test_erasure_under_aml_hold_keeps_the_kyc_part_restricted_to_compliance(built):
    app, erasures = built.app, built.erasures
    ada = app.register_customer(customer_fields())
    app.record_interaction(ada["id"], kind="note", channel="branch", notes="planted note")
    other = app.register_customer(customer_fields(email="other@example.org", full_name="Other Person"))

    result = erasures.erase(ada["id"], "DSR-2026-7 erasure request")

    # The relationship ends with the erasure: the AML hold keeps KYC for 5 years.
    assert result["keys_destroyed"] == ["profile"] and result["kept"] == {"kyc": ["aml_retention"]}
    hold_until = datetime.fromisoformat(result["hold_until"])
    assert timedelta(days=1826) <= hold_until - datetime.fromisoformat(result["recorded_at"]) <= timedelta(days=1827)
    assert built.keyring.status(ada["id"]) == {"profile": "destroyed", "kyc": "active"}
    # Contact data gone everywhere staff normally read.
    with pytest.raises(CustomerErased):
        app.get_customer(ada["id"])
    with pytest.raises(CustomerErased):
        app.customer_view(ada["id"])
    assert app.find_customers("email", "ada.planted@example.org") == []
    assert app.find_customers("national_id", "QQ123456C") == [app.customer_view(other["id"])]

    # The compliance officer reads the KYC part, for a purpose: no contact data in it.
    officer = staff("compliance_officer")
    held = erasures.held_kyc(officer, ada["id"], "AML case 114: SAR follow-up")
    assert held["national_id"] == "QQ123456C" and held["full_name"] == "Ada Plantedname"
    assert held["bank_accounts"][0]["iban"] == "GB82WEST12345698765432"
    assert held["cards"][0]["last4"] == "1111" and "pan" not in held["cards"][0]
    assert "email" not in held and "phone" not in held and "interactions" not in held
    assert held["restricted"] is True and held["profile"] == "erased"

    # Everyone else is refused, the refusal recorded: a DPO, an agent, the operator...
    for who in (staff("dpo"), staff("agent"), staff("supervisor"),
                Actor(staff_id="operator:test", username="op", roles=frozenset({"operator"}),
                      portfolios=frozenset())):
        with pytest.raises(AccessDenied):
            erasures.held_kyc(who, ada["id"], "curious")
    # ...and a compliance officer without a purpose, or without a fresh step-up.
    with pytest.raises(ValidationFailed):
        erasures.held_kyc(officer, ada["id"], " ")
    with pytest.raises(StepUpRequired):
        erasures.held_kyc(staff("compliance_officer", stepped_up=False), ada["id"], "AML case 114")
    # A customer who was never erased has no held part to read here.
    with pytest.raises(CustomerNotFound):
        erasures.held_kyc(officer, other["id"], "AML case 114")


def test_the_held_read_and_every_refusal_are_in_the_access_records(built):
    app, erasures = built.app, built.erasures
    ada = app.register_customer(customer_fields())
    erasures.erase(ada["id"], "DSR-8")
    held = erasures.held_kyc(staff("compliance_officer"), ada["id"], "AML case 115")
    with pytest.raises(AccessDenied):
        erasures.held_kyc(staff("agent"), ada["id"], "curious")
    records = [(e.kind, e.outcome, dict(e.details), list(e.fields), m.get("purpose"))
               for e, m in access_records(app, ada["id"])]
    reveal, refusal = records[-2], records[-1]
    assert reveal[:3] == ("reveal", "allowed", {"operation": "held_kyc"}) and reveal[4] == "AML case 115"
    assert "national_id" in reveal[3] and set(reveal[3]) <= set(held)
    assert refusal[:3] == ("denied", "denied", {"operation": "held_kyc", "reason": "role"})


@pytest.mark.controls("GDPR-17")
def test_the_certificate_verifies_with_the_public_key_and_a_changed_one_does_not(built):
    ada = built.app.register_customer(customer_fields())
    result = built.erasures.erase(ada["id"], "DSR-9")
    document = result["certificate"]
    public_key = built.tamper_evidence.signer.public_key
    body = verify_certificate(document, public_key)
    assert body["subject_id"] == ada["id"] and body["keys_destroyed"] == ["profile"]
    assert body["keys_kept"] == {"kyc": {"holds": ["aml_retention"], "until": result["hold_until"]}}
    assert body["chain_position"] == result["position"] and body["chain_position"] > 0
    for field, forged in (("keys_destroyed", ["profile", "kyc"]), ("hold_until", None), ("subject_id", "x")):
        tampered = copy.deepcopy(document)
        tampered["certificate"][field] = forged
        with pytest.raises(CertificateInvalid):
            verify_certificate(tampered, public_key)


def test_without_a_hold_both_keys_go_and_the_certificate_says_so(tmp_path, database_url):
    built = make_components(tmp_path, database_url, aml_retention_years=0)
    try:
        with acting_as(OPERATOR):
            ada = built.app.register_customer(customer_fields())
            result = built.erasures.erase(ada["id"], "DSR-10")
            assert result["keys_destroyed"] == ["profile", "kyc"] and result["status"] == "complete"
            assert built.keyring.status(ada["id"]) == {"profile": "destroyed", "kyc": "destroyed"}
            body = verify_certificate(result["certificate"], built.tamper_evidence.signer.public_key)
            assert body["keys_kept"] == {} and body["hold_until"] is None
    finally:
        built.close()


def test_an_open_investigation_holds_the_kyc_key_until_the_officer_closes_it(tmp_path, database_url):
    built = make_components(tmp_path, database_url, aml_retention_years=0)
    try:
        with acting_as(OPERATOR):
            app, erasures, officer = built.app, built.erasures, staff("compliance_officer")
            ada = app.register_customer(customer_fields())
            with pytest.raises(AccessDenied):  # not the DPO's decision
                erasures.set_investigation(staff("dpo"), ada["id"], open_=True, reason="case AML-1")
            erasures.set_investigation(officer, ada["id"], open_=True, reason="case AML-1")
            result = erasures.erase(ada["id"], "DSR-11")
            assert result["kept"] == {"kyc": ["aml_investigation"]}
            later = datetime.now(UTC) + 10 * YEAR
            assert built.retention.run(now=later) == []  # the investigation is still open
            assert built.keyring.status(ada["id"])["kyc"] == "active"
            erasures.set_investigation(officer, ada["id"], open_=False, reason="case AML-1 closed")
            done = built.retention.run(now=later)
            assert [(a.customer_id, a.action) for a in done] == [(ada["id"], "destroy_kyc")]
            assert built.keyring.status(ada["id"])["kyc"] == "destroyed"
            assert app.erasure_record(ada["id"])["status"] == "complete"
    finally:
        built.close()


@pytest.mark.controls("GDPR-5.1.e", "PCI-DSS-3.7.5")
def test_a_retention_run_with_the_clock_moved_forward(built):
    app, run = built.app, built.retention
    closed = app.register_customer(customer_fields())
    app.record_interaction(closed["id"], kind="call", channel="phone", notes="last contact")
    app.close_relationship(closed["id"], "account closed at customer's request")
    open_ = app.register_customer(customer_fields(email="open@example.org"))
    now = datetime.now(UTC)

    assert run.run(now=now + YEAR) == []  # within 2 years of the last contact
    dry = run.run(now=now + 2.1 * YEAR, dry_run=True)
    assert [(a.customer_id, a.action, a.keys) for a in dry] == [(closed["id"], "erase", ("profile",))]
    assert built.keyring.status(closed["id"]) == {"profile": "active", "kyc": "active"}  # dry: nothing changed

    done = run.run(now=now + 2.1 * YEAR)
    assert [(a.customer_id, a.action) for a in done] == [(closed["id"], "erase")]
    assert built.keyring.status(closed["id"]) == {"profile": "destroyed", "kyc": "active"}
    record = app.erasure_record(closed["id"])
    # KYC kept 5 years after the relationship ended, not after the run.
    assert abs(datetime.fromisoformat(record["hold_until"]) - (now + 5 * YEAR)) < timedelta(minutes=5)
    assert run.run(now=now + 2.2 * YEAR) == []  # twice: nothing more

    done = run.run(now=now + 5.1 * YEAR)
    assert [(a.customer_id, a.action) for a in done] == [(closed["id"], "destroy_kyc")]
    assert built.keyring.status(closed["id"]) == {"profile": "destroyed", "kyc": "destroyed"}
    assert run.run(now=now + 6 * YEAR) == []
    # The open relationship is untouched however far the clock moves.
    assert built.keyring.status(open_["id"]) == {"profile": "active", "kyc": "active"}
    assert app.get_customer(open_["id"])["email"] == "open@example.org"
    # Each step is an event of the erasure record, made by the operator.
    stored = app.recorder.select_events(UUID(record["id"]))
    assert [app.mapper.metadata(s)["actor_id"] for s in stored] == ["operator:test", "operator:test"]


@pytest.mark.controls("GDPR-5.1.e")
def test_a_customer_closed_long_ago_loses_both_keys_at_once(built):
    app = built.app
    gone = app.register_customer(customer_fields())
    app.close_relationship(gone["id"], "closed")
    done = built.retention.run(now=datetime.now(UTC) + 5.5 * YEAR)
    assert [(a.action, a.keys) for a in done] == [("erase", ("profile", "kyc"))]
    assert built.keyring.status(gone["id"]) == {"profile": "destroyed", "kyc": "destroyed"}
