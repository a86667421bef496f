"""The key store's own backup (R4.2) and its restore under the erasure ledger (R4.6).

What travels: wrapped data keys (never an unwrapped one: each is AES-GCM-wrapped by
the KEK, bound to its subject and kind, so a copy of this file without the KEK is
useless, and a key moved onto another subject fails to unwrap), the KEK check
value, and the erasure ledger (`destroyed_keys`).

On restore the ledger wins over the keys: a key listed as destroyed, in the backup's
ledger or in the live one, is never written back. A customer erased after the
backup was taken therefore stays erased when it is restored.

Incremental key backups (issue 15 item 5): a backup whose target already holds a
key backup of this store copies only what changed since that one, the wrapped keys
created and the ledger entries added, found exactly rather than by clock (keys are
made on several hosts whose clocks differ, and a slow transaction can commit a key
stamped before the last backup read the store). Each export carries a *mark* of
what it saw:

* PostgreSQL: the MVCC snapshot taken before its reads (`pg_current_snapshot()`);
  a row changed since is one whose `xmin` that snapshot does not see. A key that
  committed while the export read is copied twice, never missed; a rewrap (KEK
  rotation) rewrites every row, so every row is copied again.
* SQLite: one writer at a time and a read transaction that is a snapshot; the mark
  is the highest rowid of each table and the key at it. Later rows have higher
  rowids as long as that row is still where it was: if it was deleted (the newest
  key destroyed) the rowids may be reused, so the mark no longer holds and the
  backup copies everything (`MarkLost`).

A restore applies the full export and then each change set in order; the ledger
still wins (a key destroyed in any of them, or in the live ledger, stays destroyed).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from infrastructure.crypto.keystore import KeyStore

KEYS_SEGMENT = "keys.seg"
GENERATIONS_SUBJECT = "key-backup-generations"  # generations.GENERATIONS_SUBJECT


class MarkLost(Exception):
    """The previous export's mark no longer tells new rows from old: copy everything."""


def _sqlite_mark(cur: Any, table: str) -> list[Any]:
    cur.execute(f"SELECT rowid, subject_id, kind FROM {table} ORDER BY rowid DESC LIMIT 1")  # nosec B608 - table names are constants
    row = cur.fetchone()
    return [0, None, None] if row is None else [int(row[0]), str(row[1]), str(row[2])]


def _take_mark(cur: Any, dialect: str) -> dict[str, Any]:
    """What this read of the store saw, for the next export to start after."""
    if dialect == "postgres":
        cur.execute("SELECT pg_current_snapshot()::text")
        return {"dialect": dialect, "snapshot": str(cur.fetchone()[0])}
    return {"dialect": dialect, "data_keys": _sqlite_mark(cur, "data_keys"),
            "destroyed_keys": _sqlite_mark(cur, "destroyed_keys")}


# The 32-bit xmin of a row as a 64-bit xid in the current epoch (rows changed since a
# mark are fewer than 2^31 transactions old); an older frozen row may come out new,
# which copies it again, never the other way round.
_XMIN8 = ("(CASE WHEN ((c.x >> 32) << 32 | t.xmin::text::bigint) > c.x"
          " THEN ((c.x >> 32) << 32 | t.xmin::text::bigint) - 4294967296"
          " ELSE ((c.x >> 32) << 32 | t.xmin::text::bigint) END)::text::xid8")
_CHANGED_SINCE = {
    "postgres": (f", (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS x) c"
                 f" WHERE NOT pg_visible_in_snapshot({_XMIN8}, ?::pg_snapshot)"),
    "sqlite": " WHERE t.rowid > ?",
}


def _since(cur: Any, dialect: str, mark: dict[str, Any], table: str) -> Any:
    """The parameter selecting `table`'s rows changed since `mark`; MarkLost if it cannot."""
    if mark.get("dialect") != dialect:
        raise MarkLost("the previous key backup came from another kind of store")
    if dialect == "postgres":
        cur.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        if int(cur.fetchone()[0]) < int(str(mark["snapshot"]).split(":")[1]):
            raise MarkLost("transaction ids went backwards: the key store is another cluster")
        return mark["snapshot"]
    rowid, subject_id, kind = mark[table]
    if rowid:
        cur.execute(f"SELECT subject_id, kind FROM {table} WHERE rowid = ?", (rowid,))  # nosec B608 - table names are constants
        row = cur.fetchone()
        if row is None or [str(row[0]), str(row[1])] != [subject_id, kind]:
            raise MarkLost(f"the newest row of {table} at the previous key backup is gone")
    return rowid


def export_key_changes(store: KeyStore, mark: dict[str, Any]) -> dict[str, Any]:
    """The wrapped keys created and the ledger entries added since `mark`, with the
    KEK check values (a handful) and this read's own mark. Raises MarkLost when only
    a full export is exact."""
    dialect = store.db.dialect
    with store.db.transaction(write=False) as cur:
        new_mark = _take_mark(cur, dialect)  # first: what commits during the reads is copied again next time
        where = _CHANGED_SINCE[dialect]
        cur.execute("SELECT t.subject_id, t.kind, t.wrapped, t.kek_id, t.created_at FROM data_keys t"  # nosec B608
                    f"{where} AND t.subject_id <> ? ORDER BY t.subject_id, t.kind",
                    (_since(cur, dialect, mark, "data_keys"), GENERATIONS_SUBJECT))
        data_keys = [[s, k, base64.b64encode(bytes(w)).decode(), kek, created] for s, k, w, kek, created in cur.fetchall()]
        cur.execute("SELECT t.subject_id, t.kind, t.destroyed_at FROM destroyed_keys t"  # nosec B608
                    f"{where} ORDER BY t.subject_id, t.kind", (_since(cur, dialect, mark, "destroyed_keys"),))
        ledger = [list(row) for row in cur.fetchall()]
        cur.execute("SELECT kek_id, canary, created_at FROM kek_check")
        checks = [[kek, base64.b64encode(bytes(c)).decode(), at] for kek, c, at in cur.fetchall()]
    return {"data_keys": data_keys, "destroyed_keys": ledger, "kek_check": checks, "mark": new_mark}


def merge_key_exports(exports: list[dict[str, Any]]) -> dict[str, Any]:
    """A full export followed by change sets, oldest first, as one export: a key later
    destroyed leaves with its ledger entry (import_keys withholds it)."""
    keys: dict[tuple[str, str], list[Any]] = {}
    ledger: dict[tuple[str, str], Any] = {}
    checks: list[Any] = []
    for exported in exports:
        for row in exported.get("data_keys", []):
            keys[(row[0], row[1])] = row
        for s, k, at in exported.get("destroyed_keys", []):
            ledger.setdefault((s, k), at)
        checks = exported.get("kek_check", checks)
    return {"data_keys": [keys[key] for key in sorted(keys)],
            "destroyed_keys": [[s, k, at] for (s, k), at in sorted(ledger.items())], "kek_check": checks}


def export_keys(store: KeyStore) -> dict[str, Any]:
    """One consistent read of the whole key store, with its mark."""
    with store.db.transaction(write=False) as cur:
        mark = _take_mark(cur, store.db.dialect)
        # Generation keys stay in the live store: a backup that held its own (or an
        # older one's) would outlive their expiry (infrastructure/backup/generations.py).
        cur.execute("SELECT subject_id, kind, wrapped, kek_id, created_at FROM data_keys WHERE subject_id <> ?"
                    " ORDER BY subject_id, kind", (GENERATIONS_SUBJECT,))
        data_keys = [
            [s, k, base64.b64encode(bytes(w)).decode(), kek, created]
            for s, k, w, kek, created in cur.fetchall()
        ]
        cur.execute("SELECT subject_id, kind, destroyed_at FROM destroyed_keys ORDER BY subject_id, kind")
        ledger = [list(row) for row in cur.fetchall()]
        cur.execute("SELECT kek_id, canary, created_at FROM kek_check")
        checks = [[kek, base64.b64encode(bytes(c)).decode(), at] for kek, c, at in cur.fetchall()]
    return {"data_keys": data_keys, "destroyed_keys": ledger, "kek_check": checks, "mark": mark}


@dataclass(frozen=True)
class KeysRestored:
    restored: int
    withheld: int  # keys in the backup that the erasure ledger keeps destroyed
    ledger: int


def import_keys(store: KeyStore, exported: dict[str, Any], live_ledger: Iterable[tuple[str, str, str]]) -> KeysRestored:
    """Write a key backup into an empty key store, minus every destroyed key."""
    ledger = {(s, k): at for s, k, at in exported.get("destroyed_keys", [])}
    for s, k, at in live_ledger:
        ledger.setdefault((s, k), at)
    store.create_tables()
    restored = withheld = 0
    with store.db.transaction() as cur:
        cur.execute("SELECT COUNT(*) FROM data_keys")
        if int(cur.fetchone()[0]):
            raise ValueError("the target key store already holds keys; restore needs an empty one")
        cur.executemany(
            "INSERT INTO destroyed_keys (subject_id, kind, destroyed_at) VALUES (?, ?, ?)"
            " ON CONFLICT (subject_id, kind) DO NOTHING",
            [(s, k, at) for (s, k), at in sorted(ledger.items())],
        )
        rows = []
        for subject_id, kind, wrapped, kek_id, created_at in exported.get("data_keys", []):
            if (subject_id, kind) in ledger:
                withheld += 1  # erasure is never undone (R4.6)
                continue
            rows.append((subject_id, kind, base64.b64decode(wrapped), kek_id, created_at))
        cur.executemany(
            "INSERT INTO data_keys (subject_id, kind, wrapped, kek_id, created_at) VALUES (?, ?, ?, ?, ?)", rows
        )
        restored = len(rows)
        cur.execute("DELETE FROM kek_check")
        cur.executemany(
            "INSERT INTO kek_check (kek_id, canary, created_at) VALUES (?, ?, ?)",
            [(kek, base64.b64decode(c), at) for kek, c, at in exported.get("kek_check", [])],
        )
    return KeysRestored(restored=restored, withheld=withheld, ledger=len(ledger))


def apply_ledger(store: KeyStore, ledger: Iterable[tuple[str, str, str]]) -> int:
    """Destroy in `store` every key the ledger lists (after a restore); returns how many."""
    wanted = {(s, k) for s, k, _ in ledger}
    present = {(key.subject_id, key.kind) for key in store.all_keys()}
    count = 0
    for subject_id, kind in sorted(wanted & present):
        store.destroy(subject_id, [kind])
        count += 1
    for subject_id, kind in sorted(wanted - present):
        if not store.is_destroyed(subject_id, kind):
            store.destroy(subject_id, [kind])  # enter it in the ledger: never re-created
    return count
