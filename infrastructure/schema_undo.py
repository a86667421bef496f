"""What `strongroom init` made in a database, so a failed init can take it back.

`snapshot(url)` lists the schema objects a database holds (on PostgreSQL: schemas,
tables, views, sequences and functions outside the system's own; on SQLite: the
tables, or that the file did not exist); `undo(url, before)` drops every object
made since, so the database is as init found it and a later init can use it. Objects
that were there before are never touched: init refuses a key store made with
another KEK before it writes anything (R1.4).

A caveat stated plainly: anything another client made in the same database while
init ran would be dropped too; init is run on a database nothing else uses yet.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from infrastructure.sql import is_postgres, sqlite_path

_PG_SCHEMAS = (
    "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
)
_PG_RELATIONS = (
    "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'c') AND n.nspname NOT LIKE 'pg\\_%' "
    "AND n.nspname <> 'information_schema'"
)
# Enums, domains and ranges: types with no row in pg_class (composite types have one).
_PG_TYPES = (
    "SELECT n.nspname, t.typname, t.typtype FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
    "WHERE t.typtype IN ('e', 'd', 'r') AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"
)
_PG_FUNCTIONS = (
    "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    "WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"
)
_DROP_KIND = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE",
              "c": "TYPE", "e": "TYPE", "d": "DOMAIN", "r-type": "TYPE"}


@dataclass(frozen=True)
class Snapshot:
    url: str
    existed: bool = True  # SQLite: whether the file was there
    schemas: frozenset[str] = field(default_factory=frozenset)
    relations: frozenset[tuple[str, str, str]] = field(default_factory=frozenset)
    functions: frozenset[str] = field(default_factory=frozenset)


def snapshot_to_json(before: Snapshot) -> dict[str, Any]:
    """A snapshot as JSON, without its URL (which may carry a password): whoever
    reads it back knows the URL from the same settings."""
    return {"existed": before.existed, "schemas": sorted(before.schemas),
            "relations": sorted(list(r) for r in before.relations), "functions": sorted(before.functions)}


def snapshot_from_json(url: str, data: dict[str, Any]) -> Snapshot:
    return Snapshot(url, existed=bool(data["existed"]), schemas=frozenset(map(str, data["schemas"])),
                    relations=frozenset((str(a), str(b), str(c)) for a, b, c in data["relations"]),
                    functions=frozenset(map(str, data["functions"])))


def snapshot(url: str) -> Snapshot:
    """The schema objects `url`'s database holds now."""
    if is_postgres(url):
        import psycopg

        with psycopg.connect(url, connect_timeout=10) as conn:
            return Snapshot(
                url,
                schemas=frozenset(row[0] for row in conn.execute(_PG_SCHEMAS)),
                relations=frozenset(
                    [(row[0], row[1], row[2]) for row in conn.execute(_PG_RELATIONS)]
                    + [(row[0], row[1], _type_kind(row[2])) for row in conn.execute(_PG_TYPES)]
                ),
                functions=frozenset(row[0] for row in conn.execute(_PG_FUNCTIONS)),
            )
    path = sqlite_path(url)
    if not os.path.exists(path):
        return Snapshot(url, existed=False)
    with _sqlite(path) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return Snapshot(url, relations=frozenset(("main", row[0], "r") for row in tables))


def _type_kind(typtype: str) -> str:
    # A range type's letter is a table's in pg_class: keep them apart.
    return "r-type" if typtype == "r" else typtype


def undo(before: Snapshot) -> None:
    """Drop every schema object made in the database since `before` was taken."""
    if is_postgres(before.url):
        _undo_postgres(before)
        return
    path = sqlite_path(before.url)
    if not before.existed:
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        return
    with _sqlite(path) as conn:
        now = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for name in sorted(now - {name for _, name, _ in before.relations}):
            conn.execute(f'DROP TABLE IF EXISTS "{name}"')  # a name read from sqlite_master


def _undo_postgres(before: Snapshot) -> None:
    import psycopg
    from psycopg import sql

    after = snapshot(before.url)
    with psycopg.connect(before.url, connect_timeout=10) as conn:
        with conn.transaction():
            for schema in sorted(after.schemas - before.schemas):
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            new = sorted(r for r in after.relations - before.relations if r[0] in before.schemas)
            # Tables first: their CASCADE takes their views, triggers and owned sequences;
            # then what is left (types, sequences of their own), each if still there.
            for schema, name, kind in sorted(new, key=lambda r: (_DROP_KIND[r[2]] != "TABLE", r)):
                statement: Any = sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
                    sql.SQL(_DROP_KIND[kind]), sql.Identifier(schema, name))
                conn.execute(statement)
            remaining = snapshot_functions(conn)
            for signature in sorted((remaining - before.functions)):
                # A regprocedure's text is already a quoted, qualified signature.
                conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {} CASCADE").format(sql.SQL(signature)))


def snapshot_functions(conn: Any) -> frozenset[str]:
    return frozenset(row[0] for row in conn.execute(_PG_FUNCTIONS))


class _sqlite:
    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path)

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.conn.commit()
        self.conn.close()
