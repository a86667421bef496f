"""Where wrapped data keys live: apart from the events (R1.1, R4.2).

On SQLite the key store is its own file (`keys.sqlite`), on PostgreSQL its own
schema, so a copy of the event tables alone holds no key, wrapped or not. The
`destroyed_keys` table is the erasure ledger: once a (subject, kind) is in it, no
key for that pair can be created again, so a destroyed key never comes back (R4.6).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from application.clock import utc_now
from infrastructure.sql import Cursor, Database, lock_schema_changes

LEDGER_CHANNEL = "strongroom_keys_destroyed"  # ledger_watch.CHANNEL

_BLOB = {"sqlite": "BLOB", "postgres": "BYTEA"}


class KeyRotationRaced(Exception):
    """Keys were written under the old KEK while a rotation ran; it was rolled back."""


@dataclass(frozen=True)
class WrappedKey:
    subject_id: str
    kind: str
    wrapped: bytes
    kek_id: str


def _now() -> str:
    return utc_now().isoformat(timespec="microseconds")


class KeyStore:
    """Rows of wrapped data keys, the erasure ledger, and the KEK check value."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def create_tables(self) -> None:
        blob = _BLOB[self.db.dialect]
        with self.db.transaction() as cur:
            lock_schema_changes(cur, self.db.dialect)
            cur.execute(
                "CREATE TABLE IF NOT EXISTS data_keys ("
                " subject_id TEXT NOT NULL, kind TEXT NOT NULL,"
                f" wrapped {blob} NOT NULL, kek_id TEXT NOT NULL,"
                " created_at TEXT NOT NULL, PRIMARY KEY (subject_id, kind))"
            )
            cur.execute(
                "CREATE TABLE IF NOT EXISTS destroyed_keys ("
                " subject_id TEXT NOT NULL, kind TEXT NOT NULL,"
                " destroyed_at TEXT NOT NULL, PRIMARY KEY (subject_id, kind))"
            )
            cur.execute(
                "CREATE TABLE IF NOT EXISTS kek_check ("
                f" kek_id TEXT PRIMARY KEY, canary {blob} NOT NULL, created_at TEXT NOT NULL)"
            )

    # -- reads ---------------------------------------------------------------------

    def get(self, subject_id: str, kind: str) -> WrappedKey | None:
        with self.db.transaction(write=False) as cur:
            return self._get(cur, subject_id, kind)

    @staticmethod
    def _get(cur: Cursor, subject_id: str, kind: str) -> WrappedKey | None:
        cur.execute(
            "SELECT wrapped, kek_id FROM data_keys WHERE subject_id = ? AND kind = ?",
            (subject_id, kind),
        )
        row = cur.fetchone()
        return None if row is None else WrappedKey(subject_id, kind, bytes(row[0]), row[1])

    def is_destroyed(self, subject_id: str, kind: str) -> bool:
        with self.db.transaction(write=False) as cur:
            return self._is_destroyed(cur, subject_id, kind)

    @staticmethod
    def _is_destroyed(cur: Cursor, subject_id: str, kind: str) -> bool:
        cur.execute(
            "SELECT 1 FROM destroyed_keys WHERE subject_id = ? AND kind = ?",
            (subject_id, kind),
        )
        return cur.fetchone() is not None

    def destroyed(self) -> list[tuple[str, str, str]]:
        """The erasure ledger: (subject_id, kind, destroyed_at) for every destroyed key."""
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT subject_id, kind, destroyed_at FROM destroyed_keys ORDER BY destroyed_at")
            return [tuple(row) for row in cur.fetchall()]  # type: ignore[misc]

    def counts(self) -> dict[str, int]:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT kind, COUNT(*) FROM data_keys GROUP BY kind")
            counts = {f"active_{kind}": n for kind, n in cur.fetchall()}
            cur.execute("SELECT COUNT(*) FROM destroyed_keys")
            counts["destroyed"] = cur.fetchone()[0]
        return counts

    def all_keys(self) -> Iterator[WrappedKey]:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT subject_id, kind, wrapped, kek_id FROM data_keys")
            rows = cur.fetchall()
        for subject_id, kind, wrapped, kek_id in rows:
            yield WrappedKey(subject_id, kind, bytes(wrapped), kek_id)

    def subjects_created_before(self, cutoff: str) -> dict[str, list[str]]:
        """Subjects with a key made before `cutoff` (ISO time), each with all its key kinds."""
        with self.db.transaction(write=False) as cur:
            cur.execute(
                "SELECT subject_id, kind FROM data_keys WHERE subject_id IN"
                " (SELECT subject_id FROM data_keys WHERE created_at < ?) ORDER BY subject_id, kind",
                (cutoff,),
            )
            rows = cur.fetchall()
        subjects: dict[str, list[str]] = {}
        for subject_id, kind in rows:
            subjects.setdefault(str(subject_id), []).append(str(kind))
        return subjects

    # -- writes --------------------------------------------------------------------

    def insert_all_if_absent(self, keys: list[WrappedKey]) -> dict[str, WrappedKey | None]:
        """Store one subject's keys in one transaction (one durable commit, not one
        per key); returns each kind's stored key, or None where the ledger says it
        was destroyed."""
        result: dict[str, WrappedKey | None] = {}
        with self.db.transaction() as cur:
            for key in keys:
                if self._is_destroyed(cur, key.subject_id, key.kind):
                    result[key.kind] = None
                    continue
                cur.execute(
                    "INSERT INTO data_keys (subject_id, kind, wrapped, kek_id, created_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (subject_id, kind) DO NOTHING",
                    (key.subject_id, key.kind, key.wrapped, key.kek_id, _now()),
                )
                result[key.kind] = self._get(cur, key.subject_id, key.kind)
        return result

    def insert_new(self, keys: list[WrappedKey]) -> None:
        """Store keys of brand-new subjects (random ids, never in the ledger) in one
        transaction: one durable commit for a whole made-ahead batch (issue 15)."""
        now = _now()
        with self.db.transaction() as cur:
            cur.executemany(
                "INSERT INTO data_keys (subject_id, kind, wrapped, kek_id, created_at) VALUES (?, ?, ?, ?, ?)",
                [(k.subject_id, k.kind, k.wrapped, k.kek_id, now) for k in keys],
            )

    def discard_unused(self, subject_ids: list[str], kinds: list[str]) -> None:
        """Delete made-ahead keys that were never handed out: no event was ever sealed
        under them, so there is nothing to enter in the erasure ledger."""
        with self.db.transaction() as cur:
            cur.executemany(
                "DELETE FROM data_keys WHERE subject_id = ? AND kind = ?",
                [(subject_id, kind) for subject_id in subject_ids for kind in kinds],
            )

    def get_many(self, subject_ids: list[str], kind: str) -> dict[str, WrappedKey]:
        """The `kind` keys of several subjects in one query (absent ones left out)."""
        if not subject_ids:
            return {}
        marks = ", ".join("?" for _ in subject_ids)
        with self.db.transaction(write=False) as cur:
            cur.execute(
                f"SELECT subject_id, wrapped, kek_id FROM data_keys WHERE kind = ? AND subject_id IN ({marks})",  # nosec B608
                (kind, *subject_ids),
            )
            rows = cur.fetchall()
        return {sid: WrappedKey(sid, kind, bytes(wrapped), kek_id) for sid, wrapped, kek_id in rows}

    def get_kinds(self, subject_ids: list[str], kinds: list[str]) -> dict[tuple[str, str], WrappedKey]:
        """Several subjects' keys of several kinds in one query, by (subject, kind)
        (absent ones left out): a search's candidates and their other keys (issue 15)."""
        if not subject_ids or not kinds:
            return {}
        subject_marks = ", ".join("?" for _ in subject_ids)
        kind_marks = ", ".join("?" for _ in kinds)
        with self.db.transaction(write=False) as cur:
            cur.execute(
                "SELECT subject_id, kind, wrapped, kek_id FROM data_keys"  # nosec B608 - placeholders only
                f" WHERE subject_id IN ({subject_marks}) AND kind IN ({kind_marks})",
                (*subject_ids, *kinds),
            )
            rows = cur.fetchall()
        return {(sid, kind): WrappedKey(sid, kind, bytes(wrapped), kek_id) for sid, kind, wrapped, kek_id in rows}

    def destroy(self, subject_id: str, kinds: list[str]) -> list[str]:
        """Delete the wrapped keys and enter them in the ledger, in one transaction."""
        destroyed = []
        with self.db.transaction() as cur:
            for kind in kinds:
                cur.execute(
                    "DELETE FROM data_keys WHERE subject_id = ? AND kind = ?", (subject_id, kind)
                )
                cur.execute(
                    "INSERT INTO destroyed_keys (subject_id, kind, destroyed_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (subject_id, kind) DO NOTHING",
                    (subject_id, kind, _now()),
                )
                destroyed.append(kind)
            if self.db.dialect == "postgres":
                # Every other process's key cache drops its keys when this commits
                # (infrastructure/crypto/ledger_watch.py); SQLite readers poll the ledger.
                cur.execute("SELECT pg_notify(?, '')", (LEDGER_CHANNEL,))
        # A deleted row is not yet gone from disk (free pages, WAL frames, dead
        # tuples); reclaiming scrubs the last copy of the wrapped key.
        self.db.reclaim("data_keys")
        return destroyed

    def replace_all(self, keys: list[WrappedKey], kek_id: str, canary: bytes) -> None:
        """Swap every wrapped key and the check value at once (KEK rotation)."""
        with self.db.transaction() as cur:
            cur.executemany(
                "UPDATE data_keys SET wrapped = ?, kek_id = ? WHERE subject_id = ? AND kind = ?",
                [(k.wrapped, k.kek_id, k.subject_id, k.kind) for k in keys],
            )
            # A key made while the rotation read the others (a server left running)
            # would stay under the old KEK and be unreadable after: refuse, roll back.
            cur.execute("SELECT COUNT(*) FROM data_keys WHERE kek_id <> ?", (kek_id,))
            if cur.fetchone()[0]:
                raise KeyRotationRaced("data keys were added during the rotation: stop every "
                                       "server and worker, then run it again (nothing was changed)")
            cur.execute("DELETE FROM kek_check")
            cur.execute(
                "INSERT INTO kek_check (kek_id, canary, created_at) VALUES (?, ?, ?)",
                (kek_id, canary, _now()),
            )

    # -- the KEK check value ---------------------------------------------------------

    def canary(self) -> tuple[str, bytes] | None:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT kek_id, canary FROM kek_check")
            row = cur.fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def has_any_key(self) -> bool:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT 1 FROM data_keys LIMIT 1")
            return cur.fetchone() is not None

    def set_canary(self, kek_id: str, canary: bytes) -> None:
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO kek_check (kek_id, canary, created_at) VALUES (?, ?, ?)",
                (kek_id, canary, _now()),
            )
