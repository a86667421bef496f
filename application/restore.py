"""One customer at a point in time (R4.5): the port it needs from the event store.

Event timestamps are sealed inside the ciphertext, so "as of T" cannot be answered
by decrypting and filtering; the recorders keep a plaintext `recorded_at` per row and
answer which version of a stream existed at T. Reading that version back goes
through the ordinary repository (and its cipher), so a destroyed key still means
"erased", whatever the time asked for (R4.6).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Protocol
from uuid import UUID

from application.errors import ValidationFailed


class TimedLog(Protocol):
    """What the timed recorders answer about time (infrastructure/recorders.py)."""

    def version_at(self, originator_id: UUID | str, when: datetime) -> int | None:
        """The stream's greatest version recorded at or before `when`, if any."""

    def position_at(self, when: datetime) -> int:
        """The greatest log position recorded at or before `when` (0 if none)."""


def as_utc(when: datetime, field: str = "as_of") -> datetime:
    """`when` in UTC; a naive time is refused, because its zone would be a guess
    and an operator reverting "to 12:00" must not land an hour off."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValidationFailed({field: ["must carry a timezone, e.g. 2026-11-29T12:00:00+00:00"]})
    return when.astimezone(timezone.utc)
