"""Turning a database URL into the `eventsourcing` environment that stores events there.

The library chooses its store and recorders from environment keys
(`PERSISTENCE_MODULE`, `APPLICATION_RECORDER_TOPIC`, `PROCESS_RECORDER_TOPIC`, ...);
`recorder_environment()` builds those keys from one URL, naming this package's
recorders, so every application built from it stamps, chains and runs the
in-transaction hook (sqlite.py, postgres.py).

Unknown URL parameters are refused rather than ignored: a silently dropped TLS
setting would downgrade the connection without anyone noticing.
"""

from __future__ import annotations

import math
from urllib.parse import parse_qs, unquote, urlsplit

from eventsourcing.utils import get_topic
from infrastructure.eventstore.postgres import (
    TLSPostgresFactory,
    TimedPostgresApplicationRecorder,
    TimedPostgresProcessRecorder,
)
from infrastructure.eventstore.sqlite import (
    TimedSQLiteApplicationRecorder,
    TimedSQLiteProcessRecorder,
)

__all__ = ["recorder_environment"]

_POSTGRES_QUERY_KEYS = {
    "sslmode": TLSPostgresFactory.POSTGRES_SSLMODE,
    "sslrootcert": TLSPostgresFactory.POSTGRES_SSLROOTCERT,
    "schema": "POSTGRES_SCHEMA",
}


def recorder_environment(database_url: str, *, fail_fast: bool = False,
                         deadline_seconds: float = 5.0) -> dict[str, str]:
    """The eventsourcing environment that stores events at `database_url`.

    `sqlite:///path/file.sqlite` or
    `postgresql://user[:password]@host[:port]/db[?sslmode=..&sslrootcert=..&schema=..]`.
    Unknown query parameters are refused rather than ignored: a silently dropped
    TLS setting would downgrade the connection without anyone noticing.

    `fail_fast` (what the service runs with, composition.build): on PostgreSQL,
    wait at most `deadline_seconds` for a pooled connection or a table lock (the
    pool pings a connection before handing it out: infrastructure/faults.py). The
    library waits 30 s per attempt and retries, so without it a request to a server
    that is down hangs for minutes instead of answering 503 in seconds; a request's
    own deadline (infrastructure/faults.py) bounds the retries as a whole.
    """
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        return _sqlite_environment(parts.netloc, parts.path, parts.query)
    if parts.scheme in ("postgresql", "postgres"):
        env = _postgres_environment(database_url)
        if fail_fast:
            # The library reads a whole number of seconds.
            env["POSTGRES_CONNECT_TIMEOUT"] = str(max(1, math.ceil(deadline_seconds)))
            # A write queued behind a lock (the library locks the event table to order
            # notifications) gives up when the request would have, instead of holding
            # a request thread; the request's deadline then ends the library's retries.
            env["POSTGRES_LOCK_TIMEOUT"] = str(max(1, math.ceil(deadline_seconds)))
        return env
    msg = (
        f"unsupported database URL scheme {parts.scheme!r}: expected "
        "sqlite:///path/file.sqlite or postgresql://user@host:port/db"
    )
    raise ValueError(msg)


def _sqlite_environment(netloc: str, path: str, query: str) -> dict[str, str]:
    if netloc or not path.strip("/") or query:
        msg = "expected a SQLite URL of the form sqlite:///path/file.sqlite"
        raise ValueError(msg)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        # sqlite:///tmp/x and sqlite:////tmp/x (SQLAlchemy's spelling) both name
        # the absolute path /tmp/x, as infrastructure/sql.py reads them.
        "SQLITE_DBNAME": "/" + unquote(path).lstrip("/"),
        # Seconds a writer waits for another's write lock; the library's default
        # is 5, short when web workers and projections share one file.
        "SQLITE_LOCK_TIMEOUT": "10",
        "APPLICATION_RECORDER_TOPIC": get_topic(TimedSQLiteApplicationRecorder),
        "PROCESS_RECORDER_TOPIC": get_topic(TimedSQLiteProcessRecorder),
    }


def _postgres_environment(database_url: str) -> dict[str, str]:
    parts = urlsplit(database_url)
    try:
        port = parts.port or 5432
    except ValueError as exc:
        msg = f"invalid port in PostgreSQL URL: {exc}"
        raise ValueError(msg) from None
    dbname = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not parts.username or not dbname or "/" in dbname:
        msg = "expected a PostgreSQL URL of the form postgresql://user@host:port/db"
        raise ValueError(msg)
    env = {
        "PERSISTENCE_MODULE": get_topic(TLSPostgresFactory),
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(port),
        "POSTGRES_USER": unquote(parts.username),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        # The stored function saves a round trip per save(); ours stamps and locks.
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
        "APPLICATION_RECORDER_TOPIC": get_topic(TimedPostgresApplicationRecorder),
        "PROCESS_RECORDER_TOPIC": get_topic(TimedPostgresProcessRecorder),
    }
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        if name not in _POSTGRES_QUERY_KEYS:
            msg = (
                f"unsupported PostgreSQL URL parameter {name!r}: "
                f"expected one of {', '.join(sorted(_POSTGRES_QUERY_KEYS))}"
            )
            raise ValueError(msg)
        if len(values) != 1 or not values[0]:
            msg = f"PostgreSQL URL parameter {name!r} needs exactly one value"
            raise ValueError(msg)
        env[_POSTGRES_QUERY_KEYS[name]] = values[0]
    return env
