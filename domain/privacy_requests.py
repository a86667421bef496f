"""A data-subject request (R5.3): what the subject asked, under which law, by when,
and what was done about it.

Kinds: access and portability (one export serves both), rectification, erasure,
restriction, objection, and the CCPA's opt-out of sale or sharing. The legal deadline
runs from receipt: GDPR one calendar month, extendable once by two further months
with a reason (Art. 12(3)); CCPA 45 days, extendable once by 45 (Cal. Civ. Code
1798.130(a)(2)). Nothing is done for a requester whose identity is not verified, and
the verification says by whom and how.

Status: received -> verified -> in_progress (an export delivered) -> completed, or rejected from any open
status; `extended` while an extension is the last thing that happened. A completed or
rejected request is final.

Every field is non-personal (ids, codes, times, reasons that must hold no personal
data), catalogued under the SYSTEM key: the request outlives the subject's erasure,
as proof that the request was answered and in time.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta, timezone
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.errors import AlreadyExtended, IdentityNotVerified, InvalidField, PrivacyRequestClosed
from domain.values import normalise_required_text

KINDS = ("access", "portability", "rectification", "erasure", "restriction", "objection", "opt_out")
JURISDICTIONS = ("gdpr", "ccpa")
VERIFICATION_METHODS = ("id_document", "account_login", "knowledge_check", "authorised_agent", "signed_letter")
STATUSES = ("received", "verified", "in_progress", "extended", "completed", "rejected")
OPEN_STATUSES = frozenset({"received", "verified", "in_progress", "extended"})
REASON_MAX = 500


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or that month's last day when it has fewer days
    (31 January + 1 month = 28 or 29 February)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


def _later(moment: datetime, jurisdiction: str, extension: bool) -> datetime:
    if jurisdiction == "gdpr":
        months = 2 if extension else 1
        return datetime.combine(add_months(moment.date(), months), moment.timetz())
    return moment + timedelta(days=45)


def legal_deadline(received_at: datetime, jurisdiction: str) -> datetime:
    """When the answer is due: one month (GDPR) or 45 days (CCPA) after receipt."""
    return _later(received_at, jurisdiction, extension=False)


def extended_deadline(deadline: datetime, jurisdiction: str) -> datetime:
    """The deadline after its one extension: two more months (GDPR), 45 more days (CCPA)."""
    return _later(deadline, jurisdiction, extension=True)


def _choice(value: object, allowed: tuple[str, ...], field: str) -> str:
    code = value.strip().lower() if isinstance(value, str) else value
    if code not in allowed:
        raise InvalidField(field, "must be one of " + ", ".join(allowed))
    return str(code)


def _reason(value: object, field: str) -> str:
    return normalise_required_text(value, field, max_length=REASON_MAX)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise InvalidField("received_at", "must be a time with a zone")
    return moment.astimezone(timezone.utc)


class PrivacyRequest(Aggregate):
    """One data-subject request. Create with `PrivacyRequest.receive(...)`."""

    @classmethod
    def receive(cls, *, customer_id: str, kind: str, jurisdiction: str, received_at: datetime,
                now: datetime) -> PrivacyRequest:
        """A request as it arrives; `received_at` may be earlier than `now` (a letter
        opened today was received when it arrived) but never later."""
        received = _utc(received_at)
        if received > _utc(now) + timedelta(minutes=5):
            raise InvalidField("received_at", "must not be in the future")
        law = _choice(jurisdiction, JURISDICTIONS, "jurisdiction")
        return cls(
            customer_id=str(customer_id),
            kind=_choice(kind, KINDS, "kind"),
            jurisdiction=law,
            received_at=received.isoformat(),
            deadline=legal_deadline(received, law).isoformat(),
        )

    @event("Received")
    def __init__(self, customer_id: str, kind: str, jurisdiction: str, received_at: str, deadline: str) -> None:
        self.customer_id = customer_id
        self.kind = kind
        self.jurisdiction = jurisdiction
        self.received_at = received_at
        self.deadline = deadline
        self.status = "received"
        self.verification: dict[str, Any] | None = None
        self.extension: dict[str, Any] | None = None
        self.completion: dict[str, Any] | None = None
        self.rejection: dict[str, Any] | None = None
        self.exports: list[dict[str, Any]] = []

    # --- rules -----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def check_open(self) -> None:
        if not self.is_open:
            raise PrivacyRequestClosed()

    def check_verified(self) -> None:
        self.check_open()
        if self.verification is None:
            raise IdentityNotVerified()

    def is_overdue(self, now: datetime) -> bool:
        return self.is_open and _utc(now) > datetime.fromisoformat(self.deadline)

    # --- steps -------------------------------------------------------------------------------

    def verify(self, *, by: str, method: str, at: datetime, note: str | None = None) -> None:
        """The requester is who they say they are: recorded by whom and how."""
        self._verify(verification={
            "by": _reason(by, "verified_by"), "method": _choice(method, VERIFICATION_METHODS, "method"),
            "at": _utc(at).isoformat(), "note": None if note is None else _reason(note, "note"),
        })

    @event("Verified")
    def _verify(self, verification: dict[str, Any]) -> None:
        self.check_open()
        if self.verification is not None:
            raise InvalidField("verification", "the requester is already verified")
        self.verification = dict(verification)
        self.status = "verified"

    def extend(self, *, by: str, reason: str, at: datetime) -> None:
        """Move the deadline once, with a reason (complexity, number of requests)."""
        new = extended_deadline(datetime.fromisoformat(self.deadline), self.jurisdiction)
        self._extend(extension={"by": _reason(by, "by"), "reason": _reason(reason, "reason"),
                                "at": _utc(at).isoformat(), "previous_deadline": self.deadline},
                     deadline=new.isoformat())

    @event("Extended")
    def _extend(self, extension: dict[str, Any], deadline: str) -> None:
        self.check_open()
        if self.extension is not None:
            raise AlreadyExtended()
        if datetime.fromisoformat(extension["at"]) > datetime.fromisoformat(self.deadline):
            # GDPR Art. 12(3): the subject is told of an extension within the first month.
            raise InvalidField("deadline", "an extension must be decided before the deadline passes")
        self.extension = dict(extension)
        self.deadline = deadline
        self.status = "extended"

    def record_export(self, *, sha256: str, at: datetime) -> None:
        """An access/portability export was built and handed over (its digest, not its content)."""
        if self.kind not in ("access", "portability"):
            raise InvalidField("kind", "only an access or portability request has an export")
        self._record_export(export={"sha256": sha256, "at": _utc(at).isoformat()})

    @event("ExportDelivered")
    def _record_export(self, export: dict[str, Any]) -> None:
        self.check_verified()
        self.exports = [*self.exports, dict(export)]
        self.status = "in_progress"

    def complete(self, *, by: str, at: datetime, result: dict[str, str],
                 certificate: dict[str, Any] | None = None) -> None:
        """Done; `result` says what was done in ids, codes and counts (no personal data).
        An erasure's signed certificate (ids, key kinds, hold codes, times) is kept with
        it, so the subject can be given it from the request itself (R5.4)."""
        completion: dict[str, Any] = {"by": _reason(by, "by"), "at": _utc(at).isoformat(),
                                      "result": {str(k): str(v) for k, v in result.items()}}
        if certificate is not None:
            completion["certificate"] = dict(certificate)
        self._complete(completion=completion)

    @event("Completed")
    def _complete(self, completion: dict[str, Any]) -> None:
        self.check_verified()
        if self.kind in ("access", "portability") and not self.exports:
            raise InvalidField("exports", "run the export before completing an access request")
        self.completion = dict(completion)
        self.status = "completed"

    def reject(self, *, by: str, reason: str, at: datetime) -> None:
        """Refused (identity not established, manifestly unfounded, an exemption applies)."""
        self._reject(rejection={"by": _reason(by, "by"), "reason": _reason(reason, "reason"),
                                "at": _utc(at).isoformat()})

    @event("Rejected")
    def _reject(self, rejection: dict[str, Any]) -> None:
        self.check_open()
        self.rejection = dict(rejection)
        self.status = "rejected"

    def to_record(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "customer_id": self.customer_id,
            "kind": self.kind,
            "jurisdiction": self.jurisdiction,
            "status": self.status,
            "received_at": self.received_at,
            "deadline": self.deadline,
            "verification": None if self.verification is None else dict(self.verification),
            "extension": None if self.extension is None else dict(self.extension),
            "completion": None if self.completion is None else dict(self.completion),
            "rejection": None if self.rejection is None else dict(self.rejection),
            "exports": [dict(e) for e in self.exports],
            "version": self.version,
        }
