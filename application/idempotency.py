"""Retried writes that do not duplicate (R7.6).

A client whose connection dropped cannot tell whether its write committed. It sends
the write again with the same `Idempotency-Key`; `IdempotentWrites.run` looks the key
up first and, when the first attempt committed, answers from its stored outcome
instead of writing again. The outcome is stored by a hook inside the write's own
transaction (`Strongroom._save` attaches it), so a crash can never leave a write
without its record or a record without its write. Two attempts racing each other
collide on the record's key: the loser's transaction rolls back whole, and it answers
from the winner's outcome.

Keys belong to the actor who sent them (one member of staff cannot replay another's);
an outcome lives 24 hours; the same key with another request is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from application.clock import Clock, utc_now
from application.errors import ValidationFailed
from application.ports import IdempotencyStore, IdempotentOutcome

KEEP_FOR = timedelta(hours=24)
MAX_KEY_LENGTH = 255

T = TypeVar("T")


class IdempotencyKeyReused(ValidationFailed):
    """The key already stands for a different request: 422 `idempotency_key_reused`."""

    def __init__(self) -> None:
        super().__init__({"Idempotency-Key": ["was already used for a different request"]})


def fingerprint(*parts: Any) -> str:
    """SHA-256 of the parts as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> str:
    """A key of 1 to 255 visible ASCII characters, or 422."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all("!" <= ch <= "~" for ch in key):
        raise ValidationFailed({"Idempotency-Key": [f"must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"]})
    return key


@dataclass
class PendingWrite:
    """The write now running under a key; `Strongroom._save` stores its outcome."""

    store: IdempotencyStore
    actor_id: str
    key: str
    fingerprint: str
    status: int
    started_at: datetime
    saved: bool = field(default=False)


_pending: ContextVar[PendingWrite | None] = ContextVar("strongroom_idempotent_write", default=None)


def pending_write() -> PendingWrite | None:
    """The keyed write in progress whose outcome is not yet stored, if any."""
    pending = _pending.get()
    return None if pending is None or pending.saved else pending


@contextmanager
def _running(pending: PendingWrite) -> Iterator[None]:
    token = _pending.set(pending)
    try:
        yield
    finally:
        _pending.reset(token)


class IdempotentWrites:
    """Runs a write once per (actor, key); later runs answer from the first outcome."""

    def __init__(self, store: IdempotencyStore, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock

    def _first(self, actor_id: str, key: str, request: str) -> IdempotentOutcome | None:
        found = self.store.find(actor_id, key, self.clock())
        if found is not None and not self.store.matches(found, request):
            raise IdempotencyKeyReused()
        return found

    def run(self, actor_id: str, key: str, request: str, status: int,
            perform: Callable[[], T], replay: Callable[[IdempotentOutcome], T]) -> T:
        """`perform()` once for this actor's key; `replay(outcome)` for every retry.

        `request` is the request's fingerprint: the same key with another request
        raises IdempotencyKeyReused. A write that failed stored nothing, so its retry
        runs again.
        """
        found = self._first(actor_id, key, request)
        if found is not None:
            return replay(found)
        pending = PendingWrite(self.store, actor_id, key, request, status, self.clock())
        with _running(pending):
            try:
                return perform()
            except Exception:
                if pending.saved:
                    raise  # our own write committed; what failed came after it
                # Another attempt under the same key may have committed first, and
                # ours rolled back on meeting its record: answer from that one.
                found = self._first(actor_id, key, request)
                if found is None:
                    raise
        return replay(found)
