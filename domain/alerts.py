"""Alerts (R3.6): misuse noticed in the log, recorded in the log.

An alert is an aggregate like any other, so raising it and acknowledging it are
events in the same chained, encrypted log as the access records they point at: a
security officer cannot quietly drop an alert, and an auditor sees who acknowledged
it, when and with what note (R6.1 reports read them back).

Its id is derived from the rule and the key that makes it unique (for example the
position of the event that crossed a threshold): raising the same alert twice — a
monitor killed after writing but before recording its position, two monitors racing
— collides on the aggregate's first version instead of storing a duplicate. That is
what makes "every alert exactly once" hold by construction.

Every field is non-personal: staff and customer ids, rule ids, positions, counts and
a summary built by the rule from those. The client address of the staff member who
triggered it is the one personal datum, as it is in every access record's metadata;
like that metadata it sits under the system key so that the record survives erasures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidField
from domain.free_text import card_data_in, hostile_character

ALERT_NAMESPACE = UUID("7d0c9a5e-2f43-4b8e-9c61-0a9e4f3b2d17")
SEVERITIES = ("low", "medium", "high", "critical")
STATUSES = ("open", "acknowledged")
# Responses a rule may ask for (application/monitoring.py applies them).
RESPONSES = ("alert", "webhook", "step_up", "end_sessions", "lock_account")
NOTE_MAX = 1000
SUMMARY_MAX = 300
POSITIONS_MAX = 100


def alert_id(rule_id: str, key: str) -> UUID:
    """The one id the alert of `rule_id` for `key` can have (see the module text)."""
    return uuid5(ALERT_NAMESPACE, f"{rule_id}\x1f{key}")


class Alert(Aggregate):
    """One alert. Create with `Alert.raise_alert(...)`."""

    @classmethod
    def raise_alert(
        cls,
        *,
        rule_id: str,
        key: str,
        severity: str,
        summary: str,
        actor_id: str | None = None,
        client_addr: str | None = None,
        customer_ids: Iterable[str] = (),
        positions: Iterable[int] = (),
        details: Mapping[str, str] | None = None,
        responses: Iterable[str] = ("alert",),
    ) -> Alert:
        """A new alert of `rule_id`; `key` makes it unique (see `alert_id`)."""
        return cls._create(
            cls.Raised,
            id=alert_id(_name(rule_id, "rule_id"), _name(key, "key")),
            rule_id=rule_id,
            severity=_choice(severity, SEVERITIES, "severity"),
            summary=_text(summary, "summary", SUMMARY_MAX),
            actor_id=None if actor_id is None else _name(actor_id, "actor_id"),
            client_addr=None if client_addr is None else _name(client_addr, "client_addr"),
            customer_ids=[_name(c, "customer_ids") for c in customer_ids],
            positions=_positions(positions),
            details={_name(k, "details"): _text(str(v), "details", SUMMARY_MAX) for k, v in (details or {}).items()},
            responses=[_choice(r, RESPONSES, "responses") for r in responses],
            raised_at=_now(),
        )

    class Raised(Aggregate.Created):
        rule_id: str
        severity: str
        summary: str
        actor_id: str | None
        client_addr: str | None
        customer_ids: list[str]
        positions: list[int]
        details: dict[str, str]
        responses: list[str]
        raised_at: str

    @event(Raised)
    def __init__(
        self,
        rule_id: str,
        severity: str,
        summary: str,
        actor_id: str | None,
        client_addr: str | None,
        customer_ids: list[str],
        positions: list[int],
        details: dict[str, str],
        responses: list[str],
        raised_at: str,
    ) -> None:
        self.rule_id = rule_id
        self.severity = severity
        self.summary = summary
        self.actor_id = actor_id
        self.client_addr = client_addr
        self.customer_ids = list(customer_ids)
        self.positions = list(positions)
        self.details = dict(details)
        self.responses = list(responses)
        self.raised_at = raised_at
        self.status = "open"
        self.acknowledged_by: str | None = None
        self.acknowledged_at: str | None = None
        self.note: str | None = None
        self.applied: dict[str, str] = {}

    def acknowledge(self, by: str, note: str) -> None:
        """A security officer has looked at it; the note says what they found or did."""
        if self.status == "acknowledged":
            raise InvalidField("status", "the alert is already acknowledged")
        self._acknowledge(acknowledged_by=_name(by, "acknowledged_by"), note=_text(note, "note", NOTE_MAX),
                          acknowledged_at=_now())

    @event("Acknowledged")
    def _acknowledge(self, acknowledged_by: str, note: str, acknowledged_at: str) -> None:
        self.status = "acknowledged"
        self.acknowledged_by = acknowledged_by
        self.note = note
        self.acknowledged_at = acknowledged_at

    def record_response(self, response: str, outcome: str) -> None:
        """A response the rule asked for was applied (or failed): `outcome` says which."""
        self._record_response(response=_choice(response, RESPONSES, "response"),
                              outcome=_text(outcome, "outcome", SUMMARY_MAX))

    @event("ResponseApplied")
    def _record_response(self, response: str, outcome: str) -> None:
        self.applied = {**self.applied, response: outcome}

    def to_record(self) -> dict[str, object]:
        return {
            "id": str(self.id),
            "rule_id": self.rule_id,
            "severity": self.severity,
            "summary": self.summary,
            "actor_id": self.actor_id,
            "client_addr": self.client_addr,
            "customer_ids": list(self.customer_ids),
            "positions": list(self.positions),
            "details": dict(self.details),
            "responses": list(self.responses),
            "applied": dict(self.applied),
            "raised_at": self.raised_at,
            "status": self.status,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at,
            "note": self.note,
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 200 or hostile_character(value):
        raise InvalidField(field, "must be a name of 1 to 200 characters")
    return value


def _choice(value: object, allowed: tuple[str, ...], field: str) -> str:
    if value not in allowed:
        raise InvalidField(field, f"must be one of {', '.join(allowed)}")
    return str(value)


def _text(value: object, field: str, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise InvalidField(field, f"must be text of 1 to {max_length} characters")
    if hostile_character(value) or card_data_in(value):
        raise InvalidField(field, "must not hold control characters or card data")
    return value


def _positions(values: Iterable[int]) -> list[int]:
    positions = list(values)[-POSITIONS_MAX:]
    if any(not isinstance(p, int) or isinstance(p, bool) or p < 0 for p in positions):
        raise InvalidField("positions", "must be log positions")
    return positions
