"""Throwaway stores for a benchmark run: made fresh, removed afterwards.

A benchmark must never touch the operator's instance, so nothing here reads the
instance folder or the `STRONGROOM_*` environment: `Settings` is built directly
(not through `Settings.load`), else a `STRONGROOM_KEYS_DATABASE_URL` or
`STRONGROOM_PROJECTION=worker` set for the real service would leak into the run,
pointing it at real keys or at a projection worker that is not there.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

from eventsourcing.application import Application
from psycopg.sql import SQL, Identifier

from domain.customer import Customer
from benchmarks import STORES
from infrastructure.composition import Components, Settings, build
from infrastructure.crypto.kek import LocalKek
from infrastructure.eventstore import recorder_environment


class ScratchError(Exception):
    """A throwaway store could not be made (e.g. PostgreSQL unreachable)."""


class PlainCustomers(Application[UUID]):
    """The baseline writer: the library's own application, no cipher, no read model.

    Same recorders (`recorder_environment`), same aggregate, stored as the default
    transcoder's JSON. What the secured path costs beyond this is what we measure.
    """

    name = "plaincustomers"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {}

    def register_customer(self, fields: dict[str, Any]) -> None:
        self.save(Customer.register(**fields))


class Scratch:
    """Fresh stores of one kind; `close()` closes what was opened and deletes it all."""

    def __init__(self, store: str, pg_admin_url: str) -> None:
        if store not in STORES:
            raise ValueError(f"unknown store {store!r}")
        self.store = store
        self.pg_admin_url = pg_admin_url
        self.folder = Path(tempfile.mkdtemp(prefix=f"strongroom-bench-{store}-"))
        self._count = 0
        self._open: list[Components | Application[Any]] = []
        self._databases: list[str] = []

    # -- databases ----------------------------------------------------------------------

    def _admin(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.pg_admin_url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            raise ScratchError(f"PostgreSQL is not reachable at the admin URL: {exc}") from None

    def database_url(self, label: str, *, bulk_load: bool = False) -> str:
        """A new, empty database (SQLite file or PostgreSQL database).

        `bulk_load`: PostgreSQL commits without waiting for the WAL flush. Only for a
        database filled as setup and then only read: a read-only transaction writes no
        WAL, so what is measured afterwards is unaffected, while the fill (one commit
        per new data key) no longer waits on the disk 200,000 times.
        """
        self._count += 1
        if self.store == "sqlite":
            return f"sqlite:///{self.folder / f'{label}-{self._count}.sqlite'}"
        name = f"sr_bench_{uuid.uuid4().hex[:12]}"
        with self._admin() as admin:
            admin.execute(SQL("CREATE DATABASE {}").format(Identifier(name)))
            if bulk_load:
                admin.execute(SQL("ALTER DATABASE {} SET synchronous_commit = off").format(Identifier(name)))
        self._databases.append(name)
        parts = urlsplit(self.pg_admin_url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))

    def version(self) -> str:
        if self.store == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        with self._admin() as admin:
            return f"PostgreSQL {admin.execute('SHOW server_version').fetchone()[0]}"

    def settle(self, built: Components) -> None:
        """Bring a freshly bulk-filled instance to the state a long-lived one is in.

        After a bulk load, PostgreSQL has no planner statistics yet and autovacuum and
        a checkpoint are about to start; SQLite has a write-ahead log as big as the
        load. Either would land in the middle of the timed lookups and measure the
        load, not the lookup, so vacuum, analyse and checkpoint first.
        """
        if self.store == "sqlite":
            built.events_db.reclaim("rm_customers")  # a WAL checkpoint
            built.keys_db.reclaim("data_keys")
            with built.events_db.transaction() as cur:
                cur.execute("ANALYZE")
            return
        import psycopg

        with psycopg.connect(built.settings.database_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            try:
                conn.execute("CHECKPOINT")
            except psycopg.errors.InsufficientPrivilege:
                pass  # not a superuser: the server checkpoints on its own schedule

    # -- applications ---------------------------------------------------------------------

    def components(self, *, blind_index_bits: int, bulk_load: bool = False) -> Components:
        """A Strongroom instance in its own folder, with a fresh KEK and fresh stores."""
        self._count += 1
        folder = self.folder / f"instance-{self._count}"
        folder.mkdir(mode=0o700)
        kek = LocalKek.create(folder / "kek.key")
        events_url = self.database_url("events", bulk_load=bulk_load)
        keys_url = events_url if self.store == "postgres" else f"sqlite:///{folder / 'keys.sqlite'}"
        settings = Settings(
            instance=folder, database_url=events_url, keys_database_url=keys_url,
            key_provider="local", projection="inline", blind_index_bits=blind_index_bits,
            environment="benchmark",
        )
        built = build(settings, kek=kek)
        self._open.append(built)
        return built

    def plain(self, like: Components) -> PlainCustomers:
        """The baseline application in a database of its own.

        Its recorders come from `recorder_environment`; its connection settings
        (PostgreSQL pool, pre-ping, timeouts) are copied from `like`, the secured
        instance, so that a round trip the secured app's pool makes is not counted
        as the cost of encryption.
        """
        env = recorder_environment(self.database_url("plain"))
        for key, value in like.app.env.items():
            if key.startswith("POSTGRES_") and key not in env:
                env[key] = value
        app = PlainCustomers(env)
        self._open.append(app)
        return app

    def release(self, thing: Components | Application[Any]) -> None:
        """Close one instance early (its files or database go at `close()`)."""
        self._open.remove(thing)
        thing.close()

    def close(self) -> list[str]:
        """Close everything, drop the databases, delete the folder; returns problems seen."""
        problems = []
        for thing in reversed(self._open):
            try:
                thing.close()
            except Exception as exc:  # noqa: BLE001 - go on cleaning up, report at the end
                problems.append(f"closing {type(thing).__name__}: {type(exc).__name__}")
        self._open.clear()
        if self._databases:
            try:
                with self._admin() as admin:
                    for name in self._databases:
                        admin.execute(SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(Identifier(name)))
                self._databases.clear()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"dropping {', '.join(self._databases)}: {exc}")
        shutil.rmtree(self.folder, ignore_errors=True)
        return problems
