"""An AML investigation hold on a customer (R5.4, GDPR Art. 17(3)(b) and (e)).

While a compliance officer has an investigation open on a customer, an erasure keeps
the customer's KYC key (restricted: only a compliance officer reads it, for a stated
purpose) and the retention run leaves it alone, whatever the retention dates say.
Opening and closing are recorded decisions: events in the chained log, naming the
officer (in the event's acting context) and the reason.

The aggregate's id is derived from the customer's random id (R1.5), so there is one
flag per customer and it can be found without an index. Every field is non-personal
and catalogued under the system key: the hold outlives an erasure of the profile.
`reason` is typed by staff and must not hold personal data ("case AML-2026-114",
not the customer's name).
"""

from __future__ import annotations

from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidField
from domain.values import normalise_required_text

INVESTIGATION_NAMESPACE = UUID("3f6a1d2e-8b7c-4e59-a0d1-5c2b9e7f4a63")


def investigation_id(customer_id: str | UUID) -> UUID:
    """The id of a customer's investigation flag (derived from its random id)."""
    return uuid5(INVESTIGATION_NAMESPACE, str(customer_id))


def _reason(value: object) -> str:
    return normalise_required_text(value, "reason", max_length=500)


class InvestigationFlag(Aggregate):
    """One customer's AML investigation flag. Create with `InvestigationFlag.open_for`."""

    @classmethod
    def open_for(cls, customer_id: str | UUID, reason: str) -> InvestigationFlag:
        try:
            canonical = str(UUID(str(customer_id)))
        except ValueError:
            raise InvalidField("customer_id", "must be a UUID") from None
        return cls._create(cls.Opened, id=investigation_id(canonical), customer_id=canonical,
                           reason=_reason(reason))

    class Opened(Aggregate.Created):
        customer_id: str
        reason: str

    @event(Opened)
    def __init__(self, customer_id: str, reason: str) -> None:
        self.customer_id = customer_id
        self.under_investigation = True

    def reopen(self, reason: str) -> None:
        self._reopen(reason=_reason(reason))

    @event("Reopened")
    def _reopen(self, reason: str) -> None:
        if self.under_investigation:
            raise InvalidField("under_investigation", "an investigation is already open")
        self.under_investigation = True

    def close(self, reason: str) -> None:
        self._close(reason=_reason(reason))

    @event("Closed")
    def _close(self, reason: str) -> None:
        if not self.under_investigation:
            raise InvalidField("under_investigation", "no investigation is open")
        self.under_investigation = False

    def to_record(self) -> dict[str, object]:
        return {"customer_id": self.customer_id, "under_investigation": self.under_investigation,
                "version": self.version, "modified_on": self.modified_on.isoformat()}
