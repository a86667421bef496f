"""Aggregates taken through every event they know, for tests that must see them all."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from domain.customer import Customer
from domain.erasure import CustomerErasure
from domain.operations import RecoveryLog
from domain.privacy_requests import PrivacyRequest
from domain.recertification import RecertificationCampaign, RecertificationSchedule
from domain.staff import StaffMember
from tests.domain.examples import DE_IBAN, GB_IBAN, MASTERCARD_TEST_PAN, VISA_TEST_PAN, enrol_alice, register_ada


def a_customers_whole_life() -> Customer:
    ada = register_ada(
        segment="retail",
        cards=[{"pan": VISA_TEST_PAN, "expiry": "12/29"}],
        bank_accounts=[{"iban": GB_IBAN}],
    )
    past = Customer.Registered.mutate(ada.pending_events[0], None)
    ada.change_contact(email="ada@analytical.example", phone="+44 20 7946 0001")
    ada.change_address({"line1": "1 Marylebone Road", "line2": "Flat 2", "city": "London", "country": "GB"})
    ada.change_identity(full_name="Augusta Ada King", national_id="QQ654321A")
    ada.rate_risk("medium")
    ada.change_segment("premium")
    ada.move_portfolio("uk-private")
    ada.change_kyc_status("pending")
    ada.change_kyc_status("verified")
    card_id = ada.add_card({"pan": MASTERCARD_TEST_PAN, "expiry": "2030-01"})
    ada.remove_card(card_id)
    account_id = ada.add_bank_account({"iban": DE_IBAN})
    ada.remove_bank_account(account_id)
    ada.record_interaction("complaint", "phone", "Disputes a fee.", occurred_at="2026-01-05T10:00:00+01:00")
    ada.record_consent(purpose="marketing_contact", channel="email", granted=True, notice_version="2026-11",
                       source="web_form", actor_id="staff-1")
    ada.revert_to(past, "changes were keyed on the wrong record")
    ada.restrict("accuracy contested")
    ada.lift_restriction("accuracy confirmed")
    ada.close_relationship("customer asked to close")
    return ada


def a_staff_members_whole_life() -> StaffMember:
    alice = enrol_alice()
    alice.change_password("$argon2id$second")
    alice.enrol_totp("JBSWY3DPEHPK3PXP", ["$h1", "$h2", "$h3"])
    alice.use_recovery_code("$h2")
    alice.replace_recovery_codes(["$h4", "$h5"])
    alice.reset_totp("lost phone")
    alice.change_roles(grant=["supervisor"], revoke=["agent"])
    alice.change_portfolios(["uk-private"])
    alice.record_unlock("identity confirmed by call-back")
    alice.disable("on leave")
    alice.enable("back from leave")
    alice.record_training(course="security-awareness", course_version="2026.1",
                          completed_at="2026-11-30T09:00:00+00:00", evidence_ref="LMS-1", recorded_by="operator:x")
    return alice


def an_erasures_whole_life() -> CustomerErasure:
    erasure = CustomerErasure.record(
        customer_id="1b0d4d52-5bb8-4b4a-9d6c-2b7a1f1c9e10", reason="DSR-7", keys_destroyed=["profile"]
    )
    erasure.record_kyc_key_destroyed("AML retention ended")
    return erasure


def a_recovery_logs_whole_life() -> RecoveryLog:
    log = RecoveryLog.open()
    log.record_backup("local", "20260101T000000Z-0001", 42)
    log.record_drill(target="local", backup_id="20260101T000000Z-0001", position=42, rpo_seconds=3.5,
                     rto_seconds=1.25, outcome="succeeded", failures=[])
    return log


def a_privacy_requests_whole_life() -> PrivacyRequest:
    received = datetime.now(timezone.utc) - timedelta(days=3)
    request = PrivacyRequest.receive(customer_id="1b0d4d52-5bb8-4b4a-9d6c-2b7a1f1c9e10", kind="access",
                                     jurisdiction="gdpr", received_at=received, now=received)
    request.verify(by="staff-dpo", method="id_document", at=received)
    request.extend(by="staff-dpo", reason="many systems to search", at=received)
    request.record_export(sha256="0" * 64, at=received)
    request.complete(by="staff-dpo", at=received, result={"exports": "1"})
    return request


def a_rejected_privacy_request() -> PrivacyRequest:
    """The other way a request ends (a request completes or is rejected, never both)."""
    received = datetime.now(timezone.utc)
    request = PrivacyRequest.receive(customer_id="1b0d4d52-5bb8-4b4a-9d6c-2b7a1f1c9e10", kind="erasure",
                                     jurisdiction="ccpa", received_at=received, now=received)
    request.reject(by="staff-dpo", reason="identity not established", at=received)
    return request


def a_recertifications_whole_life() -> RecertificationCampaign:
    campaign = RecertificationCampaign.start(
        started_at="2026-12-01T00:00:00+00:00", due_at="2026-12-15T00:00:00+00:00",
        escalate_until="2026-12-22T00:00:00+00:00", started_by="operator:x", items=[
            {"staff_id": "s-1", "username": "ann", "roles": ["agent"], "portfolios": ["retail"], "reviewers": ["s-9"]},
            {"staff_id": "s-2", "username": "bob", "roles": ["agent"], "portfolios": ["retail"], "reviewers": ["s-9"]},
        ])
    campaign.decide(staff_id="s-1", decision="revoked", decided_by="s-9", decided_at="2026-12-02T00:00:00+00:00",
                    revoked_roles=["agent"], revoked_portfolios=[], held_approval=None)
    campaign.escalate(staff_ids=["s-2"], escalated_at="2026-12-15T00:00:00+00:00")
    campaign.mark_alerted(staff_ids=["s-2"], alert_ids=["a-1"])
    return campaign


def a_recertification_schedules_whole_life() -> RecertificationSchedule:
    schedule = RecertificationSchedule.create()
    schedule.add(campaign_id="c-1", started_at="2026-12-01T00:00:00+00:00")
    return schedule


WHOLE_LIVES = [a_customers_whole_life, a_staff_members_whole_life, an_erasures_whole_life,
               a_recovery_logs_whole_life, a_privacy_requests_whole_life, a_rejected_privacy_request,
               a_recertifications_whole_life, a_recertification_schedules_whole_life]
