"""The domain rules of consent (R5.2), data-subject requests (R5.3) and restriction (R5.6)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from domain.errors import (
    AlreadyExtended,
    CustomerRestricted,
    IdentityNotVerified,
    InvalidField,
    PrivacyRequestClosed,
    RelationshipClosed,
)
from domain.privacy_requests import PrivacyRequest, add_months, extended_deadline, legal_deadline
from tests.domain.examples import register_ada

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def _consent(customer, granted=True, purpose="marketing_contact", channel="email"):
    return customer.record_consent(purpose=purpose, channel=channel, granted=granted, notice_version="v1",
                                   source="web_form", actor_id="staff-1")


def test_the_latest_answer_for_a_purpose_and_channel_is_in_force():
    ada = register_ada()
    assert not ada.may_process("marketing_contact", "email")  # never asked: no
    _consent(ada)
    assert ada.may_process("marketing_contact", "email")
    assert not ada.may_process("marketing_contact", "phone")  # another channel is another answer
    _consent(ada, granted=False)
    assert not ada.may_process("marketing_contact", "email")
    assert [e["granted"] for e in ada.ledger()] == [True, False]  # the ledger keeps both


@pytest.mark.controls("GDPR-18", "GDPR-21")
def test_restriction_and_closure_stop_processing_but_never_a_withdrawal():
    ada = register_ada()
    _consent(ada)
    ada.restrict("accuracy contested")
    assert not ada.may_process("marketing_contact", "email")
    with pytest.raises(CustomerRestricted):
        _consent(ada, purpose="profiling", channel="online")
    _consent(ada, granted=False)  # GDPR Art. 7(3): withdrawing is always possible
    ada.lift_restriction("accuracy confirmed")
    _consent(ada)
    ada.close_relationship("customer left")
    assert not ada.may_process("marketing_contact", "email")
    with pytest.raises(RelationshipClosed):
        _consent(ada, purpose="profiling", channel="online")
    _consent(ada, granted=False)


@pytest.mark.parametrize(("purpose", "channel", "source", "field"), [
    ("telepathy", "email", "web_form", "purpose"),
    ("data_sharing", "email", "web_form", "channel"),  # data sharing contacts nobody
    ("marketing_contact", "email", "a friend said so", "source"),
])
def test_consent_codes_are_checked(purpose, channel, source, field):
    with pytest.raises(InvalidField) as refused:
        register_ada().record_consent(purpose=purpose, channel=channel, granted=True, notice_version="v1",
                                      source=source, actor_id="staff-1")
    assert refused.value.field == field


@pytest.mark.controls("CCPA-1798.130")
def test_legal_deadlines():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2026, 11, 30), 2) == date(2027, 1, 30)
    received = datetime(2026, 3, 15, 9, 30, tzinfo=UTC)
    assert legal_deadline(received, "gdpr") == datetime(2026, 4, 15, 9, 30, tzinfo=UTC)
    assert extended_deadline(legal_deadline(received, "gdpr"), "gdpr") == datetime(2026, 6, 15, 9, 30, tzinfo=UTC)
    assert legal_deadline(received, "ccpa") == received + timedelta(days=45)
    assert extended_deadline(received + timedelta(days=45), "ccpa") == received + timedelta(days=90)


def test_a_request_is_verified_before_it_is_acted_on_and_is_final_once_closed():
    request = PrivacyRequest.receive(customer_id="c-1", kind="erasure", jurisdiction="gdpr", received_at=NOW, now=NOW)
    assert request.status == "received" and not request.is_overdue(NOW)
    assert request.is_overdue(NOW + timedelta(days=32))
    with pytest.raises(IdentityNotVerified):
        request.complete(by="dpo", at=NOW, result={})
    request.verify(by="dpo-1", method="id_document", at=NOW)
    assert request.verification == {"by": "dpo-1", "method": "id_document", "at": NOW.isoformat(), "note": None}
    request.extend(by="dpo-1", reason="complex", at=NOW)
    with pytest.raises(AlreadyExtended):
        request.extend(by="dpo-1", reason="again", at=NOW)
    assert request.deadline == datetime(2027, 3, 5, 10, 0, tzinfo=UTC).isoformat()
    request.complete(by="dpo-1", at=NOW, result={"keys_destroyed": "profile"})
    assert not request.is_overdue(NOW + timedelta(days=400))  # closed: never overdue
    with pytest.raises(PrivacyRequestClosed):
        request.reject(by="dpo-1", reason="late", at=NOW)


def test_an_access_request_completes_only_after_an_export():
    request = PrivacyRequest.receive(customer_id="c-1", kind="access", jurisdiction="ccpa", received_at=NOW, now=NOW)
    request.verify(by="dpo-1", method="account_login", at=NOW)
    with pytest.raises(InvalidField):
        request.complete(by="dpo-1", at=NOW, result={})
    request.record_export(sha256="ab" * 32, at=NOW)
    assert request.status == "in_progress"
    request.complete(by="dpo-1", at=NOW, result={"exports": "1"})


def test_a_request_cannot_be_received_in_the_future_or_under_another_law():
    with pytest.raises(InvalidField):
        PrivacyRequest.receive(customer_id="c-1", kind="access", jurisdiction="gdpr",
                               received_at=NOW + timedelta(days=1), now=NOW)
    with pytest.raises(InvalidField):
        PrivacyRequest.receive(customer_id="c-1", kind="access", jurisdiction="pipeda", received_at=NOW, now=NOW)
