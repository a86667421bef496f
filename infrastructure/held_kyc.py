"""Reading the KYC part an AML hold keeps after the profile key is gone (R5.4).

After an erasure under hold, a customer's stream can no longer be replayed whole:
every event's profile part is sealed under a destroyed key. This reader opens only
the system and KYC parts of each stored event (the field catalogue put each field in
one of them, R5.1), supplies `None` for the profile-key fields the event no longer
yields, and replays the events into a `Customer`; the result is then cut down to the
catalogue's KYC and system fields. It reads the event rows, not snapshots: a snapshot
holds the profile fields too, and reading from the start keeps one path.

Nothing here decides who may read: `application/erasure_service.py` asks the policy
(a compliance officer, a stated purpose, recorded) before it calls `read`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.utils import resolve_topic

from domain.catalogue import KeyKind, key_for
from domain.customer import Customer
from infrastructure.crypto.envelope import SubjectMapper

# The record's fields the held view shows: whatever the catalogue does not put under
# the profile key (identity evidence, cards as BIN + last four, accounts, status).
_PROFILE_FIELDS = frozenset({"email", "phone", "interactions", "notes", "preferences"})


def _fields_of(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        names.update(getattr(klass, "__annotations__", {}))
    return names


class HeldKycReader:
    """The KYC and system part of one customer's stream, replayed (R5.4)."""

    def __init__(self, recorder: Any, mapper: SubjectMapper) -> None:
        self.recorder = recorder
        self.mapper = mapper

    def _event(self, stored: Any) -> Any:
        cls = resolve_topic(stored.topic)
        state: dict[str, Any] = {}
        for kind in (KeyKind.SYSTEM, KeyKind.KYC):
            state.update(self.mapper.open_parts(stored, only=kind).get(kind, {}))
        for name in _fields_of(cls) - set(state):
            if key_for(name) is KeyKind.PROFILE:
                state[name] = None  # sealed under the destroyed profile key
        return self.mapper.event_from_state(stored, state)

    def read(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's KYC record (no profile field), or None when the stream is
        not a customer's. Raises SubjectErased when the KYC key is gone too."""
        aggregate: Any = None
        for stored in self.recorder.select_events(UUID(str(customer_id))):
            aggregate = self._event(stored).mutate(aggregate)
        if not isinstance(aggregate, Customer):
            return None
        record = aggregate.to_record()
        return {name: value for name, value in record.items() if name not in _PROFILE_FIELDS}
