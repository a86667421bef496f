"""How a store fails, and how long a request waits for one (R7.6).

Three things, all about a store that is down, full or contended:

- `is_store_unavailable(exc)`: whether an error, or one it was raised from, means
  the store cannot serve now (unreachable, restarting, out of space, locked,
  conflicting), whatever raised it: psycopg, psycopg_pool, sqlite3, the
  `eventsourcing` library's wrappers of those, or our own `DatabaseUnavailable`.
  `web/errors.py` answers each such error 503 with Retry-After.
- One deadline per request (`start_deadline`/`end_deadline`, a context variable):
  every wait for a pooled PostgreSQL connection during the request takes what is
  left of it, and once it has passed the next wait fails at once with
  `DeadlineExceeded`. The library retries a failed statement ten times, each
  waiting up to the pool's timeout; `DeadlineExceeded` is not one of the errors it
  retries, so the request ends within its deadline, not after ten pool waits.
- `bounded_pool_class(base)`: the pool side of that deadline. While the server is
  known to be down (its last connection attempt failed and no connection is idle)
  one request in half a second waits briefly and the rest are refused at once, so
  an outage never fills the server's threads; and reconnection attempts at most
  half a second apart
  (psycopg_pool doubles the delay after each failed attempt, so
  after a 20 s outage its next attempt could be 10 s or more after the server is back).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import sqlite3
import threading
import time
from contextvars import ContextVar, Token
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError as LibraryInterfaceError
from eventsourcing.persistence import OperationalError as LibraryOperationalError
from psycopg.pq import TransactionStatus
from psycopg_pool import PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from infrastructure.logs import ERROR_LOGGER
from infrastructure.sql import DatabaseUnavailable

log = logging.getLogger(ERROR_LOGGER)

__all__ = [
    "DeadlineExceeded",
    "StoreKnownDown",
    "WATCHDOG",
    "Watchdog",
    "bounded_pool_class",
    "end_deadline",
    "is_store_unavailable",
    "remaining",
    "start_deadline",
]

# SQLite's result codes that mean "not now" rather than "wrong SQL" (a missing table
# is an OperationalError too, and a bug, not an outage).
_SQLITE_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR",
                       "SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PROTOCOL")


class DeadlineExceeded(DatabaseUnavailable):
    """The request's time for the database ran out; it answers 503."""


def _sqlite_unavailable(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(_SQLITE_UNAVAILABLE)


def is_store_unavailable(exc: BaseException) -> bool:
    """True when `exc`, or an error it was raised from, means the store cannot serve now."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DatabaseUnavailable):
            return True
        if isinstance(current, sqlite3.Error):
            # The library wraps sqlite3's errors in its own: the code decides.
            return _sqlite_unavailable(current)
        # psycopg's OperationalError covers a lost or refused connection, an
        # administrator's shutdown, a full disk (class 53), a lock or statement
        # timeout, a serialisation failure or deadlock; psycopg_pool's PoolTimeout,
        # TooManyRequests and PoolClosed are OperationalErrors too. InterfaceError
        # is a connection the client already knows is closed.
        if isinstance(current, (psycopg.OperationalError, psycopg.InterfaceError)):
            return True
        if isinstance(current, (LibraryOperationalError, LibraryInterfaceError)) and current.__cause__ is None:
            return True
        current = current.__cause__ or current.__context__
    return False


_deadline: ContextVar[float | None] = ContextVar("strongroom_store_deadline", default=None)


def start_deadline(seconds: float) -> Token[float | None]:
    """From now on, in this context, waits for the database end `seconds` from now."""
    return _deadline.set(time.monotonic() + seconds)


def end_deadline(token: Token[float | None]) -> None:
    _deadline.reset(token)


def remaining(default: float) -> float:
    """Seconds left before this context's deadline, or `default` when it has none."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    return min(default, deadline - time.monotonic())


class _CappedBackoff(AttemptWithBackoff):
    """psycopg_pool's reconnection attempts, but never more than `MAX_DELAY` apart."""

    MAX_DELAY = 0.5

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, self.MAX_DELAY)


# While the pool's last attempt to connect failed and it has no idle connection, the
# server is known to be down. A request thread held waiting for it is a thread the
# next request (or /healthz, behind it in the server's queue) waits for; so one
# request in each `KNOWN_DOWN_PROBE_SECONDS` waits at most `KNOWN_DOWN_WAIT_SECONDS`
# for the pool to reconnect (it also makes a pool that gave up grow again), and every
# other request during the outage is refused at once: 503 in milliseconds.
KNOWN_DOWN_WAIT_SECONDS = 0.25
KNOWN_DOWN_PROBE_SECONDS = 0.5


class StoreKnownDown(DeadlineExceeded):
    """Refused without waiting: the pool's last attempt to connect failed (503)."""


class Watchdog:
    """Cuts a connection that outlives its request's deadline (R7.6).

    A server that hangs (stopped, or its host unreachable without a reset) answers
    nothing: no error comes back, and a statement or a ping waits forever, holding
    its request thread; the request's deadline bounds only waits in the pool. So a
    connection handed out under a deadline is watched, and one still out
    `GRACE_SECONDS` after it has its socket shut down: the blocked call fails at once
    (psycopg: the server closed the connection), the request answers 503, and the
    pool discards the connection. A cut marks the pool hung: requests then fail fast
    (one probe at a time) until a ping succeeds again.

    One watchdog per process, its thread started at the first watch. Cutting happens
    under the lock that `release` takes, so a connection already back in the pool
    (and perhaps handed to another request) is never cut.
    """

    GRACE_SECONDS = 0.5
    TICK_SECONDS = 0.1

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[int, tuple[float, Any, Any]] = {}
        self._thread: threading.Thread | None = None
        self.cuts = 0

    def watch(self, pool: Any, conn: Any, deadline: float) -> None:
        with self._lock:
            self._due[id(conn)] = (deadline + self.GRACE_SECONDS, conn, pool)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="strongroom-watchdog", daemon=True)
                self._thread.start()

    def release(self, conn: Any) -> None:
        with self._lock:
            self._due.pop(id(conn), None)

    def _run(self) -> None:
        while True:
            time.sleep(self.TICK_SECONDS)
            now = time.monotonic()
            with self._lock:
                for key, (due, conn, pool) in list(self._due.items()):
                    if due <= now:
                        del self._due[key]
                        self._cut(conn)
                        pool.__dict__["_strongroom_hung"] = True

    def _cut(self, conn: Any) -> None:
        try:
            # A second descriptor for the same socket: shutdown acts on the socket,
            # so the connection's own blocked read ends; closing ours leaves its fd.
            sock = socket.socket(fileno=os.dup(conn.fileno()))
        except (OSError, ValueError, psycopg.Error):
            return  # already closed
        try:
            sock.shutdown(socket.SHUT_RDWR)
            self.cuts += 1
            log.warning("cut a database connection that outlived its request's deadline",
                        extra={"fields": {"grace_seconds": self.GRACE_SECONDS}})
        except OSError:
            pass
        finally:
            sock.close()


WATCHDOG = Watchdog()


def _quiet(conn: Any) -> bool:
    """True when the connection is open and idle and its socket has nothing to read.

    A server that crashed, restarted or ended the session has closed the socket or
    sent an error, and either makes it readable; an idle connection the server still
    holds has nothing to say. Only a connection that is not quiet is pinged (a round
    trip) before it is handed out. A server that hangs without closing anything is
    the watchdog's to find, pinged or not.
    """
    try:
        if conn.closed or conn.broken or conn.pgconn.transaction_status != TransactionStatus.IDLE:
            return False
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError, psycopg.Error):
        return False


def bounded_pool_class(base: type[Any]) -> type[Any]:
    """A subclass of psycopg_pool `ConnectionPool` class `base`: waits for a connection
    bounded by the request's deadline (and short while the server is known to be
    down), reconnection attempts at most half a second apart.

    It adds no slots (`__slots__ = ()`; its one flag lives in the pool's `__dict__`),
    so a pool the library has already built can be given this class before it opens
    (eventstore/postgres.py).
    """

    class BoundedPool(base):  # type: ignore[valid-type,misc]
        __slots__ = ()

        def getconn(self, timeout: float | None = None) -> Any:
            budget = remaining(self.timeout if timeout is None else timeout)
            if budget <= 0:
                raise DeadlineExceeded("the request's time for the database has run out")
            # The probe of a server known to be down or hung is always pinged.
            probing = self._known_down()
            if probing:
                budget = min(budget, KNOWN_DOWN_WAIT_SECONDS)
            # A connection is pinged before it is handed out unless it is quiet (see
            # `_quiet`). A broken one (a server crash breaks them all) goes back to be
            # discarded and the next is tried at once; psycopg_pool's own `check` sleeps
            # a second or more between tries, which held every request thread for its
            # whole deadline after a crash.
            deadline = _deadline.get()
            for _ in range(self.max_size + 1):
                conn = self._wait_for_connection(budget)
                if deadline is not None:
                    WATCHDOG.watch(self, conn, deadline)  # a hung server cannot hold the thread
                # A server that hangs closes nothing, so its connections look quiet: while
                # the watchdog's last cut stands, only a ping that answers clears it.
                pinged = probing or bool(self.__dict__.get("_strongroom_hung")) or not _quiet(conn)
                try:
                    if pinged:
                        self.check_connection(conn)
                except Exception:  # any failed ping: the connection is not handed out
                    self.putconn(conn)  # broken: the pool discards it and connects anew
                    known_down = self.__dict__.get("_strongroom_unreachable") or self.__dict__.get("_strongroom_hung")
                    if known_down and deadline is not None:
                        raise StoreKnownDown("the database is known to be unreachable") from None
                    # A failed ping is a sign the server may be down: wait briefly.
                    budget = min(remaining(self.timeout), KNOWN_DOWN_WAIT_SECONDS)
                    if budget <= 0:
                        raise DeadlineExceeded("the request's time for the database has run out") from None
                    continue
                if pinged:
                    self.__dict__["_strongroom_hung"] = False
                return conn
            raise DeadlineExceeded("no working database connection")

        def putconn(self, conn: Any) -> None:
            WATCHDOG.release(conn)
            super().putconn(conn)

        def _known_down(self) -> bool:
            """The last connection attempt failed and no connection is idle, or the
            watchdog cut a connection the server left hanging and no ping has
            succeeded since; raises `StoreKnownDown` for all but one request in each
            probe interval."""
            unreachable = self.__dict__.get("_strongroom_unreachable") and not self.get_stats().get("pool_available")
            if not unreachable and not self.__dict__.get("_strongroom_hung"):
                return False
            now = time.monotonic()
            probed = self.__dict__.get("_strongroom_probed", 0.0)
            # Check-then-set without a lock: at worst two requests probe at once.
            if _deadline.get() is not None and now - probed < KNOWN_DOWN_PROBE_SECONDS:
                raise StoreKnownDown("the database is known to be unreachable")
            self.__dict__["_strongroom_probed"] = now
            return True

        def _wait_for_connection(self, budget: float) -> Any:
            try:
                return super().getconn(timeout=budget)
            except PoolTimeout as exc:
                if _deadline.get() is not None:
                    raise DeadlineExceeded("no database connection within the request's deadline") from exc
                raise

        def _connect(self, timeout: float | None = None) -> Any:
            try:
                conn = super()._connect(timeout=timeout)
            except Exception:
                self.__dict__["_strongroom_unreachable"] = True
                raise
            self.__dict__["_strongroom_unreachable"] = False
            return conn

        def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
            super()._add_connection(attempt or _CappedBackoff(timeout=self.reconnect_timeout), growing)

    BoundedPool.__name__ = BoundedPool.__qualname__ = f"Bounded{base.__name__}"
    return BoundedPool
