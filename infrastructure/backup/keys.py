"""The key store's own backup (R4.2) and its restore under the erasure ledger (R4.6).

What travels: wrapped data keys (never an unwrapped one: each is AES-GCM-wrapped by
the KEK, bound to its subject and kind, so a copy of this file without the KEK is
useless, and a key moved onto another subject fails to unwrap), the KEK check
value, and the erasure ledger (`destroyed_keys`).

On restore the ledger wins over the keys: a key listed as destroyed, in the backup's
ledger or in the live one, is never written back. A customer erased after the
backup was taken therefore stays erased when it is restored.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from infrastructure.crypto.keystore import KeyStore

KEYS_SEGMENT = "keys.seg"
GENERATIONS_SUBJECT = "key-backup-generations"  # generations.GENERATIONS_SUBJECT


def export_keys(store: KeyStore) -> dict[str, Any]:
    """One consistent read of the whole key store."""
    with store.db.transaction(write=False) as cur:
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
    return {"data_keys": data_keys, "destroyed_keys": ledger, "kek_check": checks}


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
