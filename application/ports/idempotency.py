"""The idempotency port: what a retried write needs to find its first result (R7.6).

`infrastructure/idempotency_store.py` implements it over the shared database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from application.ports.customers import InTransactionHook


@dataclass(frozen=True)
class IdempotentOutcome:
    """What a write left behind for its retries: never the body or the result's data
    (R1.3), only the request's fingerprint and the ids, version and status."""

    fingerprint: str  # SHA-256 of method, path and canonical body
    status: int
    resource_id: str
    version: int
    item_id: str | None = None  # e.g. the interaction a POST recorded


class IdempotencyStore(Protocol):
    """Outcomes of writes, keyed by (actor id, key), kept until they expire."""

    def find(self, actor_id: str, key: str, now: datetime) -> IdempotentOutcome | None:
        """The outcome stored under this actor's key and unexpired at `now`, or None."""

    def matches(self, outcome: IdempotentOutcome, fingerprint: str) -> bool:
        """Whether a found outcome was stored for a request with this fingerprint (the
        store may keep the fingerprint only as a keyed digest)."""

    def remember(self, actor_id: str, key: str, outcome: IdempotentOutcome,
                 now: datetime, expires_at: datetime) -> InTransactionHook:
        """A hook that stores the outcome inside the write's own transaction, so the
        write and its record commit together or not at all; a second record under the
        same unexpired key makes the transaction fail."""
