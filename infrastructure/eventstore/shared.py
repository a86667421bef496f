"""What the SQLite and PostgreSQL recorders share: the hooks around an insert, the
stamped notification, and the `recorded_at` time rules.

Two hooks run around every insert, on either store:

- inside the transaction, before it commits: the caller's `in_transaction` hook
  (`Application.save(..., in_transaction=hook)` passes it down as a keyword), called
  as `hook(cursor, notification_ids)`. The inline projection writes its read-model
  rows and tracking position through that cursor, so the events and the read model
  commit together or not at all, and a caller reads its own write at once (R1.3).
- after the commit: the `commit_listeners`, told the positions of the committed rows
  (the checkpointer uses them). A listener cannot undo the write, so its failure is
  logged and the save still succeeds.

The hook is a keyword argument of the library's public `insert_events(**kwargs)`,
the same channel the library uses for `tracking`, so no library signature changes.

Time: payloads are encrypted, so the database cannot read an event's own timestamp;
each row gets a plaintext `recorded_at` instead, and `position_at(T)` maps a time to
a log position without decrypting anything (point-in-time restore, R4.4). Both
stores answer it from an index on `recorded_at`, one probe, rather than a binary
search over ids (about 30 queries for a billion rows, each a round trip on
PostgreSQL); the index is small (16 bytes a row) next to encrypted payloads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from application.ports import InTransactionHook

__all__ = [
    "APPEND_ONLY_MESSAGE",
    "HOOK",
    "MAX_POSITION",
    "CommitListener",
    "InsertHooks",
    "PARTITION_BITS",
    "PartitionPage",
    "StampedNotification",
    "as_utc",
    "partition_of",
]

# The keyword `Strongroom._save` passes to `save()`, and so to `insert_events()`.
HOOK = "in_transaction"
# What the append-only triggers of both stores say when they refuse a change (R3.4).
APPEND_ONLY_MESSAGE = "strongroom: event rows are append-only"
# The greatest notification id either store can hand out (a signed 64-bit integer).
MAX_POSITION = 2**63 - 1

CommitListener = Callable[[Sequence[int]], None]

# A parallel rebuild (issue 15) splits the log by stream: a stream's partition is the
# low PARTITION_BITS bits of its UUID (the last four hex digits, random in a UUID4)
# modulo the number of partitions. Both stores compute the same from the stored id in
# SQL, so a worker is sent only its own rows; 65,536 values keep P partitions even.
PARTITION_BITS = 16
_PARTITION_MASK = (1 << PARTITION_BITS) - 1


@dataclass(frozen=True)
class PartitionPage:
    """A page of the log (the next `size` notifications, up to position `last`; `last`
    None when there are none) and, of them, the rows one partition reads."""

    last: int | None
    size: int
    notifications: list[Notification]


def partition_of(stream_id: str | UUID, partitions: int) -> int:
    """A stable partition for a stream id: the same on every run, process, machine and store."""
    value = stream_id if isinstance(stream_id, UUID) else UUID(str(stream_id))
    return (value.int & _PARTITION_MASK) % partitions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StampedNotification(Notification):
    """A notification with the (timezone-aware, UTC) time its row was recorded.

    The concrete notification behind application/'s `TimedNotification` port.
    """

    recorded_at: datetime


class InsertHooks:
    """The in-transaction hook and the commit listeners, for either store's recorder."""

    @property
    def commit_listeners(self) -> list[CommitListener]:
        listeners: list[CommitListener] | None = self.__dict__.get("_commit_listeners")
        if listeners is None:
            listeners = self.__dict__["_commit_listeners"] = []
        return listeners

    @staticmethod
    def _run_hook(cursor: Any, ids: Sequence[int] | None, kwargs: Mapping[str, Any]) -> None:
        """Call the caller's hook, if any, inside the inserting transaction."""
        hook: InTransactionHook | None = kwargs.get(HOOK)
        if hook is not None and ids:
            hook(cursor, ids)

    def _committed(self, ids: Sequence[int] | None) -> None:
        if not ids:
            return
        for listener in list(self.commit_listeners):
            try:
                listener(ids)
            except Exception as exc:  # noqa: BLE001 - the write has committed
                # By type only: an exception's message could carry values.
                log.error("commit listener failed: %s", type(exc).__name__)


def as_utc(when: datetime) -> datetime:
    """`when` in UTC; a naive time is refused because its zone would be a guess."""
    if when.tzinfo is None or when.utcoffset() is None:
        msg = f"expected a timezone-aware datetime, got naive {when.isoformat()}"
        raise ValueError(msg)
    return when.astimezone(timezone.utc)
