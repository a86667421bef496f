"""Staff administration (R2.5, R2.8, R2.9): accounts, roles, four-eyes approvals and
break-glass. One method per use case (STYLE 2); every change goes through the
StaffMember aggregate's `@event` methods and the application's unit of work, so it
is an encrypted event whose metadata says who made it and why.

Separation of duties is decided here, where the acting person is known: nobody
changes their own roles, and a grant of a privileged role (or an account created
with one) waits for a second, different person to approve it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pyotp

from application.context import RequestContext, current_context
from application.errors import ApplicationError, ValidationFailed
from application.identity import Identity
from application.policy import AccessDenied, NotPermitted, Policy
from application.customers import Strongroom
from application.ports import ApprovalRecord, ApprovalStore, BreakGlassGrant, BreakGlassStore, StaffDirectory
from application.security import Actor, Permission
from domain.errors import InvalidField
from domain.staff import PRIVILEGED_ROLES, StaffMember
from domain.values import normalise_portfolio, normalise_required_text

BREAK_GLASS_MAX_MINUTES = 60  # R2.8


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
    # Called with each new break-glass grant, after it is recorded: the monitoring
    # worker (R3.6) hangs its high-severity alert here.
    break_glass_hooks: list[Callable[[BreakGlassGrant], None]] = field(default_factory=list)

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
        portfolios: Sequence[str] = (),
    ) -> StaffCreated | PendingApproval:
        """A new account with a one-time password; held for approval when any role is
        privileged (R2.9)."""
        self._require(actor, Permission.STAFF_MANAGE, "staff:create")
        self.policy.require_step_up(actor, "staff:create")  # R2.11: granting roles, to a new account
        draft = _draft(username, display_name, roles, portfolios)
        self.policy.require_separate_duties("staff:create", draft.roles)
        if self.directory.staff_id_for(draft.username) is not None:
            raise UsernameTaken()
        privileged = _privileged(draft.roles)
        if privileged:
            return self._hold(actor, "create_staff", None, {
                "username": draft.username, "roles": list(draft.roles), "portfolios": list(draft.portfolios),
            }, {"display_name": draft.display_name})
        with self._acting(actor, "create staff account"):
            return self._enrol(draft.username, draft.display_name, draft.roles, draft.portfolios)

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

    def _save_reserved(self, member: StaffMember) -> None:
        """Claim the username, then save; a save that fails gives the name back."""
        if not self.directory.reserve_username(member.username, str(member.id), self.identity.now()):
            raise UsernameTaken()
        try:
            self.app._save(member)
        except BaseException:
            self.directory.release_username(member.username)
            raise

    def _enrol(self, username: str, display_name: str, roles: Sequence[str],
               portfolios: Sequence[str]) -> StaffCreated:
        password = self.identity.new_one_time_password()
        member = StaffMember.enrol(
            username=username, display_name=display_name, roles=roles, portfolios=portfolios,
            password_hash=self.identity.hasher.hash(password), must_change_password=True,
        )
        self._save_reserved(member)
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
        new_privileged = _privileged(role for role in grant if role not in member.roles)
        if new_privileged:
            return self._hold(actor, "change_roles", str(member.id), {
                "username": member.username, "grant": grant, "revoke": revoke,
            }, {})
        member.change_roles(grant=grant, revoke=revoke)
        with self._acting(actor, "role change"):
            self.app._save(member)
        return member.to_record()

    # -- four-eyes ------------------------------------------------------------------------------------

    def _hold(self, actor: Actor, kind: str, subject: str | None, summary: dict[str, Any],
              private: dict[str, Any]) -> PendingApproval:
        approval = ApprovalRecord(
            approval_id=str(uuid.uuid4()), kind=kind, requested_by=actor.staff_id,
            requested_at=self.identity.now(), subject_staff_id=subject, summary=summary,
            payload={**summary, **private},
        )
        self.approvals.add_approval(approval)
        return PendingApproval(approval.approval_id)

    def pending_approvals(self, actor: Actor) -> list[dict[str, Any]]:
        self._require(actor, Permission.APPROVALS_DECIDE, "approvals:list")
        return [self._view(a) for a in self.approvals.approvals(status="pending")]

    @staticmethod
    def _view(approval: ApprovalRecord) -> dict[str, Any]:
        return {
            "id": approval.approval_id, "kind": approval.kind, "status": approval.status,
            "requested_by": approval.requested_by, "requested_at": approval.requested_at,
            "subject_staff_id": approval.subject_staff_id, "summary": approval.summary,
            "decided_by": approval.decided_by, "decided_at": approval.decided_at,
        }

    def approve(self, actor: Actor, approval_id: str) -> dict[str, Any]:
        """A second, different person approves; the held change is carried out now,
        recorded with the approver as actor and the request named in the purpose."""
        self._require(actor, Permission.APPROVALS_DECIDE, "approvals:approve")
        self.policy.require_step_up(actor, "approvals:approve")  # R2.11
        approval = self.approvals.approval(str(approval_id))
        if approval is None:
            raise ApprovalNotFound(approval_id)
        if approval.requested_by == actor.staff_id:
            self.policy.refuse("approvals:approve", "self_approval")
            raise SelfApproval()
        if approval.subject_staff_id == actor.staff_id:
            self.policy.refuse("approvals:approve", "self_role_change")
            raise SelfRoleChange()
        if approval.status != "pending" or not self.approvals.decide_approval(
            approval.approval_id, actor.staff_id, self.identity.now(), "approved"
        ):
            raise ApprovalAlreadyDecided(approval_id)
        purpose = f"approval {approval.approval_id} of a request by {approval.requested_by}"
        try:
            with self._acting(actor, purpose, fixed=True):
                result = self._execute(approval)
        except BaseException:
            self._set_status(approval.approval_id, "failed")
            raise
        self._set_status(approval.approval_id, "executed")
        return {"approval_id": approval.approval_id, "status": "executed", "kind": approval.kind,
                "result": result}

    def _set_status(self, approval_id: str, status: str) -> None:
        self.approvals.set_approval_status(approval_id, status)

    def _execute(self, approval: ApprovalRecord) -> dict[str, Any]:
        payload = approval.payload
        if approval.kind == "create_staff":
            created = self._enrol(payload["username"], payload["display_name"], payload["roles"], payload["portfolios"])
            return {"id": created.staff_id, "username": created.username,
                    "one_time_password": created.one_time_password}
        if approval.kind == "change_roles":
            member = self.identity.staff(str(approval.subject_staff_id))
            if member is None:
                raise StaffNotFound(approval.subject_staff_id)
            # The account may have changed while the request waited: decide on it as it is now.
            self.policy.require_separate_duties(
                "approvals:approve", (set(member.roles) | set(payload["grant"])) - set(payload["revoke"]))
            member.change_roles(grant=payload["grant"], revoke=payload["revoke"])
            self.app._save(member)
            return member.to_record()
        raise ApprovalNotFound(approval.approval_id)  # pragma: no cover - unknown kinds are never stored

    # -- break-glass --------------------------------------------------------------------------------------

    def start_break_glass(self, actor: Actor, *, portfolio: str, reason: str, minutes: int) -> dict[str, Any]:
        """Emergency access to a portfolio beyond one's scope (R2.8): at most 60 minutes,
        a mandatory reason, recorded as an access record and listed for review."""
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
        self.break_glass.add_grant(grant)
        # The reason travels as the context's purpose (sealed event metadata), not in
        # the record's details, which must hold no free text.
        with self._acting(actor, f"break-glass: {reason}", fixed=True):
            self.app.access_log.record(kind="break_glass", outcome="allowed", details={
                "grant_id": grant.grant_id, "portfolio": portfolio, "minutes": str(minutes),
                "expires_at": grant.expires_at.isoformat(),
            })
        for hook in self.break_glass_hooks:
            hook(grant)
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
