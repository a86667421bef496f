"""Staff administration (R2.5, R2.8, R2.9): accounts, roles, four-eyes approvals and
break-glass. One method per use case (STYLE 2); every change goes through the
StaffMember aggregate's `@event` methods and the application's unit of work, so it
is an encrypted event whose metadata says who made it and why.

Separation of duties is decided here, where the acting person is known: nobody
changes their own roles; a grant of a privileged role or of any role that reads
customer data (or an account created with one), and the revocation of a privileged
role, wait for a second, different person to approve it. A request can be rejected
(with a reason) and expires (72 hours by default); each decision is an access
record committed in the same transaction as the decision and the change it makes.

Credentials never pass through another person (R2.9): an account made here gets no
password anyone knows; its activation code goes to the person's work address
(application/activation.py). Only the operator's bootstrap (`strongroom staff add`)
prints a one-time password, on the server's own terminal.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyotp

from application.activation import Activation, ActivationUnavailable
from application.context import RequestContext, current_context
from application.customers import Strongroom, chain_hooks
from application.errors import ApplicationError, ValidationFailed
from application.identity import Identity
from application.policy import AccessDenied, NotPermitted, Policy, reads_customer_data
from application.ports import (
    ApprovalRecord,
    ApprovalStore,
    BreakGlassGrant,
    BreakGlassStore,
    InTransactionHook,
    NoLongerPending,
    StaffDirectory,
)
from application.security import Actor, Permission
from domain.audit import AccessRecord
from domain.errors import InvalidField
from domain.staff import PRIVILEGED_ROLES, StaffMember, normalise_work_email
from domain.values import normalise_portfolio, normalise_required_text

BREAK_GLASS_MAX_MINUTES = 60  # R2.8
APPROVAL_TTL = timedelta(hours=72)  # R2.9: a request nobody decided in time lapses
EXPIRY = "expiry"  # `decided_by` of a request that lapsed


# -- errors -------------------------------------------------------------------------------------


class SelfRoleChange(AccessDenied):
    """R2.9: nobody changes their own roles, nor approves a change to them."""

    code = "self_role_change"

    def __init__(self) -> None:
        super().__init__("nobody may change, or approve a change to, their own roles")


class SelfApproval(AccessDenied):
    """R2.9: the approver must be a different person from the requester."""

    code = "self_approval"

    def __init__(self) -> None:
        super().__init__("a request must be approved by someone other than its requester")


class StaffNotFound(ApplicationError):
    def __init__(self, staff_id: object) -> None:
        super().__init__(f"staff member {staff_id} not found")


class ApprovalNotFound(ApplicationError):
    def __init__(self, approval_id: object) -> None:
        super().__init__(f"approval {approval_id} not found")


class ApprovalAlreadyDecided(ApplicationError):
    def __init__(self, approval_id: object) -> None:
        super().__init__(f"approval {approval_id} is no longer pending")


class ApprovalExpired(ApplicationError):
    """R2.9: a request not decided within its time lapses; ask again."""

    def __init__(self, approval_id: object) -> None:
        super().__init__(f"approval {approval_id} has expired; make the request again")


class AlreadyActivated(ApplicationError):
    def __init__(self, staff_id: object) -> None:
        super().__init__(f"staff member {staff_id} has no activation waiting")


class UsernameTaken(ApplicationError):
    def __init__(self) -> None:
        super().__init__("username: already in use")


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffCreated:
    staff_id: str
    username: str
    one_time_password: str
    roles: list[str] = field(default_factory=list)  # as normalised and recorded
    portfolios: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StaffInvited:
    """An account made through the API: its activation went to the person (R2.9); the
    caller gets nothing to sign in with."""

    staff_id: str
    username: str


@dataclass(frozen=True)
class FirstAdmin:
    """`strongroom init`'s administrator, with the secrets shown to the operator once."""

    staff_id: str
    username: str
    one_time_password: str
    totp_uri: str
    recovery_codes: list[str]


@dataclass(frozen=True)
class PendingApproval:
    approval_id: str


# Stands in for a hash in a draft account: drafts are checked, never saved.
_DRAFT_HASH = "-"


def _draft(username: str, display_name: str, roles: Sequence[str], portfolios: Sequence[str]) -> StaffMember:
    """The account as it would be enrolled, built (not saved) to apply every domain rule
    now, before any approval waits."""
    return StaffMember.enrol(username=username, display_name=display_name, roles=roles,
                             portfolios=portfolios, password_hash=_DRAFT_HASH)


def _privileged(roles: Iterable[str]) -> list[str]:
    return sorted(role for role in roles if role in PRIVILEGED_ROLES)


def _four_eyes(roles: Iterable[str]) -> list[str]:
    """Roles whose grant needs a second approver (R2.9): privileged ones, and any that
    reads customer data (decided by the policy's own tables)."""
    return sorted(role for role in roles if role in PRIVILEGED_ROLES or reads_customer_data(role))


def _unknowable_password() -> str:
    """The password of an account awaiting activation: random, never shown, never kept.
    Only the activation code (sent to the person) leads to a password of their own."""
    return secrets.token_urlsafe(32)


@dataclass
class StaffAdministration:
    """Create accounts, change roles, approve, and open break-glass access."""

    app: Strongroom
    identity: Identity
    directory: StaffDirectory
    approvals: ApprovalStore
    break_glass: BreakGlassStore
    # Decides and records every refusal here, as it does for customer data (R2.10,
    # PCI DSS 10.2.1.2): an agent probing staff administration leaves a trace.
    policy: Policy
    # Activation out of band (R2.9); None: accounts cannot be made through the API.
    activation: Activation | None = None
    approval_ttl: timedelta = APPROVAL_TTL

    def _require(self, actor: Actor, permission: Permission, operation: str) -> None:
        self.policy.require(actor, permission, operation=operation,
                            denied=lambda: NotPermitted(str(permission)))

    def _acting(self, actor: Actor, purpose: str, *, fixed: bool = False) -> AbstractContextManager[RequestContext]:
        """Changes are recorded as the actor's, on their session, whoever called us. A
        purpose the caller stated (X-Purpose) wins over a default one, but not over a
        `fixed` one (an approval names its request; break-glass its reason)."""
        stated = current_context()
        if not fixed and stated is not None and stated.purpose:
            purpose = stated.purpose
        return self.identity.acting(actor.staff_id, session_id=actor.session_id, purpose=purpose)

    # -- accounts -----------------------------------------------------------------------------------

    def create_staff(
        self, actor: Actor, *, username: str, display_name: str, roles: Sequence[str],
        portfolios: Sequence[str] = (), email: str,
    ) -> StaffInvited | PendingApproval:
        """A new account, activated by the person through a code sent to `email` (their
        work address); held for a second approver when any role is privileged or reads
        customer data (R2.9). No credential is ever returned to the caller."""
        self._require(actor, Permission.STAFF_MANAGE, "staff:create")
        self.policy.require_step_up(actor, "staff:create")  # R2.11: granting roles, to a new account
        draft = _draft(username, display_name, roles, portfolios)
        email = normalise_work_email(email)
        self.policy.require_separate_duties("staff:create", draft.roles)
        if self.directory.staff_id_for(draft.username) is not None:
            raise UsernameTaken()
        if _four_eyes(draft.roles):
            return self._hold(actor, "create_staff", None, {
                "username": draft.username, "roles": list(draft.roles), "portfolios": list(draft.portfolios),
            }, {"display_name": draft.display_name, "email": email})
        with self._acting(actor, "create staff account"):
            return self._invite(draft.username, draft.display_name, draft.roles, draft.portfolios, email)

    def add_staff_as_operator(
        self, *, username: str, display_name: str, roles: Sequence[str], portfolios: Sequence[str] = (),
    ) -> StaffCreated:
        """The command line's bootstrap path: an operator on the server itself creates an
        account, privileged or not, with no second approver. Only the command line may."""
        context = current_context()
        if context is None or context.via != "cli":
            if context is not None:  # with no one in context there is no one to record
                self.policy.refuse("staff:add_as_operator", "not_operator")
            raise NotPermitted("operator access on the server")
        draft = _draft(username, display_name, roles, portfolios)
        self.policy.require_separate_duties("staff:add_as_operator", draft.roles)
        if self.directory.staff_id_for(draft.username) is not None:
            raise UsernameTaken()
        return self._enrol(draft.username, draft.display_name, draft.roles, draft.portfolios)

    def enrol_first_admin(self, username: str = "admin") -> FirstAdmin:
        """`strongroom init`'s bootstrap: the first administrator, with TOTP set up and
        recovery codes, reserved by name so it can log in. Only the command line may."""
        context = current_context()
        if context is None or context.via != "cli":
            raise NotPermitted("operator access on the server")
        password = self.identity.new_one_time_password()
        totp_secret = pyotp.random_base32()
        recovery_codes, recovery_hashes = self.identity.new_recovery_codes()
        member = StaffMember.enrol(
            username=username, display_name="Administrator", roles=["admin"], portfolios=[],
            password_hash=self.identity.hasher.hash(password),
        )
        member.enrol_totp(totp_secret, recovery_hashes)
        self._save_reserved(member)
        totp_uri = pyotp.TOTP(totp_secret).provisioning_uri(name=member.username, issuer_name="Strongroom")
        return FirstAdmin(str(member.id), member.username, password, totp_uri, recovery_codes)

    def _save_reserved(self, member: StaffMember, *more: Any, in_transaction: InTransactionHook | None = None) -> None:
        """Claim the username, then save; a save that fails gives the name back."""
        if not self.directory.reserve_username(member.username, str(member.id), self.identity.now()):
            raise UsernameTaken()
        try:
            self.app._save(member, *more, in_transaction=in_transaction)
        except BaseException:
            self.directory.release_username(member.username)
            raise

    def _invite(self, username: str, display_name: str, roles: Sequence[str], portfolios: Sequence[str],
                email: str, *more: Any, in_transaction: InTransactionHook | None = None) -> StaffInvited:
        """Enrol an account awaiting activation: the code goes to `email` first (a
        channel that is down leaves nothing behind), then the account, its code's
        hash and whatever `more` records the caller adds commit together."""
        if self.activation is None:
            raise ActivationUnavailable("no activation channel configured")
        member = StaffMember.enrol(
            username=username, display_name=display_name, roles=roles, portfolios=portfolios,
            password_hash=self.identity.hasher.hash(_unknowable_password()), must_change_password=True, email=email,
        )
        issued = self.activation.issue(member, email)
        self._save_reserved(member, *more, in_transaction=chain_hooks(issued, in_transaction))
        return StaffInvited(str(member.id), member.username)

    def resend_activation(self, actor: Actor, staff_id: str) -> dict[str, Any]:
        """A new activation code (the old one stops working) to the address on record,
        for an account not activated yet: the code expired, or the mail was lost."""
        self._require(actor, Permission.STAFF_MANAGE, "staff:resend_activation")
        member = self.identity.staff(staff_id)
        if member is None:
            raise StaffNotFound(staff_id)
        if self.activation is None:
            raise ActivationUnavailable("no activation channel configured")
        email = getattr(member, "email", None)  # absent from snapshots older than R2.9's activation
        record = self.activation.store.activation(str(member.id))
        if email is None or record is None or record.used_at is not None:
            raise AlreadyActivated(staff_id)
        with self._acting(actor, "activation resent"):
            issued = self.activation.issue(member, email)
            sent = AccessRecord(kind="activation_sent", outcome="succeeded", customer_ids=[], fields=[],
                                details={"staff_id": str(member.id)})
            self.app._save(sent, in_transaction=issued)
        return {"id": str(member.id), "username": member.username, "activation": "sent"}

    def _enrol(self, username: str, display_name: str, roles: Sequence[str],
               portfolios: Sequence[str], in_transaction: InTransactionHook | None = None) -> StaffCreated:
        password = self.identity.new_one_time_password()
        member = StaffMember.enrol(
            username=username, display_name=display_name, roles=roles, portfolios=portfolios,
            password_hash=self.identity.hasher.hash(password), must_change_password=True,
        )
        self._save_reserved(member, in_transaction=in_transaction)
        return StaffCreated(str(member.id), member.username, password, list(member.roles), list(member.portfolios))

    def list_staff(self, actor: Actor) -> list[dict[str, Any]]:
        """Every account without its secrets, with whether it is locked out now."""
        self._require(actor, Permission.STAFF_READ, "staff:list")
        listed = []
        now = self.identity.now()
        for staff_id in self.directory.all_staff_ids():
            member = self.identity.staff(staff_id)
            if member is None:
                continue  # a reservation whose account was never saved
            record = member.to_record()
            record["locked_until"] = self.identity.throttle.locked_until(staff_id, now)
            listed.append(record)
        return listed

    def change_roles(
        self, actor: Actor, staff_id: str, *, grant: Sequence[str] = (), revoke: Sequence[str] = (),
    ) -> dict[str, Any] | PendingApproval:
        """Grant and revoke roles; a privileged grant waits for a second approver."""
        self._require(actor, Permission.STAFF_MANAGE, "staff:change_roles")
        self.policy.require_step_up(actor, "staff:change_roles")  # R2.11
        if str(staff_id) == actor.staff_id:
            # Checked before anything else: self-escalation is refused, not queued,
            # and recorded, for the monitoring that looks for privilege grabs (R3.6).
            self.policy.refuse("staff:change_roles", "self_role_change")
            raise SelfRoleChange()
        member = self.identity.staff(staff_id)
        if member is None:
            raise StaffNotFound(staff_id)
        grant, revoke = sorted(set(grant)), sorted(set(revoke))
        StaffMember.check_known_roles([*grant, *revoke])
        if set(grant) & set(revoke):
            raise InvalidField("roles", "a role cannot be granted and revoked at once")
        if not grant and not revoke:
            raise ValidationFailed({"grant": ["grant or revoke at least one role"]})
        self.policy.require_separate_duties("staff:change_roles", (set(member.roles) | set(grant)) - set(revoke))
        needs_second = _four_eyes(role for role in grant if role not in member.roles) or _privileged(
            role for role in revoke if role in member.roles)
        if needs_second:
            # A revoked privileged role waits too: else one admin strips every other
            # approver and is left alone to approve (R2.9).
            return self._hold(actor, "change_roles", str(member.id), {
                "username": member.username, "grant": grant, "revoke": revoke,
            }, {})
        member.change_roles(grant=grant, revoke=revoke)
        with self._acting(actor, "role change"):
            self.app._save(member)
        return member.to_record()

    def hold_revocation(self, actor: Actor, member: StaffMember, revoke: Sequence[str]) -> PendingApproval:
        """R6.2: a recertification reviewer's revoke of privileged roles waits for a
        second, different approver, as any such revoke does (R2.9); the reviewer's
        campaign decision is the request. Decided like any other approval."""
        return self._hold(actor, "change_roles", str(member.id), {
            "username": member.username, "grant": [], "revoke": sorted(set(revoke)),
        }, {})

    # -- four-eyes ------------------------------------------------------------------------------------

    def _hold(self, actor: Actor, kind: str, subject: str | None, summary: dict[str, Any],
              private: dict[str, Any]) -> PendingApproval:
        approval = ApprovalRecord(
            approval_id=str(uuid.uuid4()), kind=kind, requested_by=actor.staff_id,
            requested_at=self.identity.now(), subject_staff_id=subject, summary=summary,
            payload={**summary, **private},
        )
        # The request and its record commit together, or neither (issue 10).
        with self._acting(actor, "request for approval"):
            self.app.access_log.record(kind="approval", outcome="succeeded", details={
                "approval_id": approval.approval_id, "decision": "requested", "request": kind,
            }, in_transaction=self.approvals.approval_writer(approval))
        return PendingApproval(approval.approval_id)

    def pending_approvals(self, actor: Actor) -> list[dict[str, Any]]:
        """Requests still open: pending and not yet past their expiry."""
        self._require(actor, Permission.APPROVALS_DECIDE, "approvals:list")
        now = self.identity.now()
        return [self._view(a) for a in self.approvals.approvals(status="pending") if now < self._expires(a)]

    def _expires(self, approval: ApprovalRecord) -> datetime:
        return approval.requested_at + self.approval_ttl

    def _view(self, approval: ApprovalRecord) -> dict[str, Any]:
        summary = dict(approval.summary)
        if approval.kind == "create_staff" and approval.payload.get("email"):
            # The approver checks where the activation will go: the person's own address.
            summary["email"] = approval.payload["email"]
        return {
            "id": approval.approval_id, "kind": approval.kind, "status": approval.status,
            "requested_by": approval.requested_by, "requested_at": approval.requested_at,
            "expires_at": self._expires(approval),
            "subject_staff_id": approval.subject_staff_id, "summary": summary,
            "decided_by": approval.decided_by, "decided_at": approval.decided_at,
        }

    def _decidable(self, actor: Actor, approval_id: str, operation: str) -> ApprovalRecord:
        """The request, if `actor` may decide it now; an expired one is closed (and
        recorded) on the way."""
        self._require(actor, Permission.APPROVALS_DECIDE, operation)
        self.policy.require_step_up(actor, operation)  # R2.11: deciding grants or withholds roles
        approval = self.approvals.approval(str(approval_id))
        if approval is None:
            raise ApprovalNotFound(approval_id)
        if approval.subject_staff_id == actor.staff_id:
            # Nor may its subject reject one: a revocation waiting for approval would
            # be the revoked person's to cancel.
            self.policy.refuse(operation, "self_role_change")
            raise SelfRoleChange()
        if approval.status != "pending":
            raise ApprovalAlreadyDecided(approval_id)
        if self.identity.now() >= self._expires(approval):
            self._decide(actor, approval, "expired", "approval expired", decided_by=EXPIRY)
            raise ApprovalExpired(approval_id)
        return approval

    def _decision(self, approval: ApprovalRecord, decision: str) -> AccessRecord:
        return AccessRecord(kind="approval", outcome="succeeded", customer_ids=[], fields=[], details={
            "approval_id": approval.approval_id, "decision": decision, "request": approval.kind,
            "requested_by": approval.requested_by, "subject_staff_id": approval.subject_staff_id or "",
        })

    def _decide(self, actor: Actor, approval: ApprovalRecord, decision: str, purpose: str,
                *, decided_by: str | None = None) -> None:
        """Record a decision that changes nothing else (rejected, expired): the record
        and the request's new status commit together, or neither does."""
        hook = self.approvals.decide_in_transaction(approval.approval_id, decided_by or actor.staff_id,
                                                    self.identity.now(), decision)
        try:
            with self._acting(actor, purpose, fixed=True):
                self.app._save(self._decision(approval, decision), in_transaction=hook)
        except NoLongerPending:
            raise ApprovalAlreadyDecided(approval.approval_id) from None

    def reject(self, actor: Actor, approval_id: str, *, reason: str) -> dict[str, Any]:
        """Refuse a request, saying why; it can never be approved afterwards. Anyone who
        may decide may reject (the requester too: a withdrawal), except its subject."""
        approval = self._decidable(actor, approval_id, "approvals:reject")
        reason = normalise_required_text(reason, "reason", max_length=500)
        # The reason travels as the record's purpose (sealed metadata), never in its details.
        self._decide(actor, approval, "rejected", f"rejected: {reason}")
        return self._view(self.approvals.approval(approval.approval_id) or approval)

    def approve(self, actor: Actor, approval_id: str) -> dict[str, Any]:
        """A second, different person approves; the held change is carried out now,
        recorded with the approver as actor and the request named in the purpose. The
        change, the decision's record and the request's status commit together."""
        approval = self.approvals.approval(str(approval_id))
        if approval is not None and approval.requested_by == actor.staff_id:
            self._require(actor, Permission.APPROVALS_DECIDE, "approvals:approve")
            self.policy.refuse("approvals:approve", "self_approval")
            raise SelfApproval()
        approval = self._decidable(actor, approval_id, "approvals:approve")
        purpose = f"approval {approval.approval_id} of a request by {approval.requested_by}"
        hook = self.approvals.decide_in_transaction(approval.approval_id, actor.staff_id, self.identity.now(),
                                                    "executed")
        try:
            with self._acting(actor, purpose, fixed=True):
                result = self._execute(approval, self._decision(approval, "approved"), hook)
        except NoLongerPending:
            raise ApprovalAlreadyDecided(approval_id) from None
        return {"approval_id": approval.approval_id, "status": "executed", "kind": approval.kind,
                "result": result}

    def _execute(self, approval: ApprovalRecord, record: AccessRecord, hook: InTransactionHook) -> dict[str, Any]:
        payload = approval.payload
        if approval.kind == "create_staff":
            # Checked again: the roles may conflict with a policy changed since the request.
            self.policy.require_separate_duties("approvals:approve", payload["roles"])
            if not payload.get("email"):
                raise ActivationUnavailable("request made before activation by mail")
            # Nothing to sign in with comes back: the activation went to the person.
            invited = self._invite(payload["username"], payload["display_name"], payload["roles"],
                                   payload["portfolios"], payload["email"], record, in_transaction=hook)
            return {"id": invited.staff_id, "username": invited.username, "activation": "sent"}
        if approval.kind == "change_roles":
            member = self.identity.staff(str(approval.subject_staff_id))
            if member is None:
                raise StaffNotFound(approval.subject_staff_id)
            # The account may have changed while the request waited: decide on it as it is now.
            self.policy.require_separate_duties(
                "approvals:approve", (set(member.roles) | set(payload["grant"])) - set(payload["revoke"]))
            member.change_roles(grant=payload["grant"], revoke=payload["revoke"])
            self.app._save(member, record, in_transaction=hook)
            return member.to_record()
        raise ApprovalNotFound(approval.approval_id)  # pragma: no cover - unknown kinds are never stored

    # -- break-glass --------------------------------------------------------------------------------------

    def start_break_glass(self, actor: Actor, *, portfolio: str, reason: str, minutes: int) -> dict[str, Any]:
        """Emergency access to a portfolio beyond one's scope (R2.8): at most 60 minutes,
        a mandatory reason, recorded as an access record and listed for review. The
        monitor (application/monitoring.py) reads that record from the log and raises
        the high-severity alert (`break_glass_opened`)."""
        self._require(actor, Permission.BREAK_GLASS, "break_glass:start")
        self.policy.require_step_up(actor, "break_glass:start")  # R2.11
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= BREAK_GLASS_MAX_MINUTES:
            raise ValidationFailed({"minutes": [f"must be a whole number from 1 to {BREAK_GLASS_MAX_MINUTES}"]})
        portfolio = normalise_portfolio(portfolio)
        reason = normalise_required_text(reason, "reason", max_length=500)
        now = self.identity.now()
        grant = BreakGlassGrant(
            grant_id=str(uuid.uuid4()), staff_id=actor.staff_id, session_id=actor.session_id,
            portfolio=portfolio, reason=reason, started_at=now, expires_at=now + timedelta(minutes=minutes),
        )
        # The reason travels as the context's purpose (sealed event metadata), not in
        # the record's details, which must hold no free text. The grant is written in
        # the record's own transaction: never a live grant without its record (issue 10).
        with self._acting(actor, f"break-glass: {reason}", fixed=True):
            self.app.access_log.record(kind="break_glass", outcome="allowed", details={
                "grant_id": grant.grant_id, "portfolio": portfolio, "minutes": str(minutes),
                "expires_at": grant.expires_at.isoformat(),
            }, in_transaction=self.break_glass.grant_writer(grant))
        return self._grant_view(grant, now)

    def break_glass_grants(self, actor: Actor) -> list[dict[str, Any]]:
        """Every grant, newest first, for review by supervisors and security officers."""
        if not any(actor.has(p) for p in (Permission.BREAK_GLASS, Permission.ALERTS_READ, Permission.AUDIT_READ)):
            self.policy.refuse("break_glass:list", "permission")
            raise NotPermitted(str(Permission.ALERTS_READ))
        now = self.identity.now()
        return [self._grant_view(g, now) for g in self.break_glass.grants()]

    @staticmethod
    def _grant_view(grant: BreakGlassGrant, now: Any) -> dict[str, Any]:
        return {
            "id": grant.grant_id, "staff_id": grant.staff_id, "portfolio": grant.portfolio,
            "reason": grant.reason, "started_at": grant.started_at, "expires_at": grant.expires_at,
            "active": grant.started_at <= now < grant.expires_at,
        }
