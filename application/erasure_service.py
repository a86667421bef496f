"""Erasure against legal holds, certified (R5.4), and the KYC part a hold keeps.

* `erase`: the customer's profile key goes now; under an AML hold (the retention
  period after the relationship, or an open investigation) the KYC key is kept,
  restricted, and scheduled for destruction when the hold ends (the erasure record
  says until when; the retention run reads it, R5.5). Every erasure gives a signed
  certificate the customer can be given and an auditor verifies offline.
* `held_kyc`: the kept KYC part, readable only by a compliance officer for a stated
  purpose (application/policy.py `require_held_kyc`), each read recorded as a reveal.
* `set_investigation`: a compliance officer opens or closes the investigation hold.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from application.clock import Clock, utc_now
from application.context import acting_as, require_context
from application.errors import CustomerNotFound
from application.policy import AML_DECISION_OPERATION, HELD_KYC_OPERATION, Policy
from application.ports import CertificateIssuer, HeldKyc
from application.security import Actor, Permission
from application.customers import Strongroom


def certificate_body(result: dict[str, Any], *, issued_at: datetime,
                     backup_retention: timedelta | None) -> dict[str, Any]:
    """What a certificate states about one erasure (`Strongroom.erase_customer`'s or
    `erasure_record`'s answer): ids, keys, holds and times; nothing personal.

    `complete_in_backups_by`: key backups are kept `backup_retention` and each is
    sealed under a generation key destroyed when it expires (R4.2), so the last copy
    of a destroyed key becomes unreadable that long after the destruction. For a kept
    KYC key the date follows the hold's end (null while an investigation has none).
    """
    kept: dict[str, dict[str, Any]] = {
        kind: {"holds": list(reasons), "until": result.get("hold_until")}
        for kind, reasons in (result.get("kept") or {}).items()
    }
    erased_at = datetime.fromisoformat(str(result.get("recorded_at") or result.get("created_on")))
    last_destruction: datetime | None = erased_at
    if kept:
        until = result.get("hold_until")
        investigated = any("aml_investigation" in v["holds"] for v in kept.values())
        last_destruction = None if until is None or investigated else datetime.fromisoformat(str(until))
    complete = None
    if backup_retention is not None and last_destruction is not None:
        complete = (last_destruction + backup_retention).isoformat()
    return {
        "subject_id": result["customer_id"],
        "erasure_id": result.get("erasure_id") or result.get("id"),
        "keys_destroyed": list(result["keys_destroyed"]),
        "keys_kept": kept,
        "hold_until": result.get("hold_until"),
        "chain_position": result.get("position"),
        "erased_at": erased_at.isoformat(),
        "issued_at": issued_at.isoformat(),
        "complete_in_backups_by": complete,
    }


def _is_uuid(value: str) -> bool:
    try:
        UUID(str(value))
    except ValueError:
        return False
    return True


class ErasureService:
    """Erasures, certificates, holds and the restricted KYC read (R5.4)."""

    def __init__(self, app: Strongroom, policy: Policy, certificates: CertificateIssuer, held: HeldKyc,
                 *, clock: Clock = utc_now, backup_retention: timedelta | None = None) -> None:
        self.app = app
        self.policy = policy
        self.certificates = certificates
        self.held = held
        self.clock = clock
        self.backup_retention = backup_retention

    def erase(self, customer_id: str, reason: str, actor: Actor | None = None) -> dict[str, Any]:
        """Erase under R5.4's rules and return the outcome with its signed certificate.

        `actor` is the staff member asking through the API (`customers:erase`, the
        DPO, after a step-up); None for the operator's command. Repeating an erasure answers the first
        one's outcome with a fresh certificate."""
        if actor is not None:
            self.policy.require(actor, Permission.CUSTOMERS_ERASE, operation="erase", about=customer_id)
            # Irreversible: a stolen session alone erases nobody (R2.11).
            self.policy.require_step_up(actor, "erase", [customer_id] if _is_uuid(customer_id) else [])
        now = self.clock()
        result = self.app.erase_customer(customer_id, reason, now=now)
        return {**result, "certificate": self.certificates.issue(
            certificate_body(result, issued_at=now, backup_retention=self.backup_retention))}

    def held_kyc(self, actor: Actor, customer_id: str, purpose: str | None) -> dict[str, Any]:
        """The KYC part an AML hold keeps, for a compliance officer with a purpose;
        recorded as a reveal of exactly the fields returned. A customer with no kept
        KYC part (never erased, or erased whole) is not found here (404), recorded."""
        stated = self.policy.require_held_kyc(actor, purpose, about=customer_id)
        record = self.app.erasure_record(customer_id)
        if record is None or "kyc" not in (record.get("kept") or {}):
            self.policy.not_found(HELD_KYC_OPERATION, customer_id, reason="no_held_kyc")
            raise CustomerNotFound(customer_id)
        found = self.held.read(str(record["customer_id"]))
        if found is None:
            self.policy.not_found(HELD_KYC_OPERATION, customer_id, reason="absent")
            raise CustomerNotFound(customer_id)
        view = {**found, "restricted": True, "profile": "erased", "hold": {"keys_kept": record["kept"],
                                                       "hold_until": record["hold_until"]}}
        # The purpose goes into the record's metadata (who, when, where and why, R3.1).
        with acting_as(replace(require_context(), purpose=stated)):
            self.app.access_log.record(
                kind="reveal", customer_ids=[str(record["customer_id"])],
                fields=sorted(k for k in found if k not in ("id", "version")),
                details={"operation": HELD_KYC_OPERATION},
            )
        return view

    def set_investigation(self, actor: Actor, customer_id: str, *, open_: bool, reason: str) -> dict[str, Any]:
        """A compliance officer opens (or closes) the AML investigation hold (R5.4)."""
        self.policy.require_aml_decision(actor, about=customer_id)
        try:
            return self.app.set_investigation(customer_id, open_=open_, reason=reason)
        except CustomerNotFound:
            self.policy.not_found(AML_DECISION_OPERATION, customer_id, reason="absent")
            raise
