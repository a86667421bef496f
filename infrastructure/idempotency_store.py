"""Outcomes of keyed writes, for their retries (R7.6): the `idempotency` table.

One row per (actor id, key digest): the request's fingerprint, the answer's status,
and the id, version and item id of what the write made. Never the request body nor
the answer's fields (R1.3). The client's key and the request's fingerprint are stored
only as HMAC-SHA256 under a key derived from the index root key, so that neither a
key a client filled with personal data nor a plain SHA-256 of a body (which anyone
holding a guess of its contents could confirm) is kept at rest. Times are UTC epoch
seconds; rows past `expires_at` are ignored, and replaced by a new write under the
same key.

Statements are parameterised; the table and column names are module constants.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from application.ports import IdempotentOutcome, InTransactionHook
from infrastructure.sql import Cursor, Database, adapt_cursor, lock_schema_changes

_TIME = {"sqlite": "REAL", "postgres": "DOUBLE PRECISION"}
_BIGINT = {"sqlite": "INTEGER", "postgres": "BIGINT"}


def create_idempotency_table(cur: Cursor, dialect: str) -> None:
    lock_schema_changes(cur, dialect)
    cur.execute(
        "CREATE TABLE IF NOT EXISTS idempotency (actor_id TEXT NOT NULL, key_digest TEXT NOT NULL,"
        " request_digest TEXT NOT NULL, status INTEGER NOT NULL, resource_id TEXT NOT NULL,"
        f" version {_BIGINT[dialect]} NOT NULL, item_id TEXT, expires_at {_TIME[dialect]} NOT NULL,"
        " PRIMARY KEY (actor_id, key_digest))"
    )
    cur.execute("CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency (expires_at)")


class IdempotencyTable:
    """Implements the IdempotencyStore port over one `Database`."""

    def __init__(self, db: Database, root_key: bytes) -> None:
        self.db = db
        self._key = hmac.new(root_key, b"strongroom/idempotency/v1", hashlib.sha256).digest()

    def create_tables(self) -> None:
        with self.db.transaction() as cur:
            create_idempotency_table(cur, self.db.dialect)

    def _digest(self, label: str, value: str) -> str:
        return hmac.new(self._key, f"{label}\0{value}".encode(), hashlib.sha256).hexdigest()

    def find(self, actor_id: str, key: str, now: datetime) -> IdempotentOutcome | None:
        with self.db.transaction(write=False) as cur:
            cur.execute(
                "SELECT request_digest, status, resource_id, version, item_id FROM idempotency"
                " WHERE actor_id = ? AND key_digest = ? AND expires_at > ?",
                (actor_id, self._digest("key", key), now.timestamp()),
            )
            row = cur.fetchone()
        if row is None:
            return None
        # The fingerprint comes back as its stored digest: `matches` compares it.
        return IdempotentOutcome(
            fingerprint=str(row[0]), status=int(row[1]), resource_id=str(row[2]), version=int(row[3]),
            item_id=None if row[4] is None else str(row[4]),
        )

    def request_digest(self, fingerprint: str) -> str:
        return self._digest("request", fingerprint)

    def matches(self, outcome: IdempotentOutcome, fingerprint: str) -> bool:
        return hmac.compare_digest(outcome.fingerprint, self.request_digest(fingerprint))

    def remember(self, actor_id: str, key: str, outcome: IdempotentOutcome,
                 now: datetime, expires_at: datetime) -> InTransactionHook:
        dialect = self.db.dialect
        key_digest = self._digest("key", key)
        params = (actor_id, key_digest, self.request_digest(outcome.fingerprint), outcome.status,
                  outcome.resource_id, outcome.version, outcome.item_id, expires_at.timestamp())

        def store(raw_cursor: Any, positions: Sequence[int]) -> None:
            cur = adapt_cursor(dialect, raw_cursor)
            # An expired record no longer holds its key; a live one makes the INSERT
            # fail and the whole write roll back.
            cur.execute("DELETE FROM idempotency WHERE actor_id = ? AND key_digest = ? AND expires_at <= ?",
                        (actor_id, key_digest, now.timestamp()))
            cur.execute(
                "INSERT INTO idempotency (actor_id, key_digest, request_digest, status, resource_id, version,"
                " item_id, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )

        return store
