"""Data-subject requests (R5.3) and restriction (R5.6), for the data-protection officer.

One method per step: receive, verify (by whom and how), extend (once, with a reason),
export (access and portability), complete, reject; and `check_deadlines`, which raises
one overdue alert (`domain.alerts.Alert`) per request and deadline. Writing needs
`privacy:manage` (the `dpo` role); reading needs `privacy:read` (dpo, compliance officer).

Completing a request carries it out, through the same paths as everything else:

* erasure: the certified erasure path (`ErasureService.erase`, R5.4): what an AML hold
  keeps is decided there, and the signed erasure certificate it issues is kept with
  the completion (`completion.certificate`) for the subject and an auditor. The erase
  route's step-up (R2.11) is not asked here: this path is authorised by
  `privacy:manage` and needs the requester's identity verified first (a recorded step
  of its own), and the command line's operator has no session to step up;
* rectification: the fields through the normal update path (`apply_changes`, the
  domain's rules), saved with the completion in one transaction; the completion
  names the fields rectified (never their values);
* restriction: `Customer.restrict` (R5.6), with the completion in one transaction;
* objection (direct marketing and profiling, GDPR Art. 21) and opt-out of sale or
  sharing (CCPA 1798.120): withdrawals in the consent ledger, so `may_process` says
  no at once;
* access and portability: an export must have been delivered first (`export`).

Lifting a restriction is a decision of its own (`lift_restriction`): who (the event's
actor) and why (its reason) are in the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from hashlib import sha256
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.utils import get_topic

from application.audit_trail import AuditTrail
from application.clock import Clock, utc_now
from application.consent import ConsentLedger
from application.context import acting_as, require_context
from application.customers import Strongroom, apply_changes
from application.erasure_service import ErasureService
from application.errors import ApplicationError, ValidationFailed, VersionConflict
from application.policy import Policy
from application.ports import ExportRecipient, ExportSealer
from application.privacy_export import subject_files
from application.security import Actor, Permission
from domain.alerts import Alert, alert_id
from domain.consent import CONSENT_PURPOSES
from domain.customer import Customer
from domain.privacy_requests import PrivacyRequest

OVERDUE_RULE = "privacy.request_overdue"
PASSPHRASE_MIN, PASSPHRASE_MAX = 12, 1024
PUBLIC_KEY_MAX = 8192
PAGE = 500
RECTIFIABLE = ("email", "phone", "address", "full_name", "date_of_birth", "national_id")
# What each kind withdraws in the consent ledger when it is completed.
WITHDRAWS = {"objection": ("marketing_contact", "profiling"), "opt_out": ("data_sharing",)}


class PrivacyRequestNotFound(ApplicationError):
    """No such request (404)."""

    def __init__(self, request_id: object) -> None:
        super().__init__(f"request {request_id} not found")


class PrivacyRequests:
    """The data-subject request use cases; see the module text."""

    def __init__(self, app: Strongroom, policy: Policy, consents: ConsentLedger, trail: AuditTrail,
                 sealer: ExportSealer, clock: Clock = utc_now, *, erasures: ErasureService) -> None:
        self.app = app
        self.erasures = erasures
        self.policy = policy
        self.consents = consents
        self.trail = trail
        self.sealer = sealer
        self.clock = clock

    # -- loading -----------------------------------------------------------------------------

    def _request(self, request_id: str) -> PrivacyRequest:
        try:
            found: Any = self.app.repository.get(UUID(str(request_id)))
        except (ValueError, AggregateNotFoundError):
            raise PrivacyRequestNotFound(request_id) from None
        if not isinstance(found, PrivacyRequest):
            raise PrivacyRequestNotFound(request_id)
        return found

    def _all(self) -> Iterator[PrivacyRequest]:
        """Every request, oldest first: the log's own index of `Received` events."""
        topic = get_topic(PrivacyRequest.Received)  # type: ignore[attr-defined]
        start = 1
        while True:
            page = self.app.recorder.select_notifications(start, PAGE, topics=[topic])
            for notification in page:
                yield self._request(str(notification.originator_id))
            if len(page) < PAGE:
                return
            start = page[-1].id + 1

    def _manage(self, actor: Actor, operation: str, customer_id: str | None = None) -> None:
        self.policy.require(actor, Permission.PRIVACY_MANAGE, operation=f"privacy:{operation}", about=customer_id)

    def _step(self, actor: Actor, request_id: str, operation: str) -> PrivacyRequest:
        self._manage(actor, operation)
        return self._request(request_id)

    # -- reading -------------------------------------------------------------------------------

    def list_requests(self, actor: Actor, *, status: str | None = None, customer_id: str | None = None,
             overdue: bool | None = None) -> list[dict[str, Any]]:
        """The requests, oldest first, filtered; each with `overdue` as of now."""
        self.policy.require(actor, Permission.PRIVACY_READ, operation="privacy:list")
        now = self.clock()
        items = []
        for request in self._all():
            if status is not None and request.status != status:
                continue
            if customer_id is not None and request.customer_id != customer_id:
                continue
            if overdue is not None and request.is_overdue(now) != overdue:
                continue
            items.append(self._shown(request, now))
        return items

    def get(self, actor: Actor, request_id: str) -> dict[str, Any]:
        self.policy.require(actor, Permission.PRIVACY_READ, operation="privacy:read")
        return self._shown(self._request(request_id), self.clock())

    @staticmethod
    def _shown(request: PrivacyRequest, now: datetime) -> dict[str, Any]:
        return {**request.to_record(), "overdue": request.is_overdue(now)}

    # -- the steps -------------------------------------------------------------------------------

    def receive(self, actor: Actor, *, customer_id: str, kind: str, jurisdiction: str,
                received_at: datetime | None = None) -> dict[str, Any]:
        """Record a request as received; the deadline runs from `received_at` (default now)."""
        self._manage(actor, "receive", customer_id)
        customer = self.app._customer(customer_id)
        now = self.clock()
        request = PrivacyRequest.receive(customer_id=str(customer.id), kind=kind, jurisdiction=jurisdiction,
                                         received_at=received_at or now, now=now)
        self.app._save(request)
        return self._shown(request, now)

    def verify(self, actor: Actor, request_id: str, *, method: str, note: str | None = None) -> dict[str, Any]:
        """The requester's identity was checked: by this actor, by `method`."""
        request = self._step(actor, request_id, "verify")
        request.verify(by=actor.staff_id, method=method, at=self.clock(), note=note)
        self.app._save(request)
        return self._shown(request, self.clock())

    def extend(self, actor: Actor, request_id: str, *, reason: str) -> dict[str, Any]:
        request = self._step(actor, request_id, "extend")
        request.extend(by=actor.staff_id, reason=reason, at=self.clock())
        self.app._save(request)
        return self._shown(request, self.clock())

    def reject(self, actor: Actor, request_id: str, *, reason: str) -> dict[str, Any]:
        request = self._step(actor, request_id, "reject")
        request.reject(by=actor.staff_id, reason=reason, at=self.clock())
        self.app._save(request)
        return self._shown(request, self.clock())

    def export(self, actor: Actor, request_id: str, recipient: ExportRecipient) -> tuple[bytes, dict[str, Any]]:
        """The subject's export, signed and encrypted to `recipient` (R5.3); returns the
        file and the request. Recorded as an export of every field, which the subject's
        next export lists among who accessed their data."""
        _check_recipient(recipient)
        request = self._step(actor, request_id, "export")
        request.check_verified()
        if request.kind not in ("access", "portability"):
            raise ValidationFailed({"kind": ["only an access or portability request has an export"]})
        customer = self.app._customer(request.customer_id)
        mine = [r.to_record() for r in self._all() if r.customer_id == request.customer_id]
        files = subject_files(self.app, self.trail, customer, mine)
        try:
            sealed = self.sealer.seal(files, recipient, subject_id=request.customer_id)
        except ValueError as exc:
            raise ValidationFailed({"public_key": [str(exc).partition(": ")[2] or str(exc)]}) from None
        digest = sha256(sealed).hexdigest()
        request.record_export(sha256=digest, at=self.clock())
        self.app._save(request)
        with acting_as(replace(require_context(), purpose=f"data-subject request {request.id}")):
            self.app.access_log.record(
                kind="export", customer_ids=[request.customer_id], fields=sorted(files),
                details={"operation": "privacy:export", "request_id": str(request.id), "sha256": digest},
            )
        return sealed, self._shown(request, self.clock())

    def complete(self, actor: Actor, request_id: str, *, changes: dict[str, Any] | None = None) -> dict[str, Any]:
        """Carry out the request and record it done (see the module text)."""
        request = self._step(actor, request_id, "complete")
        request.check_verified()
        now = self.clock()
        reason = f"data-subject request {request.id}"
        if request.kind == "erasure":
            # Irreversible: a stolen DPO session alone completes no erasure (R2.11), as
            # `POST /erasures/{id}` asks of the same act. Checked before anything changes.
            self.policy.require_step_up_in_session(actor, "privacy:complete", [request.customer_id])
            # The certified erasure decides what is destroyed and what an AML hold keeps
            # (R5.4); the completion repeats what it reports and keeps the certificate.
            # Run again after a failure here, it meets its own erasure record, finishes
            # the job and certifies the first erasure's outcome.
            erased = self.erasures.erase(request.customer_id, reason)
            result = {"keys_destroyed": ",".join(map(str, erased.get("keys_destroyed", [])))}
            if erased.get("erasure_id"):
                result["erasure_id"] = str(erased["erasure_id"])
            if erased.get("kept"):
                result["keys_kept"] = ",".join(sorted(erased["kept"]))
            request.complete(by=actor.staff_id, at=now, result=result, certificate=erased["certificate"])
            self.app._save(request)
            return self._shown(request, now)
        if request.kind in ("access", "portability"):
            request.complete(by=actor.staff_id, at=now, result={"exports": str(len(request.exports))})
            self.app._save(request)
            return self._shown(request, now)
        customer = self.app._customer(request.customer_id)
        if request.kind == "rectification":
            result = self._rectify(customer, changes)
        elif request.kind == "restriction":
            result = {"restricted": "already" if customer.restricted else "now"}
            if not customer.restricted:
                customer.restrict(reason)
        else:
            result = self._withdraw(customer, request.kind)
        request.complete(by=actor.staff_id, at=now, result=result)
        # The change and the record that it answered the request commit together.
        self.app._save(customer, request)
        return self._shown(request, now)

    @staticmethod
    def _rectify(customer: Customer, changes: dict[str, Any] | None) -> dict[str, str]:
        if not changes:
            raise ValidationFailed({"changes": ["name the fields to rectify and their correct values"]})
        unknown = sorted(set(changes) - set(RECTIFIABLE))
        if unknown:
            raise ValidationFailed({name: ["cannot be rectified here"] for name in unknown})
        apply_changes(customer, dict(changes))
        return {"fields_rectified": ",".join(sorted(changes))}

    @staticmethod
    def _withdraw(customer: Customer, kind: str) -> dict[str, str]:
        actor_id = require_context().actor_id
        withdrawn = []
        for purpose in WITHDRAWS[kind]:
            for channel in CONSENT_PURPOSES[purpose].channels:
                customer.record_consent(purpose=purpose, channel=channel, granted=False, notice_version="none",
                                        source="privacy_request", actor_id=actor_id)
                withdrawn.append(f"{purpose}/{channel}")
        return {"withdrawn": ",".join(withdrawn)}

    # -- restriction (R5.6) --------------------------------------------------------------------------

    def lift_restriction(self, actor: Actor, customer_id: str, *, reason: str) -> dict[str, Any]:
        """End a restriction: a decision recorded with who (the event's actor) and why."""
        self._manage(actor, "lift_restriction", customer_id)

        def lift() -> dict[str, Any]:
            customer = self.app._customer(customer_id)
            customer.lift_restriction(reason)
            self.app._save(customer)
            return {"id": str(customer.id), "restricted": customer.restricted, "version": customer.version}

        return self.app._unconditionally(lift)

    # -- deadlines ------------------------------------------------------------------------------------

    def check_deadlines(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Raise one alert per open request past its deadline (R5.3, R3.6); returns the
        alerts raised by this run. The alert's id is derived from the request and its
        deadline, so running this again, or in two processes at once, raises nothing
        twice; an extended request that runs late again gets an alert for its new deadline."""
        require_context()
        moment = now or self.clock()
        raised = []
        for request in self._all():
            if not request.is_overdue(moment):
                continue
            key = f"{request.id}@{request.deadline}"
            try:
                self.app.repository.get(alert_id(OVERDUE_RULE, key))
                continue  # raised before
            except AggregateNotFoundError:
                pass
            alert = Alert.raise_alert(
                rule_id=OVERDUE_RULE, key=key, severity="high",
                summary=f"data-subject request {request.id} ({request.kind}, {request.jurisdiction}) "
                        f"is past its deadline {request.deadline}",
                customer_ids=[request.customer_id],
                details={"request_id": str(request.id), "deadline": request.deadline, "kind": request.kind,
                         "jurisdiction": request.jurisdiction, "status": request.status},
            )
            try:
                self.app._save(alert)
            except VersionConflict:
                continue  # another process raised it first
            raised.append(alert.to_record())
        return raised


def _check_recipient(recipient: ExportRecipient) -> None:
    given = [name for name, value in (("passphrase", recipient.passphrase),
                                      ("public_key", recipient.public_key_pem)) if value is not None]
    if len(given) != 1:
        raise ValidationFailed({"_schema": ["give exactly one of passphrase or public_key"]})
    if recipient.passphrase is not None and not PASSPHRASE_MIN <= len(recipient.passphrase) <= PASSPHRASE_MAX:
        raise ValidationFailed({"passphrase": [f"must be {PASSPHRASE_MIN} to {PASSPHRASE_MAX} characters"]})
    if recipient.public_key_pem is not None and len(recipient.public_key_pem) > PUBLIC_KEY_MAX:
        raise ValidationFailed({"public_key": ["is too long for a public key"]})
