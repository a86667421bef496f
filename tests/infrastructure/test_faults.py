"""A request's deadline bounds every wait for a connection; a known-down server is answered fast.

Fault injected: a PostgreSQL URL whose port nothing listens on (connection refused).
"""

from __future__ import annotations

import time

import pytest
from psycopg_pool import ConnectionPool, PoolTimeout

from infrastructure.faults import (
    KNOWN_DOWN_PROBE_SECONDS,
    KNOWN_DOWN_WAIT_SECONDS,
    DeadlineExceeded,
    StoreKnownDown,
    bounded_pool_class,
    end_deadline,
    remaining,
    start_deadline,
)

REFUSED = "postgresql://postgres@127.0.0.1:1/strongroom"


@pytest.fixture
def pool():
    made = bounded_pool_class(ConnectionPool)(REFUSED, min_size=1, max_size=1, timeout=10, open=True)
    try:
        yield made
    finally:
        made.close(timeout=1)


def test_a_wait_takes_only_what_is_left_of_the_deadline_and_says_so(pool):
    token = start_deadline(1.0)
    try:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            pool.getconn()
        assert time.monotonic() - started < 1.5  # not the pool's 10 s
        time.sleep(max(0.0, remaining(60.0)) + 0.01)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):  # the deadline has passed: no wait at all
            pool.getconn()
        assert time.monotonic() - started < 0.05
    finally:
        end_deadline(token)


def test_once_the_server_is_known_down_a_wait_is_short(pool):
    time.sleep(0.3)  # the pool's first connection attempt has been refused by now
    started = time.monotonic()
    with pytest.raises(PoolTimeout):  # no deadline in this context: the pool's own error
        pool.getconn()
    assert time.monotonic() - started < KNOWN_DOWN_WAIT_SECONDS + 0.5


def test_without_a_deadline_remaining_is_the_callers_default():
    assert remaining(7.0) == 7.0
    token = start_deadline(2.0)
    try:
        assert 1.5 < remaining(7.0) <= 2.0
        assert remaining(0.5) == 0.5
    finally:
        end_deadline(token)
    assert remaining(7.0) == 7.0


def test_while_the_server_is_known_down_only_one_request_in_half_a_second_waits(pool):
    # Issue 9 (performance): eight writers each waiting on a dead server filled the
    # server's threads, and /healthz queued behind them (p99 376 ms).
    time.sleep(0.3)  # the pool's first connection attempt has been refused by now
    token = start_deadline(5.0)
    try:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):  # the probe: a short wait for a reconnection
            pool.getconn()
        assert time.monotonic() - started < KNOWN_DOWN_WAIT_SECONDS + 0.5
        refused_in = []
        for _ in range(5):
            started = time.monotonic()
            with pytest.raises(StoreKnownDown):
                pool.getconn()
            refused_in.append(time.monotonic() - started)
        assert max(refused_in) < 0.02
        time.sleep(KNOWN_DOWN_PROBE_SECONDS)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as probed:  # the next probe waits again
            pool.getconn()
        assert not isinstance(probed.value, StoreKnownDown)
    finally:
        end_deadline(token)
