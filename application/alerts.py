"""Alerts for people (R3.6): listing them, reading one, acknowledging with a note.

The monitor raises alerts as `domain.alerts.Alert` aggregates; this is the side that
security officers (API) and the operator (command line) use. Listing and reading
come from the alerts table (written with each alert's events); acknowledging is an
event on the alert itself, so who acknowledged it, when and why is in the chained
log like everything else (R3.1, R6.1).

Who may: `alerts:read` lists and reads (security and compliance officers);
`alerts:acknowledge` acknowledges (security officers only: an alert is closed by
those who respond to it, not by those who review afterwards). Every listing and
read is recorded as an access record, and every refusal too (the policy's), so
someone watching the watchers shows up in the trail.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.context import require_context
from application.customers import Strongroom
from application.errors import ApplicationError, ValidationFailed, VersionConflict
from application.policy import OPERATOR_ROLE, Policy
from application.ports import AlertDeliveries, AlertQuery, AlertRecords
from application.security import Actor, Permission
from domain.alerts import SEVERITIES, STATUSES, Alert
from domain.errors import InvalidField

MAX_LIMIT = 200
RULE_ID_MAX = 200


class AlertNotFound(ApplicationError):
    """No alert has this id (404)."""

    def __init__(self, alert_id: object) -> None:
        super().__init__(f"alert {alert_id} not found" if _is_uuid(alert_id) else "alert not found")


class AlertAlreadyAcknowledged(ApplicationError):
    """A second acknowledgement (409): the first one's note stands; nothing is overwritten."""

    def __init__(self, alert_id: object) -> None:
        super().__init__(f"alert {alert_id} is already acknowledged")


@dataclass(frozen=True)
class AlertFilter:
    status: str | None = None
    severity: str | None = None
    rule_id: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.status is not None and self.status not in STATUSES:
            errors["status"] = [f"must be one of {', '.join(STATUSES)}"]
        if self.severity is not None and self.severity not in SEVERITIES:
            errors["severity"] = [f"must be one of {', '.join(SEVERITIES)}"]
        for name in ("rule_id", "actor"):
            value = getattr(self, name)
            if value is not None and not (0 < len(value) <= RULE_ID_MAX and value.isprintable()):
                errors[name] = [f"must be 1 to {RULE_ID_MAX} printable characters"]
        for name in ("since", "until"):
            when = getattr(self, name)
            if when is not None and when.tzinfo is None:
                errors[name] = ["must be an ISO-8601 time with a zone, e.g. 2026-11-29T12:00:00+00:00"]
        if not errors and self.since and self.until and self.since > self.until:
            errors["since"] = ["must not be after until"]
        if errors:
            raise ValidationFailed(errors)

    def details(self) -> dict[str, str]:
        """The filters as an access record's details (ids and vocabulary, no personal data)."""
        return {k: str(v) for k, v in (("status", self.status), ("severity", self.severity),
                                         ("rule_id", self.rule_id), ("actor", self.actor)) if v}


@dataclass(frozen=True)
class AlertPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


def _is_uuid(value: object) -> bool:
    try:
        UUID(str(value))
    except ValueError:
        return False
    return True


def _stamp(when: datetime | None) -> str | None:
    # The alerts' own format (domain/alerts.py `_now`), so the strings compare in time order.
    return None if when is None else when.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _cursor(record: dict[str, Any]) -> str:
    raw = json.dumps([record["raised_at"], record["id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str | None) -> tuple[str, str] | None:
    if cursor is None:
        return None
    try:
        if len(cursor) > 200:
            raise ValueError(cursor)
        raised_at, alert_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raised_at, str) or not _is_uuid(alert_id):
            raise ValueError(cursor)
        return raised_at, str(alert_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed({"cursor": ["is not a cursor this API gave out"]}) from None


class AlertDesk:
    """The alerts use cases; see the module docstring."""

    def __init__(self, app: Strongroom, records: AlertRecords, policy: Policy,
                 *, deliveries: AlertDeliveries | None = None) -> None:
        self.app = app
        self.records = records
        self.policy = policy
        self.deliveries = deliveries

    # -- who may ---------------------------------------------------------------------------

    def _require(self, actor: Actor, permission: Permission, operation: str) -> None:
        if OPERATOR_ROLE in actor.roles:
            # The command line's operator holds the instance's keys and reads the
            # table anyway; each of their reads and acknowledgements is recorded as
            # theirs (issue 11, item 5).
            return
        self.policy.require(actor, permission, operation=operation)

    # -- reading ---------------------------------------------------------------------------

    def list_alerts(self, actor: Actor, filters: AlertFilter, *, limit: int = 50,
                    cursor: str | None = None) -> AlertPage:
        """A page of alerts, newest first; the listing is recorded (R3.2)."""
        self._require(actor, Permission.ALERTS_READ, "alerts:list")
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationFailed({"limit": [f"must be between 1 and {MAX_LIMIT}"]})
        query = AlertQuery(
            status=filters.status, severity=filters.severity, rule_id=filters.rule_id,
            actor_id=filters.actor, since=_stamp(filters.since), until=_stamp(filters.until),
            before=_after(cursor),
        )
        found = self.records.query(query, limit + 1)
        items = found[:limit]
        self.app.access_log.record(
            kind="audit_read", customer_ids=sorted({str(c) for a in items for c in a.get("customer_ids", [])}),
            details={"operation": "alerts:list", "returned": str(len(items)), **filters.details()},
        )
        return AlertPage(items, _cursor(items[-1]) if len(found) > limit else None)

    def get_alert(self, actor: Actor, alert_id: str) -> dict[str, Any]:
        """One alert (404 when there is none); the read is recorded."""
        self._require(actor, Permission.ALERTS_READ, "alerts:get")
        record = self.records.get(str(alert_id)) if _is_uuid(alert_id) else None
        if record is None:
            raise AlertNotFound(alert_id)
        self.app.access_log.record(
            kind="audit_read", customer_ids=[str(c) for c in record.get("customer_ids", [])],
            details={"operation": "alerts:get", "alert_id": str(record["id"])},
        )
        return record

    # -- acknowledging ----------------------------------------------------------------------

    def acknowledge(self, actor: Actor, alert_id: str, note: str) -> dict[str, Any]:
        """Mark the alert acknowledged by the actor with `note`: an event on the alert
        (R3.1). A second acknowledgement is refused (409), the first note kept."""
        self._require(actor, Permission.ALERTS_ACKNOWLEDGE, "alerts:acknowledge")
        context = require_context()
        if not _is_uuid(alert_id):
            raise AlertNotFound(alert_id)
        for _ in range(5):
            alert = self._alert(alert_id)
            if alert.status == "acknowledged":
                raise AlertAlreadyAcknowledged(alert_id)
            try:
                alert.acknowledge(context.actor_id, note)
            except InvalidField as exc:
                raise ValidationFailed({"note" if exc.field == "note" else exc.field or "_schema": [exc.rule]}) from None
            try:
                self.app._save(alert)
            except VersionConflict:
                continue  # a response was recorded meanwhile: look again
            return alert.to_record()
        raise AlertAlreadyAcknowledged(alert_id)

    # -- webhook deliveries that gave up ------------------------------------------------------

    def dead_letters(self, actor: Actor) -> list[dict[str, Any]]:
        """Webhook deliveries that failed every attempt; the listing is recorded."""
        self._require(actor, Permission.ALERTS_ACKNOWLEDGE, "alerts:dead_letters")
        found = [] if self.deliveries is None else self.deliveries.dead_letters()
        self.app.access_log.record(kind="audit_read", details={"operation": "alerts:dead_letters",
                                                               "returned": str(len(found))})
        return found

    def redeliver(self, actor: Actor, alert_id: str) -> int:
        """Queue an alert's dead webhook deliveries again; the request is an event on the
        alert (`ResponseApplied`, webhook), so the trail shows who sent it again."""
        self._require(actor, Permission.ALERTS_ACKNOWLEDGE, "alerts:redeliver")
        require_context()
        if not _is_uuid(alert_id):
            raise AlertNotFound(alert_id)

        self._alert(alert_id)  # 404 for an alert that does not exist
        queued = 0 if self.deliveries is None else self.deliveries.redeliver(str(alert_id))

        def record() -> None:
            alert = self._alert(alert_id)
            alert.record_response("webhook", "redelivery requested")
            self.app._save(alert)

        if queued:
            self.app._unconditionally(record)
        return queued

    def record_webhook_outcome(self, alert_id: str, outcome: str) -> None:
        """The webhook dispatcher's report (delivered, or dead-lettered): an event on
        the alert, so the trail shows the response applied (R3.6)."""
        require_context()

        def record() -> None:
            alert = self._alert(alert_id)
            alert.record_response("webhook", outcome)
            self.app._save(alert)

        self.app._unconditionally(record)

    def _alert(self, alert_id: str) -> Alert:
        try:
            alert: Any = self.app.repository.get(UUID(str(alert_id)))
        except AggregateNotFoundError:
            raise AlertNotFound(alert_id) from None
        if not isinstance(alert, Alert):
            raise AlertNotFound(alert_id)
        return alert

