"""Telling a process's key cache, at once, that another process destroyed keys (R5.4).

The key ring keeps unwrapped keys for up to `key_cache_seconds`; without this, a
process that had read a customer went on reading them for that long after another
process erased them. Every cached customer key is dropped as soon as the erasure
ledger (`destroyed_keys`) moves:

* SQLite: before each use of a cached customer key, `PRAGMA data_version` tells
  whether another connection wrote to the key store; only then is the ledger's highest
  rowid read (rows are only ever added) and compared with the one last seen.
* PostgreSQL: `KeyStore.destroy` sends NOTIFY on `CHANNEL` in its transaction, and a
  listener thread with its own connection marks the cache stale when it arrives; no
  query per use. While the listener is not connected (start-up, a lost connection)
  the watch answers "changed" on every use: the cache is off rather than stale.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from typing import Any, Protocol

from infrastructure.crypto.keystore import LEDGER_CHANNEL
from infrastructure.sql import Database

CHANNEL = LEDGER_CHANNEL
_log = logging.getLogger(__name__)


class LedgerWatch(Protocol):
    def changed(self) -> bool:
        """True when keys may have been destroyed since the last call (drop the cache)."""

    def close(self) -> None:
        """Stop watching."""


class PolledLedger:
    """SQLite: compare the ledger's highest rowid with the one last seen, looked up only
    when `PRAGMA data_version` says another connection has written to the key store
    since this thread last looked (a counter in shared memory: no page is read)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._mark = self._read()
        self._lock = threading.Lock()
        self._seen = threading.local()

    def _read(self) -> int:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT MAX(rowid) FROM destroyed_keys")
            row = cur.fetchone()
        return int(row[0] or 0) if row else 0

    def _written_elsewhere(self) -> bool:
        connection = getattr(self.db, "_connection", None)
        if connection is None:
            return True
        version = connection().execute("PRAGMA data_version").fetchone()[0]
        if getattr(self._seen, "version", None) == version:
            return False
        self._seen.version = version
        return True

    def changed(self) -> bool:
        if not self._written_elsewhere():
            return False
        mark = self._read()
        with self._lock:
            moved, self._mark = mark != self._mark, mark
        return moved

    def close(self) -> None:
        return None


class NotifiedLedger:
    """PostgreSQL: LISTEN on `CHANNEL` in a thread; stale until the listener is up."""

    RETRY_SECONDS = 1.0
    # The listener waits on its connection and on a wake-up pipe that `close()` writes
    # to, so closing does not wait for a timeout (a rebuild worker closes its
    # components as it ends, issue 15: a 0.1 s poll was a third of a 6,000-event
    # partition's run on PostgreSQL). The timeout only bounds a missed wake-up.
    LISTEN_SECONDS = 1.0

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._dirty = True
        self._listening = False
        self._stop = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="key-ledger-listener", daemon=True)
        self._thread.start()
        # Start-up waits (briefly) for the listener, so the cache is usable at once.
        self._ready.wait(timeout=5.0)

    def _listen(self) -> None:
        import psycopg

        # One warning per outage, however many retries it takes (a retry a second
        # for as long as the server is away would bury the log), and a line when it
        # is back.
        outage = False
        while not self._stop.is_set():
            conn: Any = None
            try:
                conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
                conn.execute(f"LISTEN {CHANNEL}")
                with self._lock:
                    # Whatever was destroyed while nobody listened: drop everything once.
                    self._dirty, self._listening = True, True
                self._ready.set()
                if outage:
                    outage = False
                    _log.info("key ledger listener is back; key cache on")
                while not self._stop.is_set():
                    for _ in conn.notifies(timeout=0):  # what has arrived, without waiting
                        with self._lock:
                            self._dirty = True
                    ready, _, _ = select.select([conn.fileno(), self._wake_read], [], [], self.LISTEN_SECONDS)
                    if self._wake_read in ready:
                        self._drain_wake()  # then the loop looks at `_stop`
            except Exception as exc:  # noqa: BLE001 - any failure: stop trusting the cache, retry
                if not outage and not self._stop.is_set():
                    _log.warning("key ledger listener lost its connection (%s); key cache off until it is back",
                                 type(exc).__name__)
                outage = True
            finally:
                with self._lock:
                    self._listening = False
                self._ready.set()
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001,S110  # nosec B110 - closing a broken connection
                        pass
            self._stop.wait(self.RETRY_SECONDS)

    def changed(self) -> bool:
        # A process forked after the watch started has no listener thread: cache off.
        if not self._thread.is_alive():
            return True
        with self._lock:
            if not self._listening:
                return True
            moved, self._dirty = self._dirty, False
        return moved

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # empty: drained
            while os.read(self._wake_read, 64):
                continue

    def close(self) -> None:
        self._stop.set()
        # Only this process's listener stops: a forked child that closes the watch it
        # inherited wakes the parent's listener, which sees its own `_stop` unset.
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        if not self._thread.is_alive():
            for fd in (self._wake_read, self._wake_write):
                with contextlib.suppress(OSError):
                    os.close(fd)


def ledger_watch(db: Database) -> LedgerWatch:
    """The watch that suits the key store's database."""
    if db.dialect == "postgres":
        return NotifiedLedger(str(getattr(db, "pool").conninfo))
    return PolledLedger(db)
