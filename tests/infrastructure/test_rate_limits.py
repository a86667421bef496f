"""Rate-limit counters in the shared database (R2.11, R7.4), on both stores.

Separate processes, each with its own connections, spend one budget: none of them
can spend a unit another has spent, however their requests interleave.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from application.ports import Limit
from infrastructure.rate_limits import DatabaseRateLimiter
from infrastructure.sql import Database

ROOT = Path(__file__).resolve().parents[2]
KEY = b"k" * 32
HOURLY = [Limit(10, 3600)]  # one unit back every 6 minutes: none during the test

SPENDER = """
import sys
from datetime import UTC, datetime
from application.ports import Limit
from infrastructure.rate_limits import DatabaseRateLimiter
from infrastructure.sql import Database

db = Database.connect(sys.argv[1])
limiter = DatabaseRateLimiter(db, b"k" * 32, lambda: datetime.now(UTC))
allowed = sum(limiter.acquire("search", "agent-1", [Limit(10, 3600)]) is None for _ in range(10))
db.close()
print(allowed)
"""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def limiter_on(database_url: str, clock=None) -> tuple[Database, DatabaseRateLimiter]:
    db = Database.connect(database_url)
    limiter = DatabaseRateLimiter(db, KEY, clock or (lambda: datetime.now(UTC)))
    limiter.create_tables()
    return db, limiter


def test_four_processes_share_one_budget_of_ten(database_url):
    db, _ = limiter_on(database_url)
    db.close()
    spenders = [subprocess.Popen([sys.executable, "-c", SPENDER, database_url], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = []
    for spender in spenders:
        out, err = spender.communicate(timeout=120)
        assert spender.returncode == 0, err
        results.append(int(out.strip()))
    # 40 tries between them, in parallel: exactly the 10 the budget holds got through.
    assert sum(results) == 10, results


def test_two_limiters_on_one_database_share_a_budget_and_a_refusal_spends_nothing(database_url):
    clock = Clock()
    first_db, first = limiter_on(database_url, clock)
    second_db, second = limiter_on(database_url, clock)
    try:
        limits = [Limit(1, 60, burst=3)]  # three at once, then one a minute
        assert [first.acquire("login_address", "192.0.2.7", limits) for _ in range(2)] == [None, None]
        assert second.acquire("login_address", "192.0.2.7", limits) is None
        wait = second.acquire("login_address", "192.0.2.7", limits)
        assert wait is not None and 59 <= wait <= 60
        assert first.blocked("login_address", "192.0.2.7", limits) == wait
        # Another key has its own budget.
        assert first.acquire("login_address", "192.0.2.8", limits) is None
        clock.now += timedelta(seconds=61)
        # The refused tries spent nothing: one unit is back, and only one.
        assert first.blocked("login_address", "192.0.2.7", limits) is None
        assert second.acquire("login_address", "192.0.2.7", limits) is None
        assert first.acquire("login_address", "192.0.2.7", limits) is not None
    finally:
        first_db.close()
        second_db.close()


def test_keys_are_kept_only_as_keyed_digests_and_idle_ones_are_swept(database_url):
    clock = Clock()
    db, limiter = limiter_on(database_url, clock)
    try:
        limiter.acquire("login_account", "planted.username", [Limit(1, 60, burst=5)])
        with db.transaction(write=False) as cur:
            cur.execute("SELECT bucket, key_digest, state FROM rate_limit_state")
            rows = cur.fetchall()
        assert len(rows) == 1
        assert "planted" not in repr(rows)
        clock.now += timedelta(minutes=2)
        assert limiter.sweep(clock.now.timestamp()) == 1
    finally:
        db.close()
