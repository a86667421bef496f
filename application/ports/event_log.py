"""The event log's ports: what use cases read from the recorder and the mapper
beyond the library's own repository (R3.2, R3.5, R4.5).

The recorders in `infrastructure/` keep a plaintext `recorded_at` per row and
answer questions about time; the encrypting mapper in
`infrastructure/crypto/envelope.py` seals events and keeps each event's acting
context readable after its subject's keys are destroyed. `application/` sees them
only through these Protocols, never the mapper's key kinds or stored layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID


class SealedEvent(Protocol):
    """A stored event as the log holds it: clear bookkeeping, sealed state."""

    @property
    def originator_id(self) -> Any: ...

    @property
    def originator_version(self) -> int: ...

    @property
    def topic(self) -> str: ...

    @property
    def state(self) -> bytes: ...


class TimedNotification(SealedEvent, Protocol):
    """A stored event with its log position and the time the database recorded it."""

    @property
    def id(self) -> int: ...

    @property
    def recorded_at(self) -> datetime: ...


class TimedLog(Protocol):
    """What the timed recorders answer about positions and time."""

    def version_at(self, originator_id: UUID | str, when: datetime) -> int | None:
        """The stream's greatest version recorded at or before `when`, if any."""

    def position_at(self, when: datetime) -> int:
        """The greatest log position recorded at or before `when` (0 if none)."""

    def max_notification_id(self) -> int | None:
        """The log's last position (None when it is empty)."""

    def select_timed_notifications(
        self, start: int, limit: int, stop: int | None = None
    ) -> Sequence[TimedNotification]:
        """Up to `limit` rows from position `start` (to `stop`), in order, with their times."""


class EventMetadata(Protocol):
    """What stays readable about a sealed event whatever keys were destroyed: its
    acting context (who, session, request, address, purpose) and the attributes the
    field catalogue seals under the system key (R3.1, R3.5)."""

    def metadata(self, stored: SealedEvent) -> dict[str, Any]:
        """The acting context the event was written under."""

    def system_attributes(self, stored: SealedEvent) -> dict[str, Any]:
        """The event's attributes sealed under the system key (never destroyed),
        without the acting context."""


class OpenedEvent(Protocol):
    """A sealed event opened once: its acting context and its attributes (only the
    system part's when a personal key was destroyed: `erased`)."""

    @property
    def meta(self) -> dict[str, Any]: ...

    @property
    def attributes(self) -> dict[str, Any]: ...

    @property
    def erased(self) -> bool: ...


class EventOpener(EventMetadata, Protocol):
    """The encrypting mapper as a reader: whole events, or what survives erasure."""

    def to_domain_event(self, stored: Any) -> Any:
        """The event decrypted; raises SubjectErased when a key it needs is destroyed."""

    def open_event(self, stored: SealedEvent) -> OpenedEvent:
        """Acting context and attributes together, each sealed part decrypted once
        (the audit trail and the monitor read every row: one opening, not two)."""


class EventSealer(Protocol):
    """The encrypting mapper as a writer."""

    def to_stored_event(self, domain_event: Any) -> Any:
        """The event sealed under its subject's keys, stamped with the acting context."""


class EventAppender(Protocol):
    """The recorder as a writer of already-sealed events."""

    def insert_events(self, stored_events: Sequence[Any], **kwargs: Any) -> Sequence[int] | None:
        """Append the events in one transaction; returns their positions."""


class EventStore(Protocol):
    """A mapper and a recorder: what appends events outside an aggregate's unit of work."""

    @property
    def mapper(self) -> EventSealer: ...

    @property
    def recorder(self) -> EventAppender: ...
