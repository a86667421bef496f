"""What an attacker with direct database access does to the raw event store.

Every change here bypasses the append-only triggers the way such a person would:
on SQLite by dropping them, on PostgreSQL by disabling them as the table owner (or
a superuser). Nothing goes through Strongroom's code; only `row_hash` is borrowed
for the attacker who is careful enough to recompute the chain after a change (the
v2 way, with the metadata digest from the state's clear header, as the stores do).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import psycopg

from infrastructure.audit.chain import NO_METADATA, epoch_micros, meta_digest_of_state, row_hash, state_digest

# The library names the table after the application on PostgreSQL only.
EVENTS = {"sqlite": "stored_events", "postgres": "strongroom_events"}
CHECKPOINTS = "audit_checkpoints"


class RawStore:
    """Direct SQL on the store at `database_url`, triggers out of the way."""

    def __init__(self, database_url: str, table: str | None = None) -> None:
        self.url = database_url
        self.postgres = urlsplit(database_url).scheme.startswith("postgres")
        self.table = table or EVENTS["postgres" if self.postgres else "sqlite"]
        self.pos = "notification_id" if self.postgres else "rowid"

    @contextmanager
    def connection(self) -> Iterator[Any]:
        if self.postgres:
            with psycopg.connect(self.url) as conn:
                for table in (self.table, CHECKPOINTS):
                    conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
                yield conn
                for table in (self.table, CHECKPOINTS):
                    conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        else:
            conn = sqlite3.connect(urlsplit(self.url).path)
            try:
                for table in (self.table, CHECKPOINTS):
                    for action in ("update", "delete"):
                        conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
                yield conn
                conn.commit()
            finally:
                conn.close()

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s").replace("{pos}", self.pos) if self.postgres else statement.replace("{pos}", self.pos)

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.connection() as conn:
            cur = conn.execute(self._sql(statement), tuple(params))
            return list(cur.fetchall()) if cur.description else []

    # -- reading ------------------------------------------------------------------------

    def positions(self) -> list[int]:
        return [r[0] for r in self.execute(f"SELECT {{pos}} FROM {self.table} ORDER BY {{pos}}")]

    def position_of(self, stream_id: str, version: int = 1) -> int:
        import uuid

        stored = stream_id if self.postgres else uuid.UUID(stream_id).hex
        (found,) = self.execute(
            f"SELECT {{pos}} FROM {self.table} WHERE originator_id = ? AND originator_version = ?",
            (stored, version),
        )
        return int(found[0])

    def row(self, position: int) -> dict[str, Any]:
        (r,) = self.execute(
            "SELECT {pos}, originator_id, originator_version, topic, state, recorded_at, prev_hash, row_hash "
            f"FROM {self.table} WHERE {{pos}} = ?",
            (position,),
        )
        keys = ("position", "originator_id", "originator_version", "topic", "state", "recorded_at", "prev_hash", "row_hash")
        return dict(zip(keys, r, strict=True))

    # -- the attacks ----------------------------------------------------------------------

    def flip_byte(self, position: int, offset: int = -5) -> None:
        state = bytearray(self.row(position)["state"])
        state[offset] ^= 0x01
        self.execute(f"UPDATE {self.table} SET state = ? WHERE {{pos}} = ?", (bytes(state), position))

    def shift_recorded_at(self, position: int, by: timedelta = timedelta(seconds=-1)) -> None:
        stamp = self.row(position)["recorded_at"]
        if self.postgres:
            self.execute(f"UPDATE {self.table} SET recorded_at = ? WHERE {{pos}} = ?", (stamp + by, position))
        else:
            moved = (datetime.fromisoformat(stamp) + by).isoformat(timespec="microseconds")
            self.execute(f"UPDATE {self.table} SET recorded_at = ? WHERE {{pos}} = ?", (moved, position))

    def delete(self, position: int) -> None:
        self.execute(f"DELETE FROM {self.table} WHERE {{pos}} = ?", (position,))

    def truncate_after(self, position: int) -> None:
        self.execute(f"DELETE FROM {self.table} WHERE {{pos}} > ?", (position,))

    def swap(self, a: int, b: int) -> None:
        """Reorder two rows: each takes the other's position."""
        with self.connection() as conn:
            for statement, params in (
                (f"UPDATE {self.table} SET {{pos}} = ? WHERE {{pos}} = ?", (-1, a)),
                (f"UPDATE {self.table} SET {{pos}} = ? WHERE {{pos}} = ?", (a, b)),
                (f"UPDATE {self.table} SET {{pos}} = ? WHERE {{pos}} = ?", (b, -1)),
            ):
                conn.execute(self._sql(statement), params)

    def insert_after(self, position: int) -> None:
        """Slip a forged row in after `position`, shifting the rows behind it up by one.

        The forgery is careful: its own prev_hash and row_hash are correct for its
        place (it copies the ciphertext of the row before, under a new version).
        """
        before = self.row(position)
        stream_id = self._stream_id(before["originator_id"])
        version = before["originator_version"] + 1000
        stamp = before["recorded_at"]
        micros = epoch_micros(stamp if self.postgres else datetime.fromisoformat(stamp))
        forged_hash = row_hash(
            bytes(before["row_hash"]), position + 1, stream_id, version, before["topic"], micros,
            state_digest(bytes(before["state"])), meta_digest_of_state(bytes(before["state"])) or NO_METADATA,
        )
        with self.connection() as conn:
            for statement, params in (
                (f"UPDATE {self.table} SET {{pos}} = -{{pos}} WHERE {{pos}} > ?", (position,)),
                (f"UPDATE {self.table} SET {{pos}} = 1 - {{pos}} WHERE {{pos}} < 0", ()),
                (
                    f"INSERT INTO {self.table} ({{pos}}, originator_id, originator_version, topic, state, "
                    "recorded_at, prev_hash, row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (position + 1, before["originator_id"], version, before["topic"], before["state"],
                     stamp, before["row_hash"], forged_hash),
                ),
            ):
                conn.execute(self._sql(statement), params)

    def rewrite_and_rechain(self, position: int) -> None:
        """Change a row's ciphertext and recompute every hash from there to the head,
        so that links and contents all agree again (only a checkpoint can tell)."""
        self.flip_byte(position)
        prev = bytes(self.row(position)["prev_hash"])
        rows = [self.row(p) for p in self.positions() if p >= position]
        with self.connection() as conn:
            for r in rows:
                p = r["position"]
                stamp = r["recorded_at"]
                micros = epoch_micros(stamp if self.postgres else datetime.fromisoformat(stamp))
                new_hash = row_hash(
                    prev, p, self._stream_id(r["originator_id"]), r["originator_version"], r["topic"],
                    micros, state_digest(bytes(r["state"])), meta_digest_of_state(bytes(r["state"])) or NO_METADATA,
                )
                conn.execute(
                    self._sql(f"UPDATE {self.table} SET prev_hash = ?, row_hash = ? WHERE {{pos}} = ?"),
                    (prev, new_hash, p),
                )
                prev = new_hash

    def tamper_checkpoint(self, position: int, column: str) -> None:
        """Flip one bit of a stored checkpoint's `signature` or `head_hash`."""
        (value,) = self.execute(f"SELECT {column} FROM {CHECKPOINTS} WHERE position = ?", (position,))[0]
        changed = bytearray(value)
        changed[0] ^= 0x01
        self.execute(f"UPDATE {CHECKPOINTS} SET {column} = ? WHERE position = ?", (bytes(changed), position))

    def delete_checkpoints(self) -> None:
        self.execute(f"DELETE FROM {CHECKPOINTS}")

    def delete_checkpoints_after(self, position: int) -> None:
        """Cut the checkpoint table back with the log, so it no longer names the lost tail."""
        self.execute(f"DELETE FROM {CHECKPOINTS} WHERE position > ?", (position,))

    def _stream_id(self, stored: Any) -> str:
        import uuid

        return str(stored) if self.postgres else str(uuid.UUID(stored))
