"""Access recertification (R6.2): a campaign asks reviewers to confirm or revoke each
member of staff's roles and portfolios, as they were when the campaign started.

A campaign is an aggregate: its start (with every item and its reviewers), each
decision, each escalation and each overdue alert are events in the chained log, so
its outcome (who confirmed or revoked what, when, which went unanswered) is read back
from the log (the R6.1 `recertification` report). Who may decide, and what a revoke
changes on the account, is the application's (application/recertification.py).

`RecertificationSchedule` is one aggregate with a fixed id holding the campaigns'
ids: a campaign and its entry there are saved together, so two campaigns started at
once collide on the schedule's version instead of both opening.

Fields are non-personal: staff ids, usernames, role names, portfolio codes, times.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidField

SCHEDULE_ID = uuid5(UUID("3c1f6b9e-8d2a-4f57-a0c4-5b7e9d1f2a63"), "recertification-schedule")
DECISIONS = ("confirmed", "revoked")
ITEM_STATES = ("pending", "escalated", *DECISIONS)


class RecertificationSchedule(Aggregate):
    """The campaigns, in the order they were started."""

    @classmethod
    def create(cls) -> RecertificationSchedule:
        return cls._create(cls.Opened, id=SCHEDULE_ID)

    class Opened(Aggregate.Created):
        pass

    @event(Opened)
    def __init__(self) -> None:
        self.campaigns: list[dict[str, str]] = []

    @event("CampaignAdded")
    def add(self, campaign_id: str, started_at: str) -> None:
        self.campaigns = [*self.campaigns, {"id": campaign_id, "started_at": started_at}]

    def to_record(self) -> dict[str, Any]:
        return {"campaigns": [dict(entry) for entry in self.campaigns]}


class RecertificationCampaign(Aggregate):
    """One campaign. Create with `RecertificationCampaign.start(...)`."""

    @classmethod
    def start(cls, *, started_at: str, due_at: str, escalate_until: str, started_by: str,
              items: Iterable[Mapping[str, Any]]) -> RecertificationCampaign:
        listed = [_item(item) for item in items]
        if len({item["staff_id"] for item in listed}) != len(listed):
            raise InvalidField("items", "one item per member of staff")
        return cls(started_at=started_at, due_at=due_at, escalate_until=escalate_until,
                   started_by=started_by, items=listed)

    @event("Started")
    def __init__(self, started_at: str, due_at: str, escalate_until: str, started_by: str,
                 items: list[dict[str, Any]]) -> None:
        self.started_at = started_at
        self.due_at = due_at  # unanswered by then: escalated
        self.escalate_until = escalate_until  # still unanswered by then: an alert
        self.started_by = started_by
        self.items: dict[str, dict[str, Any]] = {
            item["staff_id"]: {**item, "state": "pending", "decided_by": None, "decided_at": None,
                               "revoked_roles": [], "revoked_portfolios": [], "alerted": False}
            for item in items
        }

    # -- rules -----------------------------------------------------------------------------

    def item(self, staff_id: str) -> dict[str, Any]:
        found = self.items.get(str(staff_id))
        if found is None:
            raise InvalidField("staff_id", "is not an item of this campaign")
        return found

    def check_open(self, staff_id: str) -> None:
        if self.item(staff_id)["state"] in DECISIONS:
            raise InvalidField("decision", "this item is already decided")

    # -- events ----------------------------------------------------------------------------

    @event("Decided")
    def decide(self, staff_id: str, decision: str, decided_by: str, decided_at: str,
               revoked_roles: list[str], revoked_portfolios: list[str], held_approval: str | None = None) -> None:
        """`held_approval`: the four-eyes request that carries out the revoke of
        privileged roles (R2.9); the rest of a revoke took effect with this event."""
        self.check_open(staff_id)
        if decision not in DECISIONS:
            raise InvalidField("decision", "must be confirm or revoke")
        item = self.item(staff_id)
        if decision == "revoked" and not revoked_roles and not revoked_portfolios:
            raise InvalidField("decision", "a revoke names at least one role or portfolio")
        if not set(revoked_roles) <= set(item["roles"]) or not set(revoked_portfolios) <= set(item["portfolios"]):
            raise InvalidField("decision", "only roles and portfolios under review can be revoked")
        self.items = {**self.items, str(staff_id): {
            **item, "state": decision, "decided_by": decided_by, "decided_at": decided_at,
            "revoked_roles": sorted(revoked_roles), "revoked_portfolios": sorted(revoked_portfolios),
            "held_approval": held_approval,
        }}

    @event("Escalated")
    def escalate(self, staff_ids: list[str], escalated_at: str) -> None:
        updated = dict(self.items)
        for staff_id in staff_ids:
            if self.item(staff_id)["state"] == "pending":
                updated[staff_id] = {**updated[staff_id], "state": "escalated", "escalated_at": escalated_at}
        self.items = updated

    @event("OverdueAlerted")
    def mark_alerted(self, staff_ids: list[str], alert_ids: list[str]) -> None:
        updated = dict(self.items)
        for staff_id, alert in zip(staff_ids, alert_ids, strict=True):
            updated[staff_id] = {**self.item(staff_id), "alerted": True, "alert_id": alert}
        self.items = updated

    # -- views -----------------------------------------------------------------------------

    def open_items(self) -> list[dict[str, Any]]:
        return [item for item in self.items.values() if item["state"] not in DECISIONS]

    @property
    def complete(self) -> bool:
        return not self.open_items()

    def to_record(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "started_at": self.started_at,
            "due_at": self.due_at,
            "escalate_until": self.escalate_until,
            "started_by": self.started_by,
            "complete": self.complete,
            "items": [dict(item) for item in sorted(self.items.values(), key=lambda i: i["username"])],
        }


def _item(item: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return {
            "staff_id": str(item["staff_id"]),
            "username": str(item["username"]),
            "roles": sorted(str(r) for r in item["roles"]),
            "portfolios": sorted(str(p) for p in item["portfolios"]),
            "reviewers": sorted(str(r) for r in item["reviewers"]),
        }
    except (KeyError, TypeError):
        raise InvalidField("items", "each names staff_id, username, roles, portfolios, reviewers") from None
