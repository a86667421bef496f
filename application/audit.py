"""The access log (R3.2): every response carrying customer data, and every refusal,
leaves a durable record before the response leaves.

`record()` returns only once the record is committed, and it commits in groups:
reads far outnumber writes, and one transaction (one fsync) per read would cap
reads at the disk's commit rate. Each caller seals its own record (under its own
acting context, in its own thread) and queues it; the first caller to find no
commit in progress becomes the leader, writes everything queued in one
transaction, and wakes exactly the callers it committed, then hands the lead to
the oldest caller still waiting (one wake-up each: waking every waiting thread
after every commit cost each of them the interpreter lock for nothing). While it
writes, newcomers queue up for the next group. An error is raised to every caller
of the failed group, so no caller answers as if its record were safe; a crash
after the commit loses at most responses, never records.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from application.context import require_context
from application.ports import EventStore, InTransactionHook
from domain.audit import AccessRecord

MAX_GROUP = 512  # records per transaction: bounds one commit's size and latency


class _Pending:
    __slots__ = ("stored", "done", "error", "wake")

    def __init__(self, stored: list[Any]) -> None:
        self.stored = stored
        self.done = False
        self.error: BaseException | None = None
        # Set when the record is committed (or failed), or when this caller is to lead.
        self.wake = threading.Event()


def _normalised(kind: str, outcome: str, customer_ids: Iterable[str], fields: Iterable[str],
                details: Mapping[str, str] | None) -> dict[str, Any]:
    return {
        "kind": kind,
        "outcome": outcome,
        "customer_ids": sorted({str(c) for c in customer_ids}),
        "fields": sorted(set(fields)),
        "details": dict(details or {}),
    }


class AccessLog:
    """Durable access records in the event log, stamped with the acting context."""

    def __init__(self, app: EventStore, *, max_group: int = MAX_GROUP) -> None:
        self.app = app
        self.max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._committing = False  # a leader is writing, or has been chosen

    def record(
        self,
        *,
        kind: str,
        outcome: str = "allowed",
        customer_ids: Iterable[str] = (),
        fields: Iterable[str] = (),
        details: Mapping[str, str] | None = None,
        in_transaction: InTransactionHook | None = None,
    ) -> None:
        """Commit one access record; returns once it is durable, raises if it is not.

        `details` must hold no personal data (ids, counts, reasons from a closed
        vocabulary): it is readable after erasure. `in_transaction` writes what the
        record is about (a break-glass grant, an approval) in the record's own
        transaction, so the two commit together or not at all; such a record is
        committed on its own, outside the groups.
        """
        require_context()
        # The record's event alone (AccessRecord.recorded), sealed here, in the
        # caller's thread, because the mapper stamps the acting context it finds:
        # sealing on the leader's thread would put the leader's actor on everybody's record.
        stored = [self.app.mapper.to_stored_event(AccessRecord.recorded(
            **_normalised(kind, outcome, customer_ids, fields, details)))]
        if in_transaction is not None:
            self.app.recorder.insert_events(stored, in_transaction=in_transaction)
            return
        self._commit(_Pending(stored))

    @staticmethod
    def new_record(*, kind: str, outcome: str = "allowed", customer_ids: Iterable[str] = (),
                   fields: Iterable[str] = (), details: Mapping[str, str] | None = None) -> AccessRecord:
        """An access record not yet saved: for a use case that saves it with the action
        it records, in the action's own transaction (one commit, not two; issue 15)."""
        return AccessRecord(**_normalised(kind, outcome, customer_ids, fields, details))

    def _commit(self, pending: _Pending) -> None:
        with self._lock:
            self._queue.append(pending)
            leading = not self._committing
            self._committing = True
        if not leading:
            pending.wake.wait()  # committed by a leader, or handed the lead
        while not pending.done:
            self._lead_one_group()
        if pending.error is not None:
            raise pending.error

    def _lead_one_group(self) -> None:
        """Write everything queued so far (up to max_group) in one transaction, wake
        the callers it holds, and hand the lead to the oldest caller still waiting."""
        with self._lock:
            group = self._queue[: self.max_group]
            del self._queue[: self.max_group]
        error: BaseException | None = None
        try:
            self.app.recorder.insert_events([e for p in group for e in p.stored])
        except BaseException as exc:  # noqa: BLE001 - handed to every caller below
            error = exc
        with self._lock:
            for member in group:
                member.done, member.error = True, error
            successor = self._queue[0] if self._queue else None
            self._committing = successor is not None
        for member in group:
            member.wake.set()
        if successor is not None:
            successor.wake.set()
