"""The alerts read model's port (R3.6): the table `GET /api/v1/alerts` reads, written
in the transaction that saves each alert (infrastructure/alerts_table.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from application.ports.customers import InTransactionHook


@dataclass(frozen=True)
class AlertQuery:
    """Filters over the alert rows; times are UTC ISO-8601 strings as the alerts carry."""

    status: str | None = None
    severity: str | None = None
    rule_id: str | None = None
    actor_id: str | None = None
    since: str | None = None
    until: str | None = None
    # Keyset cursor: rows strictly before (raised_at, id) in newest-first order.
    before: tuple[str, str] | None = None


class AlertRecords(Protocol):
    """Alert rows, one per alert, each its latest state."""

    def in_transaction(self, alerts: Sequence[tuple[Mapping[str, Any], int]]) -> InTransactionHook:
        """A hook writing each (record, version) inside the transaction that saves its events."""

    def query(self, query: AlertQuery, limit: int) -> list[dict[str, Any]]:
        """Records matching `query`, newest first, at most `limit`."""

    def get(self, alert_id: str) -> dict[str, Any] | None:
        """One alert's record, or None."""

    def counts(self) -> list[tuple[str, str, str, int]]:
        """(rule_id, severity, status, count) for every combination present."""


class AlertDeliveries(Protocol):
    """Webhook deliveries of alerts that gave up (infrastructure/webhooks.py)."""

    def dead_letters(self) -> list[dict[str, Any]]:
        """Deliveries that failed every attempt: alert id, target label, attempts, last error."""

    def redeliver(self, alert_id: str) -> int:
        """Queue an alert's dead deliveries again, due now; returns how many are queued."""
