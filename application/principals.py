"""The authenticated principal, cached per staff member and checked against the log
on every request (R2.4, R2.10; issue 15 item 6).

Resolving a bearer token used to replay the staff member from the encrypted log on
every request: read every event of the account, unwrap its key, decrypt and apply
each one. The part of that replay that authorisation uses (username, roles,
portfolios, whether the account is active, whether the password must change) is
kept here, keyed by staff id, together with the version of the account's stream it
was read at.

Every request still asks the store for the stream's current version (one indexed
row, nothing decrypted; on both stores read in the same statement as the session),
and the cached principal is used only when the version is the same. Every change
that affects authorisation is an event on the account (a role granted or revoked,
portfolios changed, the account disabled or enabled, the password changed, the
second factor reset), so it moves the version, and the next
request, in this process or any other one on the same store (several gunicorn
workers, several hosts on one PostgreSQL), replays the account again. A cache that
trusted a time-to-live instead would let a revoked role act until it lapsed: the
attack this stops.

What is not cached at all, and so needs no invalidation: the session (looked up by
its token digest on each request: logout, ending a session, idle and absolute
timeouts), the lockout (the throttle's row), break-glass grants. Training records
(R6.4) are events on the same stream, so the last completion is cached with the rest
and a renewal moves the version; a lapse is a matter of the clock, which the policy
reads at each decision.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.staff import StaffMember

DEFAULT_MAXSIZE = 4096


@dataclass(frozen=True)
class Principal:
    """What authentication needs from a staff account, as of one stream version."""

    staff_id: str
    version: int
    username: str
    roles: frozenset[str]
    portfolios: frozenset[str]
    active: bool
    must_change_password: bool
    # The last security training completed (R6.4): a TrainingCompleted event moves the
    # stream's version, so a renewal or a new record is seen on the next request.
    trained_at: datetime | None = None

    @classmethod
    def of(cls, member: StaffMember) -> Principal:
        return cls(
            staff_id=str(member.id), version=int(member.version), username=member.username,
            roles=frozenset(member.roles), portfolios=frozenset(member.portfolios),
            active=member.status == "active", must_change_password=bool(member.must_change_password),
            trained_at=member.last_trained_at(),
        )


class PrincipalCache:
    """Principals by staff id, each valid only at the stream version it was read at.

    `recorder` is the application's event recorder (only `select_events` is used: the
    newest stored event of the stream, still sealed); `load` replays the account, or
    returns None when there is none.
    """

    def __init__(self, recorder: Any, load: Callable[[str], StaffMember | None], *,
                 maxsize: int = DEFAULT_MAXSIZE) -> None:
        self._recorder = recorder
        self._load = load
        self._maxsize = maxsize
        self._principals: dict[str, Principal] = {}
        self._lock = threading.Lock()
        self.replays = 0  # how many requests had to replay the account (tests, profiling)

    def current_version(self, staff_id: str) -> int | None:
        """The stream's version in the store now, or None if it has no events."""
        try:
            originator = UUID(str(staff_id))
        except ValueError:
            return None
        newest = self._recorder.select_events(originator, desc=True, limit=1)
        return int(newest[0].originator_version) if newest else None

    def get(self, staff_id: str, *, version: int | None = None) -> Principal | None:
        """The principal as of the stream's current version; None if there is no account.

        `version` is that version when the caller has just read it from the store
        (with the session, in one statement); otherwise the store is asked here."""
        if version is None:
            version = self.current_version(staff_id)
        if version is None:
            self.forget(staff_id)
            return None
        cached = self._principals.get(staff_id)
        if cached is not None and cached.version == version:
            return cached
        member = self._load(staff_id)
        self.replays += 1
        if member is None:
            self.forget(staff_id)
            return None
        # The replay may have read events appended after the version check: it is
        # then newer, and kept at its own version, never at the older one.
        principal = Principal.of(member)
        with self._lock:
            if len(self._principals) >= self._maxsize and staff_id not in self._principals:
                self._principals.pop(next(iter(self._principals)))
            self._principals[staff_id] = principal
        return principal

    def forget(self, staff_id: str) -> None:
        with self._lock:
            self._principals.pop(staff_id, None)
