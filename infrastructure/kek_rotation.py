"""KEK rotation into a PKCS#11 token (`strongroom keys rotate-kek`, R1.4).

Order, chosen so that a run killed at any point can simply be run again:

1. Open the target token and find (or make, non-extractable) its KEK. A missing
   token or a wrong PIN stops here: nothing in the instance has changed.
2. If the key store's check value already unwraps under the target KEK, an earlier
   run committed and was killed before step 4: skip to it.
3. Otherwise unlock the store with the current KEK (a wrong one stops here) and
   re-wrap every data key under the target in ONE transaction (KeyRing.rotate_kek):
   killed inside it, the database rolls it back and the old KEK still opens the store.
4. Point the instance's `strongroom.json` at the token (written to a temporary file
   and renamed over the old one, so it is never half-written).

Events are not touched: they are encrypted under the data keys, which do not change.
The old KEK file is left where it is (backups made before the rotation need it to be
restored); the operator moves it offline, out of the instance folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infrastructure.composition import CONFIG_FILE, KEYS_SCHEMA, Settings, load_kek
from infrastructure.crypto.kek import KekError
from infrastructure.crypto.keyring import KeyRing, kek_unlocks
from infrastructure.crypto.keystore import KeyStore
from infrastructure.crypto.pkcs11_token import Pkcs11Kek, Pkcs11Token, TokenConfig
from infrastructure.sql import Database, is_postgres


@dataclass(frozen=True)
class Rotation:
    """What a rotation did: how many keys it re-wrapped, or that it only finished one."""

    old_kek_id: str | None
    new_kek_id: str
    rewrapped: int
    resumed: bool


def token_settings(target: TokenConfig) -> dict[str, Any]:
    """The settings that point an instance at `target` (the PIN is not one of them)."""
    return {"key_provider": "pkcs11", "pkcs11_module": target.module,
            "pkcs11_token_label": target.token_label, "pkcs11_kek_label": target.kek_label,
            "pkcs11_signing_key_label": target.signing_key_label}


def rotate_kek_into_token(settings: Settings, target: TokenConfig,
                          extra_settings: dict[str, Any] | None = None) -> Rotation:
    """Re-wrap every data key under the KEK in `target` and point the instance at it
    (with `extra_settings` too, e.g. the target's PIN file)."""
    new_kek = Pkcs11Kek(Pkcs11Token(target), create=True)
    try:
        keys_db = Database.connect(settings.keys_database_url, timeout=settings.request_deadline_seconds,
                                   schema=KEYS_SCHEMA if is_postgres(settings.keys_database_url) else None)
        try:
            rotation = _rewrap(settings, KeyStore(keys_db), new_kek)
        finally:
            keys_db.close()
    finally:
        new_kek.close()
    write_settings(settings.instance, {**token_settings(target), **(extra_settings or {})})
    return rotation


def _rewrap(settings: Settings, store: KeyStore, new_kek: Pkcs11Kek) -> Rotation:
    if store.canary() is None:
        raise KekError("the key store has no KEK check value: run `strongroom init` first")
    if kek_unlocks(store, new_kek):
        return Rotation(None, new_kek.kek_id, 0, resumed=True)
    old_kek = load_kek(settings)
    try:
        keyring = KeyRing(store, old_kek, cache_seconds=0)
        keyring.check_kek()  # the current KEK must open the store: nothing is guessed
        count = keyring.rotate_kek(new_kek)
    finally:
        if isinstance(old_kek, Pkcs11Kek):
            old_kek.close()
    return Rotation(old_kek.kek_id, new_kek.kek_id, count, resumed=False)


def write_settings(instance: Path, updates: dict[str, Any]) -> None:
    """Merge `updates` into `<instance>/strongroom.json`, atomically."""
    path = instance / CONFIG_FILE
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(updates)
    temporary = path.with_name(f".{CONFIG_FILE}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(current, indent=2))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
