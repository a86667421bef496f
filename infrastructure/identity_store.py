"""Staff identity state that is not an event: sessions, challenges, lockout counters,
used TOTP steps, pending approvals and break-glass grants (R2.2-R2.4, R2.8, R2.9).

These live in plain tables beside the read models, in the shared database, so that
any API process serves any session (R7.4). Nothing here opens a session by itself:
tokens and challenges are kept only as SHA-256 digests, and the few values that are
personal (a session's client address, a pending account's display name, a
break-glass reason) are sealed with AES-256-GCM under a data key, like read-model
columns. Times are stored as UTC epoch seconds, so both dialects compare them as
numbers.

All statements are parameterised; table and column names are module constants.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from application.ports import (
    ActivationCodeSpent,
    ActivationRecord,
    ApprovalRecord,
    BreakGlassGrant,
    InTransactionHook,
    LoginChallenge,
    NoLongerPending,
    SessionRecord,
    SessionStanding,
)
from infrastructure.crypto.keyring import SYSTEM_SUBJECT, KeyRing
from infrastructure.readmodel import ColumnSealer
from infrastructure.sql import Cursor, Database, adapt_cursor, lock_schema_changes

COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")

_BLOB = {"sqlite": "BLOB", "postgres": "BYTEA"}
_TIME = {"sqlite": "REAL", "postgres": "DOUBLE PRECISION"}
_BIGINT = {"sqlite": "INTEGER", "postgres": "BIGINT"}
# A lock set by the monitor lasts until a security officer ends it (ten years stand for that).
MONITOR_LOCK = timedelta(days=3650)


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), UTC)


def _req_dt(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


def create_identity_tables(cur: Cursor, dialect: str) -> None:
    lock_schema_changes(cur, dialect)
    blob, time, bigint = _BLOB[dialect], _TIME[dialect], _BIGINT[dialect]
    cur.execute(
        "CREATE TABLE IF NOT EXISTS auth_staff_directory (username TEXT PRIMARY KEY,"
        f" staff_id TEXT NOT NULL UNIQUE, created_at {time} NOT NULL)"
    )
    cur.execute(
        "CREATE TABLE IF NOT EXISTS auth_sessions (session_id TEXT PRIMARY KEY,"
        " token_hash TEXT NOT NULL UNIQUE, staff_id TEXT NOT NULL,"
        f" created_at {time} NOT NULL, last_seen_at {time} NOT NULL, expires_at {time} NOT NULL,"
        f" stepped_up_at {time}, ended_at {time}, end_reason TEXT, client_addr {blob})"
    )
    cur.execute("CREATE INDEX IF NOT EXISTS auth_sessions_staff ON auth_sessions (staff_id, ended_at)")
    cur.execute(
        "CREATE TABLE IF NOT EXISTS auth_challenges (challenge_hash TEXT PRIMARY KEY,"
        f" staff_id TEXT NOT NULL, expires_at {time} NOT NULL, enrolling INTEGER NOT NULL)"
    )
    cur.execute(
        "CREATE TABLE IF NOT EXISTS auth_login_failures (staff_id TEXT PRIMARY KEY,"
        f" failures INTEGER NOT NULL, locked_until {time}, last_failure_at {time} NOT NULL)"
    )
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS auth_totp_steps (staff_id TEXT PRIMARY KEY, last_step {bigint} NOT NULL)"
    )
    cur.execute(
        "CREATE TABLE IF NOT EXISTS auth_approvals (approval_id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
        f" requested_by TEXT NOT NULL, requested_at {time} NOT NULL, subject_staff_id TEXT,"
        f" summary TEXT NOT NULL, payload {blob} NOT NULL, status TEXT NOT NULL,"
        f" decided_by TEXT, decided_at {time})"
    )
    cur.execute("CREATE INDEX IF NOT EXISTS auth_approvals_status ON auth_approvals (status, requested_at)")
    cur.execute(
        "CREATE TABLE IF NOT EXISTS auth_break_glass (grant_id TEXT PRIMARY KEY, staff_id TEXT NOT NULL,"
        f" session_id TEXT, portfolio TEXT NOT NULL, reason {blob} NOT NULL,"
        f" started_at {time} NOT NULL, expires_at {time} NOT NULL)"
    )
    cur.execute("CREATE INDEX IF NOT EXISTS auth_break_glass_staff ON auth_break_glass (staff_id, expires_at)")
    # R2.9: one live activation code per account, kept only as its keyed hash.
    cur.execute(
        "CREATE TABLE IF NOT EXISTS auth_activations (staff_id TEXT PRIMARY KEY, code_hash TEXT NOT NULL,"
        f" expires_at {time} NOT NULL, used_at {time})"
    )


_SESSION_FIELDS = ("session_id", "staff_id", "created_at", "last_seen_at", "expires_at", "client_addr",
                   "stepped_up_at", "ended_at", "end_reason")
_SESSION_COLUMNS = ", ".join(_SESSION_FIELDS)
# An events table's name, as the recorder has it (letters, digits, underscores).
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A staff member's stream, as the events table keys it: PostgreSQL stores the id as a
# uuid, SQLite as its 32 hex digits. A staff id that is not a UUID (none is made so)
# finds no stream rather than failing the statement.
_STAFF_STREAM = {
    "postgres": "CASE WHEN s.staff_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"
                " THEN CAST(s.staff_id AS uuid) END",
    "sqlite": "replace(s.staff_id, '-', '')",
}
# A session with its account's lock and live grants (`session_standing`).
_STANDING_COLUMNS = ", ".join([*(f"s.{name}" for name in _SESSION_FIELDS),
                               "f.locked_until", "g.portfolio", "g.expires_at"])
_APPROVAL_COLUMNS = (
    "approval_id, kind, requested_by, requested_at, subject_staff_id, summary, payload,"
    " status, decided_by, decided_at"
)
_GRANT_COLUMNS = "grant_id, staff_id, session_id, portfolio, reason, started_at, expires_at"


class IdentityStore:
    """Implements the identity ports (application/ports.py) over one `Database`."""

    def __init__(self, db: Database, keyring: KeyRing, *, events_table: str | None = None) -> None:
        self.db = db
        self.sealer = ColumnSealer(keyring)
        # The events table, when it is in this same database: each authentication then
        # reads the account's stream version with its session (`session_standing`).
        if events_table is not None and not _IDENTIFIER.fullmatch(events_table):
            raise ValueError("events_table must be a plain SQL identifier")
        self._version_column = "NULL" if events_table is None else (
            # The name is checked against _IDENTIFIER above; no value ever enters the text.
            f'(SELECT e.originator_version FROM "{events_table}" e'  # nosec B608
            f" WHERE e.originator_id = {_STAFF_STREAM[db.dialect]}"
            " ORDER BY e.originator_version DESC LIMIT 1)"
        )

    def create_tables(self) -> None:
        with self.db.transaction() as cur:
            create_identity_tables(cur, self.db.dialect)

    # -- staff directory --------------------------------------------------------------------

    def reserve_username(self, username: str, staff_id: str, at: datetime) -> bool:
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO auth_staff_directory (username, staff_id, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (username) DO NOTHING RETURNING staff_id",
                (username, staff_id, _ts(at)),
            )
            return cur.fetchone() is not None

    def release_username(self, username: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM auth_staff_directory WHERE username = ?", (username,))

    def staff_id_for(self, username: str) -> str | None:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT staff_id FROM auth_staff_directory WHERE username = ?", (username,))
            row = cur.fetchone()
        return None if row is None else str(row[0])

    def all_staff_ids(self) -> list[str]:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT staff_id FROM auth_staff_directory ORDER BY username")
            return [str(row[0]) for row in cur.fetchall()]

    # -- sessions ---------------------------------------------------------------------------

    def _seal_addr(self, session: SessionRecord) -> bytes | None:
        # A staff member's address is their personal data: sealed under their own key.
        return self.sealer.seal(
            "auth_sessions", "client_addr", session.staff_id, session.session_id,
            session.client_addr, field="display_name",
        )

    def _session(self, row: Sequence[Any] | None) -> SessionRecord | None:
        if row is None:
            return None
        session_id, staff_id = str(row[0]), str(row[1])
        try:
            addr = self.sealer.open(
                "auth_sessions", "client_addr", staff_id, session_id, row[5], field="display_name"
            )
        except Exception:  # noqa: BLE001 - an erased or unreadable address is just unknown
            addr = None
        return SessionRecord(
            session_id=session_id, staff_id=staff_id, created_at=_req_dt(row[2]),
            last_seen_at=_req_dt(row[3]), expires_at=_req_dt(row[4]), client_addr=addr,
            stepped_up_at=_dt(row[6]), ended_at=_dt(row[7]), end_reason=row[8],
        )

    def create_session(self, session: SessionRecord, token_hash: str) -> None:
        sealed = self._seal_addr(session)
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO auth_sessions (session_id, token_hash, staff_id, created_at, last_seen_at,"
                " expires_at, client_addr) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session.session_id, token_hash, session.staff_id, _ts(session.created_at),
                 _ts(session.last_seen_at), _ts(session.expires_at), sealed),
            )

    def session_standing(self, token_hash: str, now: datetime) -> SessionStanding | None:
        # One statement for what authentication reads on every request: the session,
        # its account's lockout row and its live break-glass grants, one row per grant
        # (or one row without): three round trips were a third of authentication's
        # time (issue 15 item 6). An index lookup on the digest: no comparison of
        # secrets byte by byte, so no timing signal about how much of a guessed
        # token was right.
        t = now.timestamp()
        with self.db.transaction(write=False) as cur:
            cur.execute(
                f"SELECT {_STANDING_COLUMNS}, {self._version_column} FROM auth_sessions s"  # nosec B608
                " LEFT JOIN auth_login_failures f ON f.staff_id = s.staff_id"
                " LEFT JOIN auth_break_glass g ON g.staff_id = s.staff_id AND g.started_at <= ? AND g.expires_at > ?"
                " WHERE s.token_hash = ? ORDER BY g.started_at",
                (t, t, token_hash),
            )
            rows = cur.fetchall()
        if not rows:
            return None
        first = rows[0]
        session = self._session(first[:len(_SESSION_FIELDS)])
        assert session is not None  # nosec B101 - a row was read
        locked, version = first[len(_SESSION_FIELDS)], first[-1]
        return SessionStanding(
            session=session,
            locked_until=None if locked is None or float(locked) <= t else _req_dt(locked),
            break_glass=tuple((str(row[-3]), _req_dt(row[-2])) for row in rows if row[-3] is not None),
            account_version=None if version is None else int(version),
        )

    def session(self, session_id: str) -> SessionRecord | None:
        with self.db.transaction(write=False) as cur:
            cur.execute(f"SELECT {_SESSION_COLUMNS} FROM auth_sessions WHERE session_id = ?", (session_id,))  # nosec B608
            return self._session(cur.fetchone())

    def touch_session(self, session_id: str, at: datetime) -> None:
        with self.db.transaction() as cur:
            cur.execute(
                "UPDATE auth_sessions SET last_seen_at = ? WHERE session_id = ? AND ended_at IS NULL"
                " AND last_seen_at < ?",
                (_ts(at), session_id, _ts(at)),
            )

    def step_up_session(self, session_id: str, at: datetime) -> None:
        with self.db.transaction() as cur:
            cur.execute(
                "UPDATE auth_sessions SET stepped_up_at = ? WHERE session_id = ? AND ended_at IS NULL",
                (_ts(at), session_id),
            )

    def end_session(self, session_id: str, at: datetime, reason: str) -> bool:
        with self.db.transaction() as cur:
            cur.execute(
                "UPDATE auth_sessions SET ended_at = ?, end_reason = ? WHERE session_id = ?"
                " AND ended_at IS NULL RETURNING session_id",
                (_ts(at), reason, session_id),
            )
            return cur.fetchone() is not None

    def end_sessions_of(self, staff_id: str, at: datetime, reason: str, *, keep: str | None = None) -> int:
        with self.db.transaction() as cur:
            cur.execute(
                "UPDATE auth_sessions SET ended_at = ?, end_reason = ? WHERE staff_id = ?"
                " AND ended_at IS NULL AND session_id <> ? RETURNING session_id",
                (_ts(at), reason, staff_id, keep or ""),
            )
            return len(cur.fetchall())

    def live_sessions_of(self, staff_id: str) -> list[SessionRecord]:
        with self.db.transaction(write=False) as cur:
            cur.execute(
                f"SELECT {_SESSION_COLUMNS} FROM auth_sessions WHERE staff_id = ? AND ended_at IS NULL"  # nosec B608
                " ORDER BY created_at",
                (staff_id,),
            )
            rows = cur.fetchall()
        return [s for s in (self._session(row) for row in rows) if s is not None]

    # -- login challenges ---------------------------------------------------------------------

    def add_challenge(self, challenge_hash: str, challenge: LoginChallenge) -> None:
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO auth_challenges (challenge_hash, staff_id, expires_at, enrolling) VALUES (?, ?, ?, ?)",
                (challenge_hash, challenge.staff_id, _ts(challenge.expires_at), int(challenge.enrolling)),
            )
            # Challenges are short-lived; sweep those long gone while we are here.
            cur.execute("DELETE FROM auth_challenges WHERE expires_at < ?", (_ts(challenge.expires_at) - 3600,))

    def take_challenge(self, challenge_hash: str) -> LoginChallenge | None:
        # DELETE ... RETURNING: two requests presenting the same challenge at once
        # cannot both take it.
        with self.db.transaction() as cur:
            cur.execute(
                "DELETE FROM auth_challenges WHERE challenge_hash = ? RETURNING staff_id, expires_at, enrolling",
                (challenge_hash,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return LoginChallenge(staff_id=str(row[0]), expires_at=_req_dt(row[1]), enrolling=bool(row[2]))

    # -- lockout --------------------------------------------------------------------------------

    def locked_until(self, staff_id: str, now: datetime) -> datetime | None:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT locked_until FROM auth_login_failures WHERE staff_id = ?", (staff_id,))
            row = cur.fetchone()
        if row is None or row[0] is None or float(row[0]) <= now.timestamp():
            return None
        return _req_dt(row[0])

    def record_failure(self, staff_id: str, now: datetime, *, threshold: int, lock_for: timedelta,
                       forget_after: timedelta | None = None) -> int:
        t = now.timestamp()
        # Failures further apart than `forget_after` are not consecutive (item 8 of
        # issue 10: with the per-address throttle, one address never reaches the lock).
        stale = t - forget_after.total_seconds() if forget_after is not None else float("-inf")
        with self.db.transaction() as cur:
            # One statement, so concurrent failures each count (the row is locked for
            # the upsert); a lock that has run out starts the count again.
            cur.execute(
                "INSERT INTO auth_login_failures (staff_id, failures, locked_until, last_failure_at)"
                " VALUES (?, 1, NULL, ?) ON CONFLICT (staff_id) DO UPDATE SET"
                " failures = CASE WHEN auth_login_failures.locked_until IS NOT NULL"
                "   AND auth_login_failures.locked_until <= ? THEN 1"
                "   WHEN auth_login_failures.locked_until IS NULL AND auth_login_failures.last_failure_at < ? THEN 1"
                "   ELSE auth_login_failures.failures + 1 END,"
                " locked_until = CASE WHEN auth_login_failures.locked_until IS NOT NULL"
                "   AND auth_login_failures.locked_until <= ? THEN NULL ELSE auth_login_failures.locked_until END,"
                " last_failure_at = ?"
                " RETURNING failures, locked_until",
                (staff_id, t, t, stale, t, t),
            )
            failures, locked = cur.fetchone()
            if failures >= threshold and locked is None:
                cur.execute(
                    "UPDATE auth_login_failures SET locked_until = ? WHERE staff_id = ?",
                    (t + lock_for.total_seconds(), staff_id),
                )
        return int(failures)

    def clear_failures(self, staff_id: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM auth_login_failures WHERE staff_id = ?", (staff_id,))

    def clearing_failures(self, staff_id: str) -> Callable[[Any, Sequence[int]], None]:
        dialect = self.db.dialect

        def clear(raw_cursor: Any, _positions: Sequence[int]) -> None:
            adapt_cursor(dialect, raw_cursor).execute("DELETE FROM auth_login_failures WHERE staff_id = ?",
                                                      (staff_id,))

        return clear

    # -- monitoring responses (R3.6; application/monitoring.py MonitorResponses) ------------------
    # Each is an in-transaction hook, so the response commits with the alert that records it.

    def lapsing_step_ups(self, staff_id: str) -> InTransactionHook:
        dialect = self.db.dialect

        def lapse(raw_cursor: Any, _positions: Sequence[int]) -> None:
            adapt_cursor(dialect, raw_cursor).execute(
                "UPDATE auth_sessions SET stepped_up_at = NULL WHERE staff_id = ? AND ended_at IS NULL",
                (staff_id,))

        return lapse

    def ending_sessions(self, staff_id: str, at: datetime, reason: str) -> InTransactionHook:
        dialect = self.db.dialect

        def end(raw_cursor: Any, _positions: Sequence[int]) -> None:
            adapt_cursor(dialect, raw_cursor).execute(
                "UPDATE auth_sessions SET ended_at = ?, end_reason = ? WHERE staff_id = ? AND ended_at IS NULL",
                (_ts(at), reason, staff_id))

        return end

    def locking(self, staff_id: str, at: datetime) -> InTransactionHook:
        """Locked far into the future: only a security officer's unlock (which deletes
        the row, application/lockout.py) ends it."""
        dialect = self.db.dialect
        until = _ts(at + MONITOR_LOCK)

        def lock(raw_cursor: Any, _positions: Sequence[int]) -> None:
            adapt_cursor(dialect, raw_cursor).execute(
                "INSERT INTO auth_login_failures (staff_id, failures, locked_until, last_failure_at)"
                " VALUES (?, 0, ?, ?) ON CONFLICT (staff_id) DO UPDATE SET locked_until = excluded.locked_until",
                (staff_id, until, _ts(at)))

        return lock

    # -- TOTP replay ------------------------------------------------------------------------------

    def claim_totp_step(self, staff_id: str, step: int) -> bool:
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO auth_totp_steps (staff_id, last_step) VALUES (?, ?)"
                " ON CONFLICT (staff_id) DO UPDATE SET last_step = excluded.last_step"
                " WHERE auth_totp_steps.last_step < excluded.last_step RETURNING last_step",
                (staff_id, step),
            )
            return cur.fetchone() is not None

    # -- approvals ----------------------------------------------------------------------------------

    def add_approval(self, approval: ApprovalRecord) -> None:
        with self.db.transaction() as cur:
            self._approval_insert(approval)(cur)

    def approval_writer(self, approval: ApprovalRecord) -> InTransactionHook:
        insert = self._approval_insert(approval)  # sealed now, outside the transaction
        dialect = self.db.dialect

        def store(raw_cursor: Any, positions: Sequence[int]) -> None:
            insert(adapt_cursor(dialect, raw_cursor))

        return store

    def _approval_insert(self, approval: ApprovalRecord) -> Callable[[Cursor], None]:
        # The payload may name a person (a new account's display name): sealed under
        # a key of the approval's own, never in clear in the table.
        sealed = self.sealer.seal(
            "auth_approvals", "payload", approval.approval_id, approval.approval_id,
            approval.payload, field="display_name",
        )
        params = (approval.approval_id, approval.kind, approval.requested_by, _ts(approval.requested_at),
                  approval.subject_staff_id, json.dumps(approval.summary, sort_keys=True), sealed,
                  approval.status, approval.decided_by, _ts(approval.decided_at))

        def insert(cur: Cursor) -> None:
            cur.execute(
                f"INSERT INTO auth_approvals ({_APPROVAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # nosec B608
                params,
            )

        return insert

    def _approval(self, row: Sequence[Any] | None) -> ApprovalRecord | None:
        if row is None:
            return None
        approval_id = str(row[0])
        payload = self.sealer.open("auth_approvals", "payload", approval_id, approval_id, row[6], field="display_name")
        return ApprovalRecord(
            approval_id=approval_id, kind=str(row[1]), requested_by=str(row[2]),
            requested_at=_req_dt(row[3]), subject_staff_id=row[4], summary=json.loads(row[5]),
            payload=payload, status=str(row[7]), decided_by=row[8], decided_at=_dt(row[9]),
        )

    def approval(self, approval_id: str) -> ApprovalRecord | None:
        with self.db.transaction(write=False) as cur:
            cur.execute(f"SELECT {_APPROVAL_COLUMNS} FROM auth_approvals WHERE approval_id = ?", (approval_id,))  # nosec B608
            return self._approval(cur.fetchone())

    def approvals(self, *, status: str | None = "pending") -> list[ApprovalRecord]:
        with self.db.transaction(write=False) as cur:
            if status is None:
                cur.execute(f"SELECT {_APPROVAL_COLUMNS} FROM auth_approvals ORDER BY requested_at")  # nosec B608
            else:
                cur.execute(
                    f"SELECT {_APPROVAL_COLUMNS} FROM auth_approvals WHERE status = ? ORDER BY requested_at",  # nosec B608
                    (status,),
                )
            rows = cur.fetchall()
        return [a for a in (self._approval(row) for row in rows) if a is not None]

    def decide_in_transaction(self, approval_id: str, decided_by: str, at: datetime,
                              status: str) -> InTransactionHook:
        dialect = self.db.dialect

        def decide(raw_cursor: Any, _positions: Sequence[int]) -> None:
            cur = adapt_cursor(dialect, raw_cursor)
            cur.execute(
                "UPDATE auth_approvals SET status = ?, decided_by = ?, decided_at = ?"
                " WHERE approval_id = ? AND status = 'pending' RETURNING approval_id",
                (status, decided_by, _ts(at), approval_id),
            )
            if cur.fetchone() is None:
                raise NoLongerPending(approval_id)

        return decide

    # -- activation codes (R2.9) ------------------------------------------------------------------

    def activation(self, staff_id: str) -> ActivationRecord | None:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT staff_id, code_hash, expires_at, used_at FROM auth_activations WHERE staff_id = ?",
                        (staff_id,))
            row = cur.fetchone()
        if row is None:
            return None
        return ActivationRecord(staff_id=str(row[0]), code_hash=str(row[1]), expires_at=_req_dt(row[2]),
                                used_at=_dt(row[3]))

    def issue_activation(self, record: ActivationRecord) -> InTransactionHook:
        dialect = self.db.dialect

        def issue(raw_cursor: Any, _positions: Sequence[int]) -> None:
            cur = adapt_cursor(dialect, raw_cursor)
            cur.execute(
                "INSERT INTO auth_activations (staff_id, code_hash, expires_at, used_at) VALUES (?, ?, ?, NULL)"
                " ON CONFLICT (staff_id) DO UPDATE SET code_hash = excluded.code_hash,"
                " expires_at = excluded.expires_at, used_at = NULL",
                (record.staff_id, record.code_hash, _ts(record.expires_at)),
            )

        return issue

    def spend_activation(self, staff_id: str, code_hash: str, at: datetime) -> InTransactionHook:
        dialect = self.db.dialect

        def spend(raw_cursor: Any, _positions: Sequence[int]) -> None:
            cur = adapt_cursor(dialect, raw_cursor)
            cur.execute(
                "UPDATE auth_activations SET used_at = ? WHERE staff_id = ? AND code_hash = ?"
                " AND used_at IS NULL AND expires_at > ? RETURNING staff_id",
                (_ts(at), staff_id, code_hash, _ts(at)),
            )
            if cur.fetchone() is None:
                raise ActivationCodeSpent(staff_id)

        return spend

    # -- break-glass ------------------------------------------------------------------------------------

    def grant_writer(self, grant: BreakGlassGrant) -> InTransactionHook:
        sealed = self.sealer.seal("auth_break_glass", "reason", SYSTEM_SUBJECT, grant.grant_id, grant.reason, field="reason")
        params = (grant.grant_id, grant.staff_id, grant.session_id, grant.portfolio, sealed,
                  _ts(grant.started_at), _ts(grant.expires_at))
        dialect = self.db.dialect

        def store(raw_cursor: Any, positions: Sequence[int]) -> None:
            adapt_cursor(dialect, raw_cursor).execute(
                f"INSERT INTO auth_break_glass ({_GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # nosec B608
                params,
            )

        return store

    def _grant(self, row: Sequence[Any]) -> BreakGlassGrant:
        reason = self.sealer.open("auth_break_glass", "reason", SYSTEM_SUBJECT, str(row[0]), row[4], field="reason")
        return BreakGlassGrant(
            grant_id=str(row[0]), staff_id=str(row[1]), session_id=row[2], portfolio=str(row[3]),
            reason=str(reason), started_at=_req_dt(row[5]), expires_at=_req_dt(row[6]),
        )

    def grants(self, *, since: datetime | None = None) -> list[BreakGlassGrant]:
        with self.db.transaction(write=False) as cur:
            cur.execute(
                f"SELECT {_GRANT_COLUMNS} FROM auth_break_glass WHERE started_at >= ?"  # nosec B608
                " ORDER BY started_at DESC",
                (since.timestamp() if since else 0.0,),
            )
            rows = cur.fetchall()
        return [self._grant(row) for row in rows]


def load_common_passwords(path: Path = COMMON_PASSWORDS_FILE) -> frozenset[str]:
    """The shipped list, lower-cased; lines starting with "# " are its header."""
    words = set()
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            word = line.rstrip("\n")
            if word and not word.startswith("# "):
                words.add(word.lower())
    return frozenset(words)


_COMMON: frozenset[str] | None = None


def common_passwords() -> frozenset[str]:
    """Loaded once per process (about 50 ms): every app in the process shares it."""
    global _COMMON
    if _COMMON is None:
        _COMMON = load_common_passwords()
    return _COMMON
