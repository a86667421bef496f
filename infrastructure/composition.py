"""The one composition root (STYLE 7): settings in, a wired application out.

Settings come from defaults, then the instance folder's `strongroom.json`, then
`STRONGROOM_*` environment variables, then an explicit mapping. Nothing is built at
import time; the web app factory and the command line both call `build()`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from application.customers import Strongroom
from application.identity import Identity
from application.staff_admin import StaffAdministration
from infrastructure.audit.trail import AuditTrail
from infrastructure.crypto.blind_index import BlindIndex, bits_for
from infrastructure.crypto.envelope import SubjectMapper
from infrastructure.crypto.kek import KekError, KekProvider, LocalKek
from infrastructure.crypto.keyring import BLIND_INDEX_ROOT, SYSTEM_SUBJECT, KeyRing
from infrastructure.crypto.keystore import KeyStore
from infrastructure.eventstore import recorder_environment
from infrastructure.identity_store import IdentityStore, build_identity
from infrastructure.projection import CustomerProjection
from infrastructure.readmodel import CustomerDirectory, create_tables
from infrastructure.sql import Database, is_postgres

CONFIG_FILE = "strongroom.json"
KEK_FILE = "kek.key"
KEYS_SCHEMA = "strongroom_keys"


class ConfigurationError(Exception):
    """Settings that cannot work; the command line exits 2 with this message."""


@dataclass(frozen=True)
class Settings:
    instance: Path
    database_url: str
    keys_database_url: str
    key_provider: str = "local"
    projection: str = "inline"
    blind_index_bits: int = 14
    key_cache_seconds: float = 60.0
    environment: str = "development"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kek_path(self) -> Path:
        return self.instance / KEK_FILE

    @classmethod
    def load(cls, instance: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
        env = {k[len("STRONGROOM_"):].lower(): v for k, v in os.environ.items() if k.startswith("STRONGROOM_")}
        merged: dict[str, Any] = {}
        folder = Path(instance or env.get("instance") or "instance").resolve()
        config_file = folder / CONFIG_FILE
        if config_file.exists():
            try:
                merged.update(json.loads(config_file.read_text()))
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{config_file} is not valid JSON (line {exc.lineno})") from None
        merged.update(env)
        merged.update(overrides or {})
        database_url = merged.get("database_url") or f"sqlite:///{folder / 'strongroom.sqlite'}"
        keys_url = merged.get("keys_database_url") or (
            database_url if is_postgres(database_url) else f"sqlite:///{folder / 'keys.sqlite'}"
        )
        projection = merged.get("projection", "inline")
        if projection not in ("inline", "worker"):
            raise ConfigurationError("STRONGROOM_PROJECTION must be 'inline' or 'worker'")
        if projection == "worker" and not is_postgres(database_url):
            raise ConfigurationError("a separate projection worker needs PostgreSQL")
        try:
            bits = int(merged.get("blind_index_bits", bits_for(int(merged.get("expected_customers", 100_000)))))
            cache = float(merged.get("key_cache_seconds", 60.0))
        except ValueError:
            raise ConfigurationError("blind_index_bits and key_cache_seconds must be numbers") from None
        known = {"instance", "database_url", "keys_database_url", "key_provider", "projection",
                 "blind_index_bits", "key_cache_seconds", "environment", "expected_customers"}
        return cls(
            instance=folder,
            database_url=database_url,
            keys_database_url=keys_url,
            key_provider=merged.get("key_provider", "local"),
            projection=projection,
            blind_index_bits=bits,
            key_cache_seconds=cache,
            environment=merged.get("environment", "development"),
            extra={k: v for k, v in merged.items() if k not in known},
        )


def load_kek(settings: Settings) -> KekProvider:
    if settings.key_provider == "local":
        return LocalKek.load(settings.kek_path)
    raise ConfigurationError(f"unknown key provider {settings.key_provider!r} (expected 'local')")


@dataclass
class Components:
    settings: Settings
    app: Strongroom
    keyring: KeyRing
    directory: CustomerDirectory
    projection: CustomerProjection
    events_db: Database
    keys_db: Database
    # Chain checkpoints, verification and evidence (R3.3, R6.3): set by build().
    audit: AuditTrail = field(init=False)
    # Staff identity (R2.1-R2.4, R2.8, R2.9): set by build() once the app exists.
    identity: Identity = field(init=False)
    staff_admin: StaffAdministration = field(init=False)

    def close(self) -> None:
        self.audit.close()  # stops the checkpointer before the recorder closes
        self.app.close()
        self.events_db.close()
        self.keys_db.close()


def build(settings: Settings, *, kek: KekProvider | None = None, create_schema: bool = True) -> Components:
    """Wire the application; a wrong or missing KEK stops here and changes nothing (R1.4)."""
    kek = kek or load_kek(settings)
    # An application role that may not change the schema runs with create_schema
    # false (STRONGROOM_CREATE_SCHEMA=false); the owner creates it (`strongroom db roles`).
    create_schema = create_schema and str(settings.extra.get("create_schema", "true")).lower() not in ("false", "0", "no")
    keys_db = Database.connect(settings.keys_database_url, schema=KEYS_SCHEMA if is_postgres(settings.keys_database_url) else None)
    try:
        key_store = KeyStore(keys_db)
        if create_schema:
            key_store.create_tables()
        keyring = KeyRing(key_store, kek, cache_seconds=settings.key_cache_seconds)
        keyring.check_kek()
    except KekError:
        keys_db.close()
        raise
    events_db = Database.connect(settings.database_url)
    if create_schema:
        with events_db.transaction() as cur:
            create_tables(cur, events_db.dialect)
    blind_index = BlindIndex(keyring.raw_key(SYSTEM_SUBJECT, BLIND_INDEX_ROOT), settings.blind_index_bits)
    directory = CustomerDirectory(events_db, keyring, blind_index)
    projection = CustomerProjection(directory, events_db, inline=settings.projection == "inline")
    env = recorder_environment(settings.database_url, fail_fast=True)
    env["CREATE_TABLE"] = "y" if create_schema else "n"
    app = Strongroom(
        env,
        mapper_factory=lambda transcoder: SubjectMapper(transcoder, keyring),
        keys=keyring,
        read_model=directory,
        projection=projection,
    )
    built = Components(settings, app, keyring, directory, projection, events_db, keys_db)
    built.audit = AuditTrail.attach(settings, app, keyring, events_db, create_schema=create_schema)
    identity_store = IdentityStore(events_db, keyring)
    if create_schema:
        identity_store.create_tables()
    built.identity, built.staff_admin = build_identity(app, identity_store)
    return built
