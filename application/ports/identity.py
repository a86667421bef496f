"""Staff identity's ports (R2.1-R2.4, R2.8, R2.9): password hashing, sessions, login
challenges, lockout counters, used TOTP steps, the username directory, four-eyes
approvals and break-glass grants. `infrastructure/identity_store.py` implements the
stores in the shared database; `infrastructure/passwords.py` the hasher.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from application.ports.customers import InTransactionHook

# Times cross these ports as aware UTC datetimes; tokens and challenges only as their
# SHA-256 hex digests, so no store ever holds a credential that would open a session.


class PasswordHasher(Protocol):
    """A slow, salted password hash (argon2id in infrastructure/passwords.py)."""

    def hash(self, password: str) -> str:
        """A new hash of `password`."""

    def verify(self, password_hash: str, password: str) -> bool:
        """Whether `password` matches; False (never an exception) for a malformed hash."""


@dataclass(frozen=True)
class SessionRecord:
    """A server-side session (R2.4); the token itself is never stored, only its hash."""

    session_id: str
    staff_id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # the absolute limit
    client_addr: str | None = None
    stepped_up_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None


@dataclass(frozen=True)
class SessionStanding:
    """What one request's authentication reads about its session, in one look at the
    store (issue 15 item 6): the session, whether its account is locked, and the
    portfolios the account's live break-glass grants open, with when each ends."""

    session: SessionRecord
    locked_until: datetime | None
    break_glass: tuple[tuple[str, datetime], ...] = ()
    # The version of the account's event stream as stored now, read in the same look
    # when the store can (the events share its database); None: ask the log.
    account_version: int | None = None


class SessionStore(Protocol):
    """Sessions in the shared database, so any API process serves any session (R7.4)."""

    def session_standing(self, token_hash: str, now: datetime) -> SessionStanding | None:
        """The session whose token hashes to `token_hash` (ended or not), with its
        account's lock if it holds at `now`, its break-glass grants live at `now` and,
        where the store can read it, its account's stream version."""

    def create_session(self, session: SessionRecord, token_hash: str) -> None:
        """Store a new session under the hash of its token."""

    def session(self, session_id: str) -> SessionRecord | None:
        """One session by id, ended or not."""

    def touch_session(self, session_id: str, at: datetime) -> None:
        """Record activity (the idle timeout counts from the last touch)."""

    def step_up_session(self, session_id: str, at: datetime) -> None:
        """Record a fresh second-factor check on this session (R2.7)."""

    def end_session(self, session_id: str, at: datetime, reason: str) -> bool:
        """End a live session; False if it had already ended."""

    def end_sessions_of(self, staff_id: str, at: datetime, reason: str, *, keep: str | None = None) -> int:
        """End every live session of a staff member except `keep`; returns how many."""

    def live_sessions_of(self, staff_id: str) -> list[SessionRecord]:
        """The staff member's sessions not yet ended (expired ones included until swept)."""


@dataclass(frozen=True)
class LoginChallenge:
    """What the password step hands to the second-factor step: single use, short-lived."""

    staff_id: str
    expires_at: datetime
    enrolling: bool


class ChallengeStore(Protocol):
    """Login challenges between the password step and the second factor (R2.2)."""

    def add_challenge(self, challenge_hash: str, challenge: LoginChallenge) -> None:
        """Remember a challenge under its hash."""

    def take_challenge(self, challenge_hash: str) -> LoginChallenge | None:
        """Remove and return the challenge (single use: a second take finds nothing)."""


class LoginThrottle(Protocol):
    """Consecutive authentication failures per account, and the lockout they cause (R2.3)."""

    def locked_until(self, staff_id: str, now: datetime) -> datetime | None:
        """When the account's lock ends, if it is locked at `now`."""

    def record_failure(self, staff_id: str, now: datetime, *, threshold: int, lock_for: timedelta,
                       forget_after: timedelta | None = None) -> int:
        """Count a failure; the `threshold`-th consecutive one locks the account for
        `lock_for`. A lock that has run out, or a previous failure more than
        `forget_after` ago, starts a fresh count. Returns the count."""

    def clear_failures(self, staff_id: str) -> None:
        """A complete login succeeded: the count starts again from zero."""

    def clearing_failures(self, staff_id: str) -> Callable[[Any, Sequence[int]], None]:
        """An in-transaction hook (`Strongroom._save(..., in_transaction=)`) that ends
        the account's lock and count inside the transaction that records why."""


class TotpSteps(Protocol):
    """The last TOTP time-step each account used: a code is accepted once (R2.2)."""

    def claim_totp_step(self, staff_id: str, step: int) -> bool:
        """Record `step` as the account's last used TOTP time-step if it is later than
        the last one; False (a replay) otherwise. Atomic across processes."""


class StaffDirectory(Protocol):
    """Username to staff id: the log holds the accounts, this finds them by name."""

    def reserve_username(self, username: str, staff_id: str, at: datetime) -> bool:
        """Claim `username` for `staff_id`; False if it is taken."""

    def release_username(self, username: str) -> None:
        """Give up a reservation whose account could not be saved."""

    def staff_id_for(self, username: str) -> str | None:
        """The id of the account with this username, if any."""

    def all_staff_ids(self) -> list[str]:
        """Every account's id, in username order."""


@dataclass(frozen=True)
class ApprovalRecord:
    """A change held for a second, different approver (R2.9)."""

    approval_id: str
    kind: str  # "create_staff" or "change_roles"
    requested_by: str
    requested_at: datetime
    subject_staff_id: str | None
    summary: dict[str, Any]  # non-personal: username, roles, portfolios
    payload: dict[str, Any]  # what is executed on approval (sealed at rest)
    status: str = "pending"  # "pending", then "executed", "rejected", "expired" (or "failed")
    decided_by: str | None = None
    decided_at: datetime | None = None


class NoLongerPending(Exception):
    """Raised inside the transaction when a request was decided meanwhile: it rolls back."""


class ApprovalStore(Protocol):
    """Changes held for a second approver, and how each was decided (R2.9)."""

    def add_approval(self, approval: ApprovalRecord) -> None:
        """Store a pending request."""

    def approval_writer(self, approval: ApprovalRecord) -> InTransactionHook:
        """Store a pending request inside the transaction that stores its access record
        (`AccessLog.record(in_transaction=...)`): both commit, or neither (issue 10)."""

    def approval(self, approval_id: str) -> ApprovalRecord | None:
        """One request, any status."""

    def approvals(self, *, status: str | None = "pending") -> list[ApprovalRecord]:
        """Requests, oldest first, with the given status (or all)."""

    def decide_in_transaction(self, approval_id: str, decided_by: str, at: datetime,
                              status: str) -> InTransactionHook:
        """A hook that moves a pending request to `status` inside the transaction that
        saves the decision's audit record (and the change it carries out); it raises
        `NoLongerPending`, rolling all of it back, when another decision came first."""


@dataclass(frozen=True)
class BreakGlassGrant:
    """Emergency access to a portfolio beyond one's scope, for a short time (R2.8)."""

    grant_id: str
    staff_id: str
    session_id: str | None
    portfolio: str
    reason: str
    started_at: datetime
    expires_at: datetime


class BreakGlassStore(Protocol):
    """Break-glass grants, listed for review (R2.8); each authentication reads the
    live ones with its session (`SessionStore.session_standing`)."""

    def grant_writer(self, grant: BreakGlassGrant) -> InTransactionHook:
        """Store a grant inside the transaction that stores its access record
        (`AccessLog.record(in_transaction=...)`): a grant is never live without its
        record, nor a record left for a grant that failed (issue 10). There is no
        other way to store one."""

    def grants(self, *, since: datetime | None = None) -> list[BreakGlassGrant]:
        """Every grant (started since `since`), newest first, for review."""
