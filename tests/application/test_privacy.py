"""The consent ledger (R5.2), data-subject requests (R5.3) and restriction (R5.6), on
SQLite and again on PostgreSQL (the `database_url` fixture)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from application.context import acting_as
from application.errors import CustomerErased, ValidationFailed
from application.ports import ExportRecipient
from application.privacy_requests import OVERDUE_RULE
from application.security import Actor
from domain.alerts import Alert
from domain.errors import AlreadyExtended, CustomerRestricted, IdentityNotVerified
from infrastructure.audit.erasure_certificate import CertificateInvalid, verify_certificate
from infrastructure.privacy_export import ExportUnreadable, open_export
from tests.application.conftest import OPERATOR, customer_fields

PASSPHRASE = "correct horse battery staple"


def actor(*roles: str, portfolios: tuple[str, ...] = ("retail",)) -> Actor:
    """A staff member whose security training is current: since R6.4 an untrained one
    has no export right, and marketing, sharing and profiling runs are exports."""
    return Actor(staff_id=f"staff-{'-'.join(roles)}-{uuid.uuid4().hex[:6]}", username="-".join(roles),
                 roles=frozenset(roles), portfolios=frozenset(portfolios), trained_at=datetime.now(UTC))


def as_staff(who: Actor):
    return acting_as(replace(OPERATOR, actor_id=who.staff_id, via="api", purpose=None))


@pytest.fixture
def dpo():
    return actor("dpo")


def _new_customer(app, **changes) -> str:
    return str(app.register_customer(customer_fields(**changes))["id"])


# -- the consent ledger (R5.2) ---------------------------------------------------------------

PROCESSING = {
    # purpose -> (channel, how the processing is run)
    "marketing_contact": ("email", lambda ledger, who: ledger.marketing_contacts(who, "email")),
    "data_sharing": ("online", lambda ledger, who: ledger.data_sharing_export(who)),
    "profiling": ("online", lambda ledger, who: ledger.profiling_run(who)),
}


@pytest.mark.parametrize("purpose", sorted(PROCESSING))
@pytest.mark.controls("GDPR-21", "CCPA-1798.120")
def test_withdrawing_consent_stops_the_processing_that_needs_it(components, purpose):
    """R5.2: each processing asks may_process; a withdrawal takes the customer out of it."""
    ledger, app = components.consents, components.app
    channel, run = PROCESSING[purpose]
    agreed, never = _new_customer(app), _new_customer(app, email="never.asked@example.org")
    supervisor = actor("supervisor")
    with as_staff(supervisor):
        ledger.record(supervisor, agreed, purpose=purpose, channel=channel, granted=True,
                      notice_version="2026-11", source="web_form")
        before = run(ledger, supervisor)
        assert [i["customer_id"] for i in before.items] == [agreed]
        assert before.left_out == 1  # `never` was never asked
        ledger.record(supervisor, agreed, purpose=purpose, channel=channel, granted=False,
                      notice_version="2026-11", source="phone_call")
        after = run(ledger, supervisor)
    assert after.items == [] and after.left_out == 2
    assert not ledger.may_process(agreed, purpose, channel)
    assert not ledger.may_process(never, purpose, channel)


@pytest.mark.controls("CCPA-1798.100")
def test_the_ledger_lists_every_answer_with_notice_source_time_and_actor(components):
    ledger, app = components.consents, components.app
    cid = _new_customer(app)
    agent = actor("agent")
    with as_staff(agent):
        ledger.record(agent, cid, purpose="marketing_contact", channel="post", granted=True,
                      notice_version="v3", source="letter")
        listing = ledger.consents(agent, cid)
    (entry,) = listing["items"]
    assert (entry["purpose"], entry["channel"], entry["granted"], entry["notice_version"], entry["source"]) == (
        "marketing_contact", "post", True, "v3", "letter")
    assert entry["actor_id"] == agent.staff_id and entry["recorded_at"]
    in_force = {(r["purpose"], r["channel"]): r["may_process"] for r in listing["in_force"]}
    assert in_force[("marketing_contact", "post")] is True and in_force[("marketing_contact", "email")] is False
    # The ledger is under the profile key: the stored event does not show it in clear.
    (stored,) = [e for e in app.recorder.select_events(uuid.UUID(cid)) if e.topic.endswith("ConsentRecorded")]
    assert b"marketing_contact" not in stored.state and b"letter" not in stored.state


def test_a_consent_for_a_channel_the_purpose_does_not_use_is_refused(components):
    cid = _new_customer(components.app)
    agent = actor("agent")
    with as_staff(agent), pytest.raises(Exception, match="channel"):
        components.consents.record(agent, cid, purpose="data_sharing", channel="phone", granted=True,
                                   notice_version="v1", source="web_form")


# -- restriction (R5.6) -----------------------------------------------------------------------------

def _restrict(components, dpo, cid):
    privacy = components.privacy
    with as_staff(dpo):
        request = privacy.receive(dpo, customer_id=cid, kind="restriction", jurisdiction="gdpr")
        privacy.verify(dpo, request["id"], method="id_document")
        return privacy.complete(dpo, request["id"])


@pytest.mark.controls("GDPR-18")
def test_a_restricted_customer_is_read_only_and_left_out_of_searches_and_marketing(components, dpo):
    app, ledger = components.app, components.consents
    cid = _new_customer(app)
    agent, compliance = actor("agent"), actor("compliance_officer")
    with as_staff(agent):
        ledger.record(agent, cid, purpose="marketing_contact", channel="email", granted=True,
                      notice_version="v1", source="web_form")
    done = _restrict(components, dpo, cid)
    assert done["status"] == "completed" and done["completion"]["result"] == {"restricted": "now"}
    with pytest.raises(CustomerRestricted):
        app.update_customer(cid, {"phone": "+44 7700 900999"})
    assert not ledger.may_process(cid, "marketing_contact", "email")
    with as_staff(agent):
        # A grant is a change: refused. A withdrawal always goes through (GDPR Art. 7(3)).
        with pytest.raises(CustomerRestricted):
            ledger.record(agent, cid, purpose="profiling", channel="online", granted=True,
                          notice_version="v1", source="web_form")
        ledger.record(agent, cid, purpose="marketing_contact", channel="email", granted=False,
                      notice_version="v1", source="web_form")
        found = components.customers.search(agent, field="email", value="ada.planted@example.org")
        listed = components.customers.search(agent, portfolio="retail")
    assert found["items"] == [] and listed["items"] == []
    with as_staff(compliance):
        assert [c["id"] for c in components.customers.search(compliance, portfolio="retail")["items"]] == [cid]


@pytest.mark.controls("GDPR-18")
def test_lifting_a_restriction_is_a_recorded_decision(components, dpo):
    app = components.app
    cid = _new_customer(app)
    _restrict(components, dpo, cid)
    with as_staff(dpo):
        lifted = components.privacy.lift_restriction(dpo, cid, reason="accuracy confirmed, ticket 4411")
    assert lifted["restricted"] is False
    last = app.recorder.select_events(uuid.UUID(cid), desc=True, limit=1)[0]
    assert last.topic.endswith("RestrictionLifted")
    assert app.mapper.metadata(last)["actor_id"] == dpo.staff_id
    assert app.mapper.to_domain_event(last).reason == "accuracy confirmed, ticket 4411"
    app.update_customer(cid, {"phone": "+44 7700 900999"})  # writable again


# -- requests (R5.3) --------------------------------------------------------------------------------

@pytest.mark.controls("CCPA-1798.130")
def test_deadlines_follow_the_law_and_extend_once(components, dpo):
    privacy, app = components.privacy, components.app
    cid = _new_customer(app)
    received = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
    with as_staff(dpo):
        gdpr = privacy.receive(dpo, customer_id=cid, kind="access", jurisdiction="gdpr", received_at=received)
        ccpa = privacy.receive(dpo, customer_id=cid, kind="opt_out", jurisdiction="ccpa", received_at=received)
        assert gdpr["deadline"] == "2026-02-28T09:00:00+00:00"  # one month, clamped to February
        assert ccpa["deadline"] == (received + timedelta(days=45)).isoformat()
        # Late already (the clock is now): an extension after the deadline is refused.
        with pytest.raises(Exception, match="before the deadline"):
            privacy.extend(dpo, gdpr["id"], reason="complex request")
        fresh = privacy.receive(dpo, customer_id=cid, kind="access", jurisdiction="ccpa")
        extended = privacy.extend(dpo, fresh["id"], reason="many systems to search")
        assert extended["status"] == "extended"
        assert datetime.fromisoformat(extended["deadline"]) - datetime.fromisoformat(fresh["deadline"]) == \
            timedelta(days=45)
        assert extended["extension"]["reason"] == "many systems to search"
        with pytest.raises(AlreadyExtended):
            privacy.extend(dpo, fresh["id"], reason="again")


@pytest.mark.controls("GDPR-15", "CCPA-1798.130")
def test_nothing_is_done_before_the_identity_is_verified(components, dpo):
    privacy = components.privacy
    cid = _new_customer(components.app)
    with as_staff(dpo):
        request = privacy.receive(dpo, customer_id=cid, kind="erasure", jurisdiction="gdpr")
        with pytest.raises(IdentityNotVerified):
            privacy.complete(dpo, request["id"])
        verified = privacy.verify(dpo, request["id"], method="account_login", note="signed in to the app")
    assert verified["verification"]["by"] == dpo.staff_id and verified["verification"]["method"] == "account_login"
    assert components.app.get_customer(cid)["email"]  # not erased


@pytest.mark.controls("GDPR-17", "CCPA-1798.105")
def test_an_erasure_request_erases_through_the_erase_use_case(components, dpo):
    privacy, app = components.privacy, components.app
    cid = _new_customer(app)
    with as_staff(dpo):
        request = privacy.receive(dpo, customer_id=cid, kind="erasure", jurisdiction="gdpr")
        privacy.verify(dpo, request["id"], method="id_document")
        done = privacy.complete(replace(dpo, stepped_up_at=datetime.now(UTC)), request["id"])
    assert done["status"] == "completed" and "profile" in done["completion"]["result"]["keys_destroyed"]
    assert app.is_erased(cid)
    with pytest.raises(CustomerErased):
        app.get_customer(cid)


@pytest.mark.controls("GDPR-17", "CCPA-1798.105")
def test_an_erasure_request_gives_the_signed_certificate_an_auditor_verifies_offline(components, dpo):
    """R5.3 + R5.4: a request's erasure goes through the certified path, so the subject
    is given the same signed certificate as an erasure through the API. An auditor holds
    only the instance's public key (PEM): the certificate kept with the request verifies
    with it, states what the AML hold kept, and a forged "both keys destroyed" does not."""
    privacy, app = components.privacy, components.app
    cid = _new_customer(app)
    with as_staff(dpo):
        request = privacy.receive(dpo, customer_id=cid, kind="erasure", jurisdiction="gdpr")
        privacy.verify(dpo, request["id"], method="id_document")
        privacy.complete(replace(dpo, stepped_up_at=datetime.now(UTC)), request["id"])
        stored = privacy.get(dpo, request["id"])  # read back from the log, not the return value
    document = json.loads(json.dumps(stored["completion"]["certificate"]))  # as handed over, as JSON
    pem = components.tamper_evidence.signer.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    public_key = serialization.load_pem_public_key(pem)
    body = verify_certificate(document, public_key)
    assert body["subject_id"] == cid and body["keys_destroyed"] == ["profile"]
    assert body["keys_kept"]["kyc"]["holds"] == ["aml_retention"] and body["hold_until"]
    assert body["erasure_id"] == stored["completion"]["result"]["erasure_id"]
    assert stored["completion"]["result"]["keys_kept"] == "kyc"
    forged = json.loads(json.dumps(document))
    forged["certificate"]["keys_destroyed"] = ["profile", "kyc"]
    with pytest.raises(CertificateInvalid):
        verify_certificate(forged, public_key)
    with pytest.raises(CertificateInvalid):  # another instance's key
        verify_certificate(document, Ed25519PrivateKey.generate().public_key())


@pytest.mark.controls("GDPR-16", "CCPA-1798.106")
def test_a_rectification_goes_through_the_update_path_and_names_the_fields(components, dpo):
    privacy, app = components.privacy, components.app
    cid = _new_customer(app)
    with as_staff(dpo):
        request = privacy.receive(dpo, customer_id=cid, kind="rectification", jurisdiction="gdpr")
        privacy.verify(dpo, request["id"], method="id_document")
        with pytest.raises(ValidationFailed):
            privacy.complete(dpo, request["id"], changes={"risk_rating": "high"})
        done = privacy.complete(dpo, request["id"], changes={"full_name": "Ada Corrected"})
    assert done["completion"]["result"] == {"fields_rectified": "full_name"}
    assert app.get_customer(cid)["full_name"] == "Ada Corrected"
    last = app.recorder.select_events(uuid.UUID(cid), desc=True, limit=1)[0]
    assert last.topic.endswith("IdentityChanged")


@pytest.mark.parametrize(("kind", "purpose", "channel"), [("objection", "profiling", "online"),
                                                           ("objection", "marketing_contact", "sms"),
                                                           ("opt_out", "data_sharing", "online")])
@pytest.mark.controls("GDPR-21", "CCPA-1798.120")
def test_objection_and_opt_out_withdraw_consent(components, dpo, kind, purpose, channel):
    privacy, ledger = components.privacy, components.consents
    cid = _new_customer(components.app)
    agent = actor("agent")
    with as_staff(agent):
        ledger.record(agent, cid, purpose=purpose, channel=channel, granted=True, notice_version="v1",
                      source="web_form")
    assert ledger.may_process(cid, purpose, channel)
    with as_staff(dpo):
        request = privacy.receive(dpo, customer_id=cid, kind=kind, jurisdiction="ccpa")
        privacy.verify(dpo, request["id"], method="authorised_agent")
        privacy.complete(dpo, request["id"])
    assert not ledger.may_process(cid, purpose, channel)


@pytest.mark.controls("CCPA-1798.130")
def test_an_overdue_request_raises_one_alert(components, dpo):
    privacy, app = components.privacy, components.app
    cid = _new_customer(app)
    with as_staff(dpo):
        late = privacy.receive(dpo, customer_id=cid, kind="access", jurisdiction="gdpr",
                               received_at=datetime.now(UTC) - timedelta(days=40))
        privacy.receive(dpo, customer_id=cid, kind="access", jurisdiction="gdpr")  # in time
        assert [r["id"] for r in privacy.list_requests(dpo, overdue=True)] == [late["id"]]
    first = privacy.check_deadlines()
    assert [a["details"]["request_id"] for a in first] == [late["id"]]
    assert first[0]["rule_id"] == OVERDUE_RULE and first[0]["customer_ids"] == [cid]
    assert privacy.check_deadlines() == []  # raised once
    stored = app.repository.get(uuid.UUID(first[0]["id"]))
    assert isinstance(stored, Alert) and stored.status == "open"


def test_reading_requests_needs_privacy_rights(components, dpo):
    from application.policy import AccessDenied

    with as_staff(actor("agent")), pytest.raises(AccessDenied):
        components.privacy.list_requests(actor("agent"))
    compliance = actor("compliance_officer")
    with as_staff(compliance):
        assert components.privacy.list_requests(compliance) == []
        with pytest.raises(AccessDenied):
            components.privacy.receive(compliance, customer_id=str(uuid.uuid4()), kind="access",
                                       jurisdiction="gdpr")


# -- the access export (R5.3) ---------------------------------------------------------------------

@pytest.mark.controls("GDPR-15", "GDPR-20", "CCPA-1798.100", "CCPA-1798.110")
def test_the_export_holds_everything_about_the_subject_and_nothing_about_anyone_else(components, dpo):
    app, privacy = components.app, components.privacy
    subject = _new_customer(app)
    other = _new_customer(app, full_name="Bartholomew Otherperson", email="bart.other@example.net",
                          phone="+44 7700 900555", national_id="ZZ987654A",
                          address={"line1": "99 Elsewhere Road", "city": "Leeds", "postcode": "LS1 4AB",
                                   "country": "GB"},
                          cards=[{"pan": "5555555555554444", "expiry": "11/30"}])
    app.record_interaction(subject, "call", "phone", "asked about the planted-note-subject")
    app.record_interaction(other, "call", "phone", "asked about the planted-note-other")
    viewers = [actor("agent"), actor("supervisor")]
    for viewer in viewers:
        with as_staff(viewer):
            components.customers.read(viewer, subject)
            components.customers.read(viewer, other)
            # A search that names both customers in one access record.
            components.customers.search(viewer, portfolio="retail")
    with as_staff(dpo):
        request = privacy.receive(dpo, customer_id=subject, kind="access", jurisdiction="gdpr")
        privacy.verify(dpo, request["id"], method="id_document")
        sealed, after = privacy.export(dpo, request["id"], ExportRecipient(passphrase=PASSPHRASE))
        done = privacy.complete(dpo, request["id"])
    assert after["status"] == "in_progress" and done["status"] == "completed"
    assert b"Ada" not in sealed and b"planted" not in sealed  # encrypted
    with pytest.raises(ExportUnreadable):
        open_export(sealed, passphrase="the wrong passphrase!")
    pinned = components.tamper_evidence.signer.public_pem()
    opened = open_export(sealed, passphrase=PASSPHRASE, audit_public_key_pem=pinned)
    assert opened.pinned and opened.manifest["subject_id"] == subject
    assert {"export.json", "tables/record.csv", "tables/events.csv", "tables/access_log.csv",
            "tables/consents.csv", "tables/interactions.csv", "tables/requests.csv"} <= set(opened.files)
    document = json.loads(opened.files["export.json"])
    assert document["record"]["full_name"] == "Ada Plantedname"
    assert document["record"]["interactions"][0]["notes"] == "asked about the planted-note-subject"
    assert [e["type"] for e in document["events"]][:2] == ["Registered", "InteractionRecorded"]
    lookers = {a["actor_id"] for a in document["access_log"]}
    assert {v.staff_id for v in viewers} <= lookers
    assert {a["what"] for a in document["access_log"]} >= {"view", "list"}
    everything = b"".join(opened.files.values())
    for planted in (b"Bartholomew", b"Otherperson", b"bart.other", b"900555", b"ZZ987654A", b"Elsewhere",
                    b"LS1 4AB", b"planted-note-other", b"5555555555554444", b"555555", other.encode()):
        assert planted not in everything, planted
    assert b"4111111111111111" not in everything  # R1.7: the subject's own PAN as BIN + last four only


@pytest.mark.controls("GDPR-15", "GDPR-20")
def test_an_export_sealed_to_an_x25519_key_opens_only_with_its_private_key(components, dpo):
    privacy = components.privacy
    cid = _new_customer(components.app)
    private = X25519PrivateKey.generate()
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    with as_staff(dpo):
        request = privacy.receive(dpo, customer_id=cid, kind="portability", jurisdiction="gdpr")
        with pytest.raises(IdentityNotVerified):
            privacy.export(dpo, request["id"], ExportRecipient(public_key_pem=public_pem))
        privacy.verify(dpo, request["id"], method="id_document")
        with pytest.raises(ValidationFailed):
            privacy.export(dpo, request["id"], ExportRecipient(passphrase="short"))
        sealed, _ = privacy.export(dpo, request["id"], ExportRecipient(public_key_pem=public_pem))
    opened = open_export(sealed, private_key_pem=private_pem)
    assert json.loads(opened.files["export.json"])["subject_id"] == cid
    stranger = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ExportUnreadable):
        open_export(sealed, private_key_pem=stranger)
    # Tampering: one byte of ciphertext changed fails authentication.
    with pytest.raises(ExportUnreadable):
        open_export(sealed[:-1] + bytes([sealed[-1] ^ 1]), private_key_pem=private_pem)


@pytest.mark.controls("GDPR-16", "CCPA-1798.106")
def test_a_refused_rectification_changes_nothing_and_leaves_the_request_open(components, dpo):
    """Fault: the domain refuses the corrected value; neither the customer nor the request moves."""
    privacy, app = components.privacy, components.app
    cid = _new_customer(app)
    before = app.recorder.max_notification_id()
    with as_staff(dpo):
        request = privacy.receive(dpo, customer_id=cid, kind="rectification", jurisdiction="gdpr")
        privacy.verify(dpo, request["id"], method="id_document")
        version = privacy.get(dpo, request["id"])["version"]
        with pytest.raises(Exception, match="email"):
            privacy.complete(dpo, request["id"], changes={"email": "not an address"})
        after = privacy.get(dpo, request["id"])
    assert after["status"] == "verified" and after["version"] == version
    assert app.get_customer(cid)["email"] == "ada.planted@example.org"
    assert app.recorder.max_notification_id() == before + 2  # the receipt and the verification only
