"""Key backups that expire (R4.2, R4.6, issue 13 item 6): one generation key each.

The attack this stops: every key backup taken before an erasure still holds the
erased customer's wrapped keys, so an operator with an old `keys.seg` and the KEK
could unwrap them and open the customer's events, for ever. Now each key backup's
contents are sealed (AES-256-GCM) under a generation key of its own: a random key
made for that backup, wrapped by the KEK and kept in the live key store (subject
`GENERATIONS_SUBJECT`), never in any backup. Key backups are kept
`key_backup_retention_days` (35 by default); when a generation expires, its key is
destroyed (entered in the erasure ledger like any key) and its `keys.seg` removed
from every target. From then on no copy of that key backup opens, with the KEK or
without, wherever a copy went. So an erasure is complete in backups once the last
generation taken before it has expired: the erasure certificate states that date.

A restore needs the live installation's generation key for the key backup it reads
(the restore runs with the live key ring, R4.3), which is there while it lives.
Key backups written before this change (plain JSON) are still read, and are pruned
by the same rule (their manifest's creation time plus the retention).

Sealed layout of `keys.seg` (JSON): {"format": SEALED_FORMAT, "generation":
backup_id, "nonce": b64, "ciphertext": b64}; the associated data binds the format
and the backup id, so a segment moved onto another backup fails to open.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from application.errors import SubjectErased
from infrastructure.backup.lock import TargetLock
from infrastructure.backup.manifest import KEYS, MANIFEST_SUFFIX, manifest_path, parse_manifest
from infrastructure.backup.targets import Target
from infrastructure.crypto.keyring import KeyRing

from infrastructure.backup.keys import GENERATIONS_SUBJECT  # noqa: E402 - one name, kept with the export
SEALED_FORMAT = "strongroom-sealed-keys/v1"
DEFAULT_RETENTION = timedelta(days=35)


class KeyBackupExpired(Exception):
    """A key backup whose generation key is gone (expired) or unknown here."""


def generation_kind(backup_id: str) -> str:
    return f"key-backup:{backup_id}"


def _aad(backup_id: str) -> bytes:
    return f"{SEALED_FORMAT}|{backup_id}".encode()


def seal_keys(keyring: KeyRing, backup_id: str, data: bytes) -> bytes:
    """`data` (the exported key store) sealed under a new generation key for `backup_id`."""
    aead = keyring.aead(GENERATIONS_SUBJECT, generation_kind(backup_id), create=True)
    nonce = os.urandom(12)
    sealed = aead.encrypt(nonce, data, _aad(backup_id))
    return json.dumps({"format": SEALED_FORMAT, "generation": backup_id,
                       "nonce": base64.b64encode(nonce).decode(),
                       "ciphertext": base64.b64encode(sealed).decode()}, separators=(",", ":")).encode()


def open_keys(keyring: KeyRing, data: bytes) -> dict[str, Any]:
    """The exported key store in a `keys.seg`; KeyBackupExpired when its generation
    key has been destroyed (or was never this installation's)."""
    document: dict[str, Any] = json.loads(data)
    if document.get("format") != SEALED_FORMAT:
        return document  # written before key backups were sealed
    backup_id = str(document["generation"])
    try:
        aead = keyring.aead(GENERATIONS_SUBJECT, generation_kind(backup_id))
    except SubjectErased:
        raise KeyBackupExpired(f"key backup {backup_id} has expired: its generation key was destroyed, "
                               "so it can no longer be opened (restore from a newer backup)") from None
    except KeyError:
        raise KeyBackupExpired(f"key backup {backup_id} was sealed under a generation key this "
                               "installation does not hold") from None
    opened: dict[str, Any] = json.loads(aead.decrypt(base64.b64decode(document["nonce"]),
                                                     base64.b64decode(document["ciphertext"]), _aad(backup_id)))
    return opened


def expires_at(created_at: str, retention: timedelta) -> datetime:
    created = datetime.fromisoformat(created_at)
    return (created if created.tzinfo else created.replace(tzinfo=UTC)) + retention


def expire_generations(keyring: KeyRing, retention: timedelta, now: datetime) -> list[str]:
    """Destroy every generation key older than `retention`; returns their backup ids."""
    with keyring.store.db.transaction(write=False) as cur:
        cur.execute("SELECT kind, created_at FROM data_keys WHERE subject_id = ? ORDER BY kind",
                    (GENERATIONS_SUBJECT,))
        rows = [(str(kind), str(created)) for kind, created in cur.fetchall()]
    expired = []
    for kind, created in rows:
        if expires_at(created, retention) <= now:
            keyring.destroy(GENERATIONS_SUBJECT, [kind])
            expired.append(kind.removeprefix("key-backup:"))
    return expired


def prune_key_backups(target: Target, retention: timedelta, now: datetime, *, wait: float = 0.0) -> list[str]:
    """Remove from `target` the contents of every key backup past its expiry (the
    signed manifest stays, as the record that it existed); returns their ids."""
    pruned = []
    with TargetLock(target, purpose="key backup prune", wait=wait) as lock:
        for name in target.list(KEYS):
            if not name.endswith(MANIFEST_SUFFIX):
                continue
            backup_id = name[: -len(MANIFEST_SUFFIX)]
            file = manifest_path(KEYS, backup_id)
            document = parse_manifest(file, target.read(file))
            ends = document.get("expires_at")
            until = datetime.fromisoformat(ends) if ends else expires_at(str(document["created_at"]), retention)
            if until > now or not target.list(f"{KEYS}/{backup_id}"):
                continue
            lock.confirm()
            target.remove_tree(f"{KEYS}/{backup_id}")
            pruned.append(backup_id)
    return pruned


def expire_key_backups(keyring: KeyRing, targets: list[Target], retention: timedelta,
                       now: datetime) -> dict[str, Any]:
    """Destroy the expired generation keys, then prune their key backups on every
    target (a target that cannot be reached now is pruned on the next run; its copy
    no longer opens in any case, its generation key being gone)."""
    expired = expire_generations(keyring, retention, now)
    pruned: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    for target in targets:
        try:
            pruned[target.name] = prune_key_backups(target, retention, now)
        except Exception as exc:  # noqa: BLE001 - one unreachable target must not stop the others
            failed[target.name] = type(exc).__name__
    return {"generations_expired": expired, "pruned": pruned, "failed": failed}
