"""The in-progress marker of a restore: a killed restore is never taken for a complete one (R7.6).

`restore` writes one row into `strongroom_restore_state` in the destination before
anything else (status `in_progress`, the backup, the position, when it started, the
key store it writes to, and the tables that were there before it began), and sets it
`complete` only once the events, checkpoints, keys and read models are all in.

A store whose marker says `in_progress` is refused by everything that would use it
(`build()`, hence `audit verify` and `serve`): its rows, keys or read models may stop
part-way, and verify would call a truncated log intact. A second restore into the
same destination starts over by itself: it drops every table the killed run made
(those not listed as there before), never one that was, and never anything in a
destination that holds no marker (the live store, or any other).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from application.clock import utc_now
from infrastructure.sql import Database, lock_schema_changes

TABLE = "strongroom_restore_state"
IN_PROGRESS, COMPLETE = "in_progress", "complete"


class RestoreIncomplete(Exception):
    """The store is the destination of a restore that never finished."""


@dataclass(frozen=True)
class RestoreMarker:
    status: str
    backup_id: str
    position: int | None
    started_at: str
    completed_at: str | None
    keys_store: list[str]
    tables_before: list[str]
    keys_tables_before: list[str]


def tables(db: Database) -> list[str]:
    """The tables in `db`'s own schema (SQLite: its file)."""
    with db.transaction(write=False) as cur:
        if db.dialect == "postgres":
            cur.execute("SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
        else:
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        return sorted(str(row[0]) for row in cur.fetchall())


def read_marker(db: Database) -> RestoreMarker | None:
    """The destination's marker, or None when it never was a restore's destination."""
    if TABLE not in tables(db):
        return None
    with db.transaction(write=False) as cur:
        cur.execute(f"SELECT status, detail FROM {TABLE} WHERE id = 1")  # nosec B608 - constant table name
        row = cur.fetchone()
    if row is None:
        return None
    detail: dict[str, Any] = json.loads(row[1])
    return RestoreMarker(status=str(row[0]), **detail)


def refuse_incomplete_restore(db: Database) -> None:
    """Raise RestoreIncomplete when `db` is a restore's destination that never finished."""
    path = getattr(db, "path", None)
    if db.dialect == "sqlite" and isinstance(path, str) and path != ":memory:" and not os.path.exists(path):
        return  # no file, no restore; and looking would create it before the KEK is checked
    marker = read_marker(db)
    if marker is not None and marker.status != COMPLETE:
        raise RestoreIncomplete(
            f"this store is an incomplete restore (of backup {marker.backup_id}, started "
            f"{marker.started_at}, never finished): its events, keys or read models may stop "
            "part-way; run the same `strongroom restore --into` again, which starts over"
        )


def begin(db: Database, *, backup_id: str, position: int | None, keys_store: list[str],
          tables_before: list[str], keys_tables_before: list[str]) -> None:
    """Write the marker `in_progress`: the first write a restore makes in its destination."""
    detail = {
        "backup_id": backup_id, "position": position,
        "started_at": utc_now().isoformat(timespec="seconds"), "completed_at": None,
        "keys_store": keys_store, "tables_before": tables_before, "keys_tables_before": keys_tables_before,
    }
    with db.transaction() as cur:
        lock_schema_changes(cur, db.dialect)
        cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY, status TEXT NOT NULL, "
                    "detail TEXT NOT NULL)")
        cur.execute(f"DELETE FROM {TABLE}")  # nosec B608 - constant table name
        cur.execute(f"INSERT INTO {TABLE} (id, status, detail) VALUES (1, ?, ?)",  # nosec B608
                    (IN_PROGRESS, json.dumps(detail)))


def complete(db: Database, *, position: int) -> None:
    """Mark the restore complete: the last write it makes."""
    marker = read_marker(db)
    assert marker is not None  # noqa: S101 - begin() wrote it
    detail = {
        "backup_id": marker.backup_id, "position": position, "started_at": marker.started_at,
        "completed_at": utc_now().isoformat(timespec="seconds"), "keys_store": marker.keys_store,
        "tables_before": marker.tables_before, "keys_tables_before": marker.keys_tables_before,
    }
    with db.transaction() as cur:
        cur.execute(f"UPDATE {TABLE} SET status = ?, detail = ? WHERE id = 1",  # nosec B608
                    (COMPLETE, json.dumps(detail)))


def drop_made_since(db: Database, before: list[str]) -> list[str]:
    """Drop every table in `db` not in `before` (except the marker): what a killed run made."""
    made = [name for name in tables(db) if name not in before and name != TABLE]
    with db.transaction() as cur:
        for name in made:
            quoted = '"' + name.replace('"', '""') + '"'
            suffix = " CASCADE" if db.dialect == "postgres" else ""
            cur.execute(f"DROP TABLE IF EXISTS {quoted}{suffix}")  # nosec B608 - a name read from the catalogue, quoted
    return made
