"""Access recertification (R6.2; PCI DSS 7.2.4): confirm or revoke, periodically,
what each member of staff may do.

**Who reviews whom.** Supervisors answer for their portfolios (R2.6), so a member's
reviewers are the active supervisors, other than themselves, who share one of their
portfolios. A member no supervisor shares a portfolio with (the unscoped roles: admin,
auditor, compliance officer, dpo, security officer; or a lone supervisor) is reviewed
by the security officers (other than themselves). No new data is kept for it: the
reviewers are computed from the accounts when the campaign starts, and frozen in it.

**A campaign** (`start`) lists every active member with a role: their roles and
portfolios as they are, their reviewers. Reviewers confirm or revoke (`decide`): a
revoke names the roles and portfolios to take away (none named: all of them) and
takes effect at once, in the same transaction as the decision, through the account's
own `change_roles` / `change_portfolios` events, except the revoke of a privileged
role, which waits for a second, different approver like any such revoke (R2.9,
application/staff_admin.py `hold_revocation`): the campaign decision is the request.
Nobody reviews their own access. A revoke never grants, so it needs no duty check.

**Deadlines** (`check`, run from cron as `strongroom recert check`): items unanswered
`review_period` (14 days) after the start are escalated, and security officers and
admins (`recertification:manage`) may decide them too; items still unanswered
`escalation_period` (7 days) later (the operator's `strongroom recert decide`
too) raise an `Alert` (rule `recertification_overdue`,
one per item: its id is derived from the campaign and the member, so a second check,
or two racing, cannot raise it twice). `check` also starts the next campaign when the
last one started `interval` (91 days: quarterly) ago or more.

Every refusal goes through the policy and is recorded (R2.10).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.context import current_context
from application.errors import ApplicationError, ValidationFailed
from application.identity import Identity
from application.policy import OPERATOR_ROLE, AccessDenied, NotPermitted, Policy
from application.ports import StaffDirectory
from application.security import Actor, Permission
from application.staff_admin import StaffAdministration
from domain.alerts import Alert
from domain.errors import InvalidField
from domain.recertification import (
    SCHEDULE_ID,
    RecertificationCampaign,
    RecertificationSchedule,
)
from domain.staff import PRIVILEGED_ROLES, StaffMember

REVIEW_PERIOD = timedelta(days=14)
ESCALATION_PERIOD = timedelta(days=7)
INTERVAL = timedelta(days=91)  # quarterly
OVERDUE_RULE = "recertification_overdue"


class CampaignNotFound(ApplicationError):
    def __init__(self, campaign_id: object) -> None:
        super().__init__(f"recertification campaign {campaign_id} not found")


class CampaignOpen(ApplicationError):
    """A campaign is still open: finish it before starting another (409)."""

    def __init__(self, campaign_id: object) -> None:
        super().__init__(f"recertification campaign {campaign_id} is still open")


class ItemAlreadyDecided(ApplicationError):
    """The item has its decision already; decisions are final (409)."""

    def __init__(self, staff_id: object) -> None:
        super().__init__(f"the review of {staff_id} is already decided")


class ItemNotYours(AccessDenied):
    """R6.2: only the item's reviewers (or, once escalated, a security officer or an
    admin) decide it; and nobody their own access (403)."""

    code = "not_your_review"

    def __init__(self) -> None:
        super().__init__("this item is not yours to decide")


@dataclass
class Recertification:
    """Start campaigns, decide items, escalate and alert (R6.2)."""

    identity: Identity
    staff_admin: StaffAdministration
    directory: StaffDirectory
    policy: Policy
    review_period: timedelta = REVIEW_PERIOD
    escalation_period: timedelta = ESCALATION_PERIOD
    interval: timedelta = INTERVAL

    # -- helpers ---------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self.identity.now()

    @staticmethod
    def _is_operator(actor: Actor) -> bool:
        context = current_context()
        return OPERATOR_ROLE in actor.roles and context is not None and context.via == "cli"

    def _require(self, actor: Actor, permission: Permission, operation: str) -> None:
        if self._is_operator(actor):
            return
        if not self.policy.permits(actor, permission, operation=operation):
            raise NotPermitted(str(permission))

    def _members(self) -> list[StaffMember]:
        members = []
        for staff_id in self.directory.all_staff_ids():
            member = self.identity.staff(staff_id)
            if member is not None and member.status == "active":
                members.append(member)
        return members

    def _schedule(self) -> RecertificationSchedule | None:
        try:
            schedule: Any = self.identity.app.repository.get(SCHEDULE_ID)
        except AggregateNotFoundError:
            return None
        return schedule if isinstance(schedule, RecertificationSchedule) else None

    def _campaign(self, campaign_id: str) -> RecertificationCampaign:
        try:
            campaign: Any = self.identity.app.repository.get(UUID(str(campaign_id)))
        except (AggregateNotFoundError, ValueError):
            raise CampaignNotFound(campaign_id) from None
        if not isinstance(campaign, RecertificationCampaign):
            raise CampaignNotFound(campaign_id)
        return campaign

    def campaigns(self) -> list[RecertificationCampaign]:
        schedule = self._schedule()
        return [self._campaign(entry["id"]) for entry in (schedule.campaigns if schedule else [])]

    def _acting(self, actor: Actor, purpose: str) -> Any:
        return self.identity.acting(actor.staff_id, session_id=actor.session_id, purpose=purpose)

    # -- use cases -------------------------------------------------------------------------

    def start(self, actor: Actor) -> dict[str, Any]:
        """Open a campaign over every active member with a role (recertification:manage)."""
        self._require(actor, Permission.RECERT_MANAGE, "recertification:start")
        for campaign in self.campaigns():
            if not campaign.complete:
                raise CampaignOpen(campaign.id)
        members = self._members()
        supervisors = [m for m in members if m.has_role("supervisor")]
        officers = [m for m in members if m.has_role("security_officer")]
        items = []
        for member in members:
            if not member.roles:
                continue
            reviewers = [s for s in supervisors if s.id != member.id and set(s.portfolios) & set(member.portfolios)]
            if not reviewers:
                reviewers = [o for o in officers if o.id != member.id]
            items.append({"staff_id": str(member.id), "username": member.username, "roles": list(member.roles),
                          "portfolios": list(member.portfolios), "reviewers": [str(r.id) for r in reviewers]})
        now = self._now()
        campaign = RecertificationCampaign.start(
            started_at=now.isoformat(), due_at=(now + self.review_period).isoformat(),
            escalate_until=(now + self.review_period + self.escalation_period).isoformat(),
            started_by=actor.staff_id, items=items,
        )
        schedule = self._schedule() or RecertificationSchedule.create()
        schedule.add(campaign_id=str(campaign.id), started_at=now.isoformat())
        with self._acting(actor, "recertification started"):
            try:
                # Together: a second campaign started at once collides on the schedule.
                self.identity.app._save(schedule, campaign)
            except IntegrityError:
                raise CampaignOpen("started concurrently") from None
        return self.view(campaign)

    def decide(self, actor: Actor, campaign_id: str, staff_id: str, *, decision: str,
               roles: Sequence[str] | None = None, portfolios: Sequence[str] | None = None) -> dict[str, Any]:
        """Confirm or revoke one member's access (their reviewer; once escalated, also a
        security officer or admin). A revoke takes effect at once (see the module text)."""
        operation = "recertification:decide"
        self._require(actor, Permission.RECERT_REVIEW, operation)
        if decision not in ("confirm", "revoke"):
            raise ValidationFailed({"decision": ["must be confirm or revoke"]})
        campaign = self._campaign(campaign_id)
        try:
            item = campaign.item(str(staff_id))
        except InvalidField:
            raise CampaignNotFound(f"{campaign_id} (no item for {staff_id})") from None
        escalated_to_actor = item["state"] == "escalated" and (
            actor.has(Permission.RECERT_MANAGE) or self._is_operator(actor))
        if str(staff_id) == actor.staff_id or not (actor.staff_id in item["reviewers"] or escalated_to_actor):
            # Deciding one's own access, or someone else's review: refused and recorded.
            self.policy.refuse(operation, "self_review" if str(staff_id) == actor.staff_id else "not_reviewer")
            raise ItemNotYours()
        if item["state"] in ("confirmed", "revoked"):
            raise ItemAlreadyDecided(staff_id)
        if decision == "revoke" and not self._is_operator(actor):
            self.policy.require_step_up(actor, operation)  # R2.11: a revoke is a role change
        now = self._now().isoformat()
        if decision == "confirm":
            campaign.decide(staff_id=str(staff_id), decision="confirmed", decided_by=actor.staff_id, decided_at=now,
                            revoked_roles=[], revoked_portfolios=[])
            with self._acting(actor, "recertification: confirmed"):
                self.identity.app._save(campaign)
            return self.view(campaign)
        revoke_roles = sorted(set(item["roles"] if roles is None and portfolios is None else roles or ()))
        revoke_portfolios = sorted(set(item["portfolios"] if roles is None and portfolios is None else portfolios or ()))
        if not set(revoke_roles) <= set(item["roles"]) or not set(revoke_portfolios) <= set(item["portfolios"]):
            raise ValidationFailed({"roles": ["only roles and portfolios under review can be revoked"]})
        if not revoke_roles and not revoke_portfolios:
            raise ValidationFailed({"roles": ["name at least one role or portfolio to revoke"]})
        member = self.identity.staff(str(staff_id))
        if member is None:
            raise CampaignNotFound(f"{campaign_id} (no account {staff_id})")
        privileged = [r for r in revoke_roles if r in PRIVILEGED_ROLES and r in member.roles]
        held = None
        if privileged:
            # R2.9: first the four-eyes request, so a decision never names one that is missing.
            held = self.staff_admin.hold_revocation(actor, member, privileged).approval_id
        member.change_roles(revoke=[r for r in revoke_roles if r not in privileged])
        member.change_portfolios([p for p in member.portfolios if p not in revoke_portfolios])
        campaign.decide(staff_id=str(staff_id), decision="revoked", decided_by=actor.staff_id, decided_at=now,
                        revoked_roles=revoke_roles, revoked_portfolios=revoke_portfolios, held_approval=held)
        with self._acting(actor, "recertification: revoked"):
            # The decision and the change it makes commit together (issue 10).
            self.identity.app._save(campaign, member)
        return self.view(campaign)

    def check(self, actor: Actor) -> dict[str, Any]:
        """Escalate what is due, alert what is overdue, start the next campaign when the
        interval has passed (recertification:manage; the operator from cron)."""
        self._require(actor, Permission.RECERT_MANAGE, "recertification:check")
        now = self._now()
        escalated = alerted = 0
        campaigns = self.campaigns()
        for campaign in campaigns:
            open_items = campaign.open_items()
            if not open_items:
                continue
            pending = [i["staff_id"] for i in open_items if i["state"] == "pending"]
            if pending and now >= datetime.fromisoformat(campaign.due_at):
                campaign.escalate(staff_ids=pending, escalated_at=now.isoformat())
                with self._acting(actor, "recertification escalated"):
                    self.identity.app._save(campaign)
                escalated += len(pending)
            if now >= datetime.fromisoformat(campaign.escalate_until):
                alerted += self._alert_overdue(actor, campaign)
        started = None
        last = max((datetime.fromisoformat(c.started_at) for c in campaigns), default=None)
        if (last is None or now - last >= self.interval) and all(c.complete for c in campaigns):
            started = self.start(actor)["id"]
        return {"escalated": escalated, "alerted": alerted, "started": started}

    def _alert_overdue(self, actor: Actor, campaign: RecertificationCampaign) -> int:
        """One alert per overdue item, raised with the campaign's mark in one save."""
        items = [i for i in campaign.open_items() if not i.get("alerted")]
        if not items:
            return 0
        alerts = [Alert.raise_alert(
            rule_id=OVERDUE_RULE, key=f"{campaign.id}:{item['staff_id']}", severity="medium",
            summary=f"access recertification of {item['username']} unanswered past its escalation deadline",
            details={"campaign_id": str(campaign.id), "staff_id": item["staff_id"],
                     "escalate_until": campaign.escalate_until},
        ) for item in items]
        campaign.mark_alerted(staff_ids=[i["staff_id"] for i in items], alert_ids=[str(a.id) for a in alerts])
        with self._acting(actor, "recertification overdue"):
            try:
                self.identity.app._save(campaign, *alerts)
            except IntegrityError:
                return 0  # raised already by a racing check: its own save carries the mark
        return len(alerts)

    # -- reading ---------------------------------------------------------------------------

    def list(self, actor: Actor) -> list[dict[str, Any]]:
        """Campaigns: all items for recertification:manage and audit:read holders (the
        auditor, the compliance officer); a reviewer sees only the items they may decide
        (a supervisor's reports:read does not open everyone's)."""
        everything = self._is_operator(actor) or actor.has(Permission.RECERT_MANAGE) or actor.has(
            Permission.AUDIT_READ)
        if not everything:
            self._require(actor, Permission.RECERT_REVIEW, "recertification:list")
        listed = []
        for campaign in self.campaigns():
            view = self.view(campaign)
            if not everything:
                view["items"] = [i for i in view["items"] if actor.staff_id in i["reviewers"]
                                 and i["staff_id"] != actor.staff_id]
            listed.append(view)
        return listed

    def report(self, actor: Actor, campaign_id: str) -> dict[str, Any]:
        """The campaign's outcome (R6.2): every item, its decision, by whom, when
        (recertification:manage or audit:read)."""
        if not self._is_operator(actor) and not actor.has(Permission.RECERT_MANAGE):
            self._require(actor, Permission.AUDIT_READ, "recertification:report")
        return self.view(self._campaign(campaign_id))

    @staticmethod
    def view(campaign: RecertificationCampaign) -> dict[str, Any]:
        record = campaign.to_record()
        states = [item["state"] for item in record["items"]]
        record["summary"] = {state: states.count(state) for state in ("pending", "escalated", "confirmed", "revoked")}
        record["overdue_alerts"] = sum(1 for item in record["items"] if item.get("alerted"))
        return record

