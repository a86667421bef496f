"""Access records (R3.2): who saw which customers' data, and who was refused.

An access record is an event like any change, so it lands in the same append-only,
encrypted log and is covered by the same tamper evidence. Who acted (actor,
session, request, address, purpose) travels in the event metadata, stamped by the
infrastructure from the acting context; the record itself names what was touched.
Every field is non-personal (ids, field names, outcomes), so records stay readable
after a customer is erased.
"""

from __future__ import annotations

from eventsourcing.domain import Aggregate, event

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


class AccessRecord(Aggregate):
    """One durable record of data returned (or refused) to one request."""

    @event("Recorded")
    def __init__(
        self,
        kind: str,
        outcome: str,
        customer_ids: list[str],
        fields: list[str],
        details: dict[str, str],
    ) -> None:
        if kind not in ACCESS_KINDS:
            raise InvalidField("kind", "must be a known access kind")
        if outcome not in OUTCOMES:
            raise InvalidField("outcome", "must be a known outcome")
        self.kind = kind
        self.outcome = outcome
        self.customer_ids = list(customer_ids)
        self.fields = list(fields)
        self.details = dict(details)
