"""Access records (R3.2): who saw which customers' data, and who was refused.

An access record is an event like any change, so it lands in the same append-only,
encrypted log and is covered by the same tamper evidence. Who acted (actor,
session, request, address, purpose) travels in the event metadata, stamped by the
infrastructure from the acting context; the record itself names what was touched.
Every field is non-personal (ids, field names, outcomes), so records stay readable
after a customer is erased.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import get_topic

from domain.errors import InvalidField

ACCESS_KINDS = frozenset({
    "view", "search", "list", "reveal", "export", "history", "interactions", "as_of",
    "denied", "not_found", "login", "login_failed", "mfa_failed", "step_up", "logout",
    "break_glass", "session_ended", "audit_read", "approval",
    # R2.9: account activation out of band.
    "activation", "activation_failed", "activation_sent",
    # R5.2: the consent ledger read or written.
    "consents",
})
OUTCOMES = frozenset({"allowed", "denied", "not_found", "failed", "succeeded"})


def _check(kind: str, outcome: str) -> None:
    if kind not in ACCESS_KINDS:
        raise InvalidField("kind", "must be a known access kind")
    if outcome not in OUTCOMES:
        raise InvalidField("outcome", "must be a known outcome")


class AccessRecord(Aggregate):
    """One durable record of data returned (or refused) to one request."""

    class Recorded(Aggregate.Created):
        """Declared, not derived from __init__, so that `recorded` can name it (the
        same name and fields, so the same topic as records stored before)."""

        kind: str
        outcome: str
        customer_ids: list[str]
        fields: list[str]
        details: dict[str, str]

    @event(Recorded)
    def __init__(
        self,
        kind: str,
        outcome: str,
        customer_ids: list[str],
        fields: list[str],
        details: dict[str, str],
    ) -> None:
        _check(kind, outcome)
        self.kind = kind
        self.outcome = outcome
        self.customer_ids = list(customer_ids)
        self.fields = list(fields)
        self.details = dict(details)

    @classmethod
    def recorded(
        cls,
        kind: str,
        outcome: str,
        customer_ids: list[str],
        fields: list[str],
        details: dict[str, str],
    ) -> AccessRecord.Recorded:
        """The one event `AccessRecord(...)` records, made without building the
        aggregate around it: a read's record is only ever stored, never used as an
        object, and building it was a third of the record's cost (15 µs against 5 on
        its own, about 60 µs of a read's time with sixteen threads; issue 15 item 4).
        The same checks; replaying the event builds the same aggregate."""
        _check(kind, outcome)
        # As keywords, because the library makes Recorded's __init__ from its fields
        # at run time, where a type checker cannot see it.
        attributes: dict[str, Any] = {
            "originator_id": cls.create_id(),
            "originator_version": 1,
            "timestamp": cls.Recorded.create_timestamp(),
            "originator_topic": get_topic(cls),  # the library caches topics
            "kind": kind,
            "outcome": outcome,
            "customer_ids": list(customer_ids),
            "fields": list(fields),
            "details": dict(details),
        }
        return cls.Recorded(**attributes)
