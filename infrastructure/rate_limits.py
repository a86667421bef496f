"""Rate-limit counters in the shared database (R2.11, R7.4): the `RateLimiter` port.

The arithmetic is pyrate-limiter's GCRA (its `StateAlgorithm`: one "theoretical
arrival time" per limit and key, an exact wait in closed form); the state is kept
by `DatabaseStateStore`, a pyrate-limiter `StateStore` over our own `Database`:
one row per (bucket, key digest) in `rate_limit_state`, read and written in one
transaction that holds the row (PostgreSQL `FOR UPDATE`, SQLite `BEGIN IMMEDIATE`),
so two API processes can never both spend the last unit.

Why not the library's `SQLiteBucket` / `PostgresBucket`: each counts every row of
its table whatever the item's name, so a per-actor or per-address budget would need
a table per key (an attacker with many addresses would create tables without bound);
`PostgresBucket` takes `LOCK TABLE ... EXCLUSIVE NOWAIT` and refuses whoever finds
the lock taken (one actor's search would fail another's); `SQLiteBucket` counts then
inserts under a lock of one process only; and both open their own connections, out
of reach of the request deadline and the 503 translation of R7.6.

Keys are stored as an HMAC under a system key: an address or a username is personal
data, and this table outlives any session. All SQL is parameterised.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pyrate_limiter import GCRA, Rate, StateAlgorithm, StateStore
from pyrate_limiter.abstracts.algorithm import Decision, State

from application.ports.throttle import Limit
from infrastructure.sql import Database, lock_schema_changes

_TIME = {"sqlite": "REAL", "postgres": "DOUBLE PRECISION"}
SWEEP_EVERY = 1000  # acquisitions between sweeps of idle rows
_SELECT = "SELECT state FROM rate_limit_state WHERE bucket = ? AND key_digest = ?"
_SELECT_HELD = _SELECT + " FOR UPDATE"


def create_rate_limit_table(db: Database) -> None:
    with db.transaction() as cur:
        lock_schema_changes(cur, db.dialect)
        cur.execute(
            "CREATE TABLE IF NOT EXISTS rate_limit_state (bucket TEXT NOT NULL, key_digest TEXT NOT NULL,"
            f" state TEXT NOT NULL, idle_at {_TIME[db.dialect]} NOT NULL, PRIMARY KEY (bucket, key_digest))"
        )
        cur.execute("CREATE INDEX IF NOT EXISTS rate_limit_state_idle ON rate_limit_state (idle_at)")


def _rates(limits: Sequence[Limit]) -> list[Rate]:
    rates = [Rate(limit.count, int(limit.seconds * 1000), limit.burst) for limit in limits]
    return sorted(rates, key=lambda rate: rate.interval)


class DatabaseStateStore(StateStore):
    """One key's GCRA state in `rate_limit_state`; `check` is atomic across processes."""

    def __init__(self, db: Database, bucket: str, key_digest: str) -> None:
        self.db = db
        self.bucket = bucket
        self.key_digest = key_digest

    def _load(self, cur: Any, algorithm: StateAlgorithm, rates: list[Rate], *, lock: bool) -> State:
        # Two fixed statements: PostgreSQL holds the row; SQLite's BEGIN IMMEDIATE holds the file.
        held = lock and self.db.dialect == "postgres"
        cur.execute(_SELECT_HELD if held else _SELECT, (self.bucket, self.key_digest))
        row = cur.fetchone()
        if row is None:
            return algorithm.initial(rates)
        values = json.loads(row[0])
        # A budget whose limits changed since it was stored starts afresh.
        return algorithm.decode(values) if len(values) == len(rates) else algorithm.initial(rates)

    def check(self, algorithm: StateAlgorithm, rates: list[Rate], now: int, weight: int) -> Decision:
        with self.db.transaction() as cur:
            if self.db.dialect == "postgres":
                # The row must exist for FOR UPDATE to hold it against a concurrent first use.
                cur.execute(
                    "INSERT INTO rate_limit_state (bucket, key_digest, state, idle_at) VALUES (?, ?, ?, 0)"
                    " ON CONFLICT (bucket, key_digest) DO NOTHING",
                    (self.bucket, self.key_digest, json.dumps([0] * len(rates))),
                )
            state = self._load(cur, algorithm, rates, lock=True)
            new_state, decision = algorithm.step(rates, state, now, weight)
            if decision.allowed:
                # Idle (back to a full budget) once every arrival time has passed.
                idle_at = max(int(v) for v in new_state) / 1_000_000
                cur.execute(
                    "INSERT INTO rate_limit_state (bucket, key_digest, state, idle_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (bucket, key_digest) DO UPDATE SET state = excluded.state,"
                    " idle_at = excluded.idle_at",
                    (self.bucket, self.key_digest, json.dumps([int(v) for v in new_state]), idle_at),
                )
        return decision

    def read(self, algorithm: StateAlgorithm, rates: list[Rate]) -> State:
        with self.db.transaction(write=False) as cur:
            return self._load(cur, algorithm, rates, lock=False)

    def reset(self) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM rate_limit_state WHERE bucket = ? AND key_digest = ?",
                        (self.bucket, self.key_digest))


class DatabaseRateLimiter:
    """Implements `application.ports.RateLimiter` over the shared database."""

    def __init__(self, db: Database, digest_key: bytes, clock: Callable[[], datetime],
                 algorithm: StateAlgorithm | None = None) -> None:
        self.db = db
        self._digest_key = digest_key
        self.clock = clock
        self.algorithm = algorithm or GCRA()
        self._acquired = 0

    def create_tables(self) -> None:
        create_rate_limit_table(self.db)

    def _store(self, bucket: str, key: str) -> DatabaseStateStore:
        digest = hmac.new(self._digest_key, f"{bucket}\x00{key}".encode("utf-8", "surrogatepass"),
                          hashlib.sha256).hexdigest()
        return DatabaseStateStore(self.db, bucket, digest)

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def acquire(self, bucket: str, key: str, limits: Sequence[Limit]) -> float | None:
        now = self._now_ms()
        decision = self._store(bucket, key).check(self.algorithm, _rates(limits), now, 1)
        self._acquired += 1
        if self._acquired % SWEEP_EVERY == 0:
            self.sweep(now / 1000)
        return None if decision.allowed else self._seconds(decision)

    def blocked(self, bucket: str, key: str, limits: Sequence[Limit]) -> float | None:
        rates = _rates(limits)
        state = self._store(bucket, key).read(self.algorithm, rates)
        _, decision = self.algorithm.step(rates, state, self._now_ms(), 1)
        return None if decision.allowed else self._seconds(decision)

    @staticmethod
    def _seconds(decision: Decision) -> float:
        return (decision.retry_after_ms or 1000) / 1000

    def sweep(self, now_seconds: float) -> int:
        """Forget keys whose budget is full again (they would start from zero anyway)."""
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM rate_limit_state WHERE idle_at < ? RETURNING bucket", (now_seconds,))
            return len(cur.fetchall())
