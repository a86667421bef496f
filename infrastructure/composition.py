"""The one composition root (STYLE 7): settings in, every service wired once.

Settings come from defaults, then the instance folder's `strongroom.json`, then
`STRONGROOM_*` environment variables, then an explicit mapping; each is typed and
checked here, so a bad value stops start-up with a message that names it (the
command line exits 2). Nothing is built at import time; the web app factory and the
command line both call `build()` and take every service from the `Components` it
returns: none of them wires a piece of its own.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment

from application.activation import Activation
from application.alerts import AlertDesk
from application.context import RequestContext, acting_as
from application.audit_trail import AuditTrail
from application.consent import ConsentLedger
from application.privacy_requests import PrivacyRequests
from application.customer_service import CustomerService
from application.customers import Strongroom
from application.identity import Identity
from application.lockout import LockoutAdministration
from application.monitoring import BusinessHours, Rule, RuleError, rules_from
from application.ports import Limit
from application.throttle import Throttle, ThrottleLimits
from application.operations import Operations
from application.policy import Policy
from application.staff_admin import StaffAdministration
from application.erasure_service import ErasureService
from application.retention import AmlRetention
from application.retention_run import RetentionRun
from infrastructure.audit.erasure_certificate import ErasureCertificates
from infrastructure.held_kyc import HeldKycReader
from infrastructure.retention_candidates import ReadModelRetentionCandidates
from application.recertification import Recertification
from application.reports import Reports
from application.training import TrainingRecords
from infrastructure.audit.checkpoints import DEFAULT_EVERY_ROWS, DEFAULT_EVERY_SECONDS, Checkpointer, CheckpointStore
from infrastructure.privacy_export import ExportSeal
from infrastructure.audit.signer import PUBLIC_KEY_FILE, CheckpointSigner, PublicKeyError, load_public_key
from infrastructure.audit.tamper_evidence import DEFAULT_COPY_GRACE_SECONDS, KeylessVerification, TamperEvidence
from infrastructure.backup.restore_state import RestoreIncomplete, refuse_incomplete_restore
from infrastructure.crypto.blind_index import BlindIndex, bits_for
from infrastructure.crypto.envelope import SubjectMapper
from infrastructure.crypto.kek import KekError, KekProvider, LocalKek
from infrastructure.crypto.keyring import BLIND_INDEX_ROOT, SYSTEM_SUBJECT, KeyRing
from infrastructure.crypto.keystore import KeyStore
from infrastructure.crypto.ledger_watch import ledger_watch
from infrastructure.crypto.pkcs11_token import DEFAULT_MODULE, Pkcs11Kek, Pkcs11Token, TokenConfig, read_pin
from infrastructure.eventstore import recorder_environment
from infrastructure.idempotency_store import IdempotencyTable
from infrastructure.identity_store import IdentityStore, common_passwords
from infrastructure.mail import SmtpActivationChannel
from infrastructure.passwords import (
    Argon2PasswordHasher,
    BoundedHasher,
    activation_code_hasher,
    is_legacy_recovery_code,
    new_recovery_codes,
    recovery_code_matches,
)
from infrastructure.monitor import create_monitor_tables
from infrastructure.rate_limits import DatabaseRateLimiter
from infrastructure.alerts_table import AlertTable
from infrastructure.webhooks import WebhookDispatcher, WebhookOutbox, WebhookRefused, check_url, read_secret
from infrastructure.projection import CustomerProjection
from infrastructure.partitioned_rebuild import PartitionedRebuild
from infrastructure.readmodel import CustomerDirectory, create_tables
from infrastructure.sql import Database, is_postgres

CONFIG_FILE = "strongroom.json"
KEK_FILE = "kek.key"
KEYS_SCHEMA = "strongroom_keys"
ENV_PREFIX = "STRONGROOM_"
KEY_PROVIDERS = ("local", "pkcs11")

# Keys `strongroom.json` may hold that are not settings: `created_at` is written by
# `strongroom init` as a note for people; `expected_customers` sizes the default
# `blind_index_bits`. Any other unknown key is refused: a misspelt
# `checkpoint_row` must not leave the default silently in force.
_FILE_NOTES = frozenset({"created_at"})
_INPUTS = frozenset({"expected_customers"})


class ConfigurationError(Exception):
    """Settings that cannot work; the command line exits 2 with this message."""


@dataclass(frozen=True)
class Settings:
    """Every setting, typed. Relative paths are taken from the instance folder."""

    instance: Path
    database_url: str
    keys_database_url: str
    key_provider: str = "local"
    projection: str = "inline"  # or "worker": a separate process projects (PostgreSQL)
    blind_index_bits: int = 14
    key_cache_seconds: float = 60.0
    environment: str = "development"
    # TLS for `strongroom serve` and `doctor` (R1.6); made by `strongroom init`.
    tls_cert: Path = Path("tls/cert.pem")
    tls_key: Path = Path("tls/key.pem")
    # /readyz waits this long on each store before it answers "not ready" (R7.6).
    readiness_timeout: float = 2.0
    # A request that needs an unavailable database answers 503 within this (R7.6):
    # every wait for a connection during it shares this one deadline.
    request_deadline_seconds: float = 5.0
    # Signed checkpoints (R3.3): a second copy of each goes to `checkpoint_dir`; one
    # follows at most `checkpoint_rows` rows or `checkpoint_seconds` after a write.
    checkpoint_dir: Path = Path("checkpoints")
    checkpoint_rows: int = DEFAULT_EVERY_ROWS
    checkpoint_seconds: float = DEFAULT_EVERY_SECONDS
    # A checkpoint with no copy in `checkpoint_dir` this long after it was signed makes
    # /readyz warn and `audit verify` fail (R3.3, R7.6); 0: at once.
    checkpoint_copy_grace_seconds: float = DEFAULT_COPY_GRACE_SECONDS
    # False for an application role that may not change the schema; the owner makes it.
    create_schema: bool = True
    # Where backups go (infrastructure/backup/targets.py); None: `<instance>/backups/local`.
    backup_targets: list[dict[str, Any]] | None = None
    # Throttling (R2.11, application/throttle.py): searches per actor; failed logins
    # per address (a burst, then one per interval); login attempts per username; and
    # password checks (argon2) at once per process, past which a login gets 503.
    search_per_minute: int = 60
    search_per_hour: int = 600
    login_failures_per_address: int = 5
    login_address_interval_seconds: float = 2400.0
    login_attempts_per_account: int = 20
    login_account_interval_seconds: float = 30.0
    password_hash_slots: int = 1
    # The activation channel (R2.9): new accounts' codes go by SMTP to the person's work
    # address. No host: accounts can only be made by `strongroom staff add`.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_sender: str = "strongroom@localhost"
    smtp_starttls: bool = False
    # Trust anchors for the relay's certificate under STARTTLS; None: the system's.
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: float = 10.0
    # Hours an activation code works, and a four-eyes request waits for its decision.
    activation_ttl_hours: float = 24.0
    approval_ttl_hours: float = 72.0
    # The `pkcs11` key provider (R1.4, infrastructure/crypto/pkcs11_token.py): the
    # module, the token, and the labels of the KEK and the audit key in it. The PIN is
    # no setting (it would sit in strongroom.json or show in `doctor`): it comes from
    # STRONGROOM_PKCS11_PIN or from the file `pkcs11_pin_file` names.
    pkcs11_module: str = DEFAULT_MODULE
    pkcs11_token_label: str = "strongroom"
    pkcs11_pin_file: Path | None = None
    pkcs11_kek_label: str = "strongroom-kek"
    pkcs11_signing_key_label: str = "strongroom-audit-signing"
    # `doctor` refuses production with the local KEK file unless this says the risk
    # (a shell user copying kek.key) is accepted on purpose.
    allow_local_kek: bool = False
    # Issue 12: alerts sent to webhooks (R3.6, infrastructure/webhooks.py). https URLs
    # (plain http to loopback only, never in production); the signing secret is no
    # setting: STRONGROOM_WEBHOOK_SECRET, or the owner-readable file `webhook_secret_file`.
    # `webhook_every_alert` false: only alerts whose rule asks for the "webhook" response.
    webhook_urls: tuple[str, ...] = ()
    webhook_secret_file: Path | None = None
    webhook_every_alert: bool = True
    webhook_max_attempts: int = 8
    webhook_backoff_seconds: float = 1.0
    webhook_timeout_seconds: float = 5.0
    # Issue 12, monitoring (R3.6): rule overrides as JSON (rule id -> threshold,
    # window_seconds, severity, responses, enabled; application/monitoring.py), and
    # the business hours outside which access raises `off_hours`.
    monitor_rules: str = ""
    monitor_business_hours: str = "07:00-19:00"
    monitor_business_days: str = "mon,tue,wed,thu,fri"
    monitor_time_zone: str = "UTC"
    # Issue 13 (R5.3): how often `strongroom serve`'s workers and `strongroom worker`
    # check data-subject request deadlines and raise their overdue alerts.
    privacy_deadline_check_seconds: float = 3600.0
    # Issue 13 (R5.4, R5.5): the AML retention after a relationship ends (0: no
    # retention hold, only investigations hold) and the profile data's retention after
    # the last contact with a customer whose relationship ended.
    aml_retention_years: float = 5.0
    profile_retention_years: float = 2.0
    # Key backups are kept this long, each under a generation key destroyed at expiry.
    key_backup_retention_days: float = 35.0
    # Issue 14 (R6.1, R6.2, R6.4): security training lapses after this many days.
    training_validity_days: float = 365.0
    # Access recertification: a campaign every `recert_interval_days` (quarterly);
    # unanswered items escalate after `recert_review_days`, then alert after
    # `recert_escalation_days` more.
    recert_interval_days: float = 91.0
    recert_review_days: float = 14.0
    recert_escalation_days: float = 7.0

    def __post_init__(self) -> None:
        instance = Path(self.instance)
        object.__setattr__(self, "instance", instance)
        for name in ("tls_cert", "tls_key", "checkpoint_dir", "smtp_ca_file", "pkcs11_pin_file",
                     "webhook_secret_file"):
            value = getattr(self, name)
            if value is None:
                continue
            path = Path(value)
            object.__setattr__(self, name, path if path.is_absolute() else instance / path)

    @property
    def kek_path(self) -> Path:
        return self.instance / KEK_FILE

    @classmethod
    def load(cls, instance: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
        """Defaults < `<instance>/strongroom.json` < `STRONGROOM_<NAME>` < `overrides`.

        Only `STRONGROOM_<NAME>` variables naming a setting are read: the prefix is
        shared with tools that are not settings (`STRONGROOM_INSTANCE`,
        `STRONGROOM_DEBUG`, the test and benchmark database URLs).
        """
        names = {f.name for f in fields(cls)} | _INPUTS
        env_instance = os.environ.get(f"{ENV_PREFIX}INSTANCE")
        folder = Path(instance or env_instance or "instance").resolve()
        merged: dict[str, Any] = {}
        config_file = folder / CONFIG_FILE
        if config_file.exists():
            merged.update(_read_config(config_file, names))
        for name in names - {"instance"}:
            value = os.environ.get(f"{ENV_PREFIX}{name.upper()}")
            if value is not None:
                merged[name] = value
        unknown = sorted(set(overrides or {}) - names)
        if unknown:
            raise ConfigurationError(f"unknown setting{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
        merged.update(overrides or {})
        merged.pop("instance", None)
        return cls._typed(folder, merged)

    @classmethod
    def _typed(cls, folder: Path, merged: dict[str, Any]) -> Settings:
        database_url = str(merged.get("database_url") or f"sqlite:///{folder / 'strongroom.sqlite'}")
        keys_url = str(merged.get("keys_database_url") or (
            database_url if is_postgres(database_url) else f"sqlite:///{folder / 'keys.sqlite'}"
        ))
        projection = str(merged.get("projection", "inline"))
        if projection not in ("inline", "worker"):
            raise ConfigurationError("projection (STRONGROOM_PROJECTION) must be 'inline' or 'worker'")
        if projection == "worker" and not is_postgres(database_url):
            raise ConfigurationError("a separate projection worker needs PostgreSQL")
        if "blind_index_bits" in merged:
            bits = _number(merged, "blind_index_bits", int, 14)
        else:
            bits = bits_for(_number(merged, "expected_customers", int, 100_000))
        key_provider = str(merged.get("key_provider", "local"))
        if key_provider not in KEY_PROVIDERS:
            raise ConfigurationError(f"{_where('key_provider')} must be 'local' or 'pkcs11'")
        targets = merged.get("backup_targets")
        if targets is not None and not (isinstance(targets, list) and all(isinstance(t, dict) for t in targets)):
            raise ConfigurationError("backup_targets must be a list of objects (see infrastructure/backup/targets.py)")
        return cls(
            instance=folder,
            database_url=database_url,
            keys_database_url=keys_url,
            key_provider=key_provider,
            projection=projection,
            blind_index_bits=bits,
            key_cache_seconds=_number(merged, "key_cache_seconds", float, 60.0, allow_zero=True),
            environment=str(merged.get("environment", "development")),
            tls_cert=_path(merged, "tls_cert", cls.tls_cert),
            tls_key=_path(merged, "tls_key", cls.tls_key),
            readiness_timeout=_number(merged, "readiness_timeout", float, cls.readiness_timeout),
            request_deadline_seconds=_number(merged, "request_deadline_seconds", float,
                                             cls.request_deadline_seconds),
            checkpoint_dir=_path(merged, "checkpoint_dir", cls.checkpoint_dir),
            checkpoint_rows=_number(merged, "checkpoint_rows", int, cls.checkpoint_rows),
            checkpoint_seconds=_number(merged, "checkpoint_seconds", float, cls.checkpoint_seconds),
            checkpoint_copy_grace_seconds=_number(merged, "checkpoint_copy_grace_seconds", float,
                                                  cls.checkpoint_copy_grace_seconds, allow_zero=True),
            create_schema=_flag(merged, "create_schema", cls.create_schema),
            backup_targets=targets,
            **{name: _number(merged, name, int, getattr(cls, name)) for name in (
                "search_per_minute", "search_per_hour", "login_failures_per_address",
                "login_attempts_per_account", "password_hash_slots")},
            **{name: _number(merged, name, float, getattr(cls, name)) for name in (
                "login_address_interval_seconds", "login_account_interval_seconds")},
            smtp_host=str(merged["smtp_host"]) if merged.get("smtp_host") else None,
            smtp_port=_number(merged, "smtp_port", int, cls.smtp_port),
            smtp_sender=_sender(merged),
            smtp_starttls=_flag(merged, "smtp_starttls", cls.smtp_starttls),
            smtp_ca_file=_path(merged, "smtp_ca_file", Path()) if merged.get("smtp_ca_file") else None,
            smtp_timeout_seconds=_number(merged, "smtp_timeout_seconds", float, cls.smtp_timeout_seconds),
            activation_ttl_hours=_number(merged, "activation_ttl_hours", float, cls.activation_ttl_hours),
            approval_ttl_hours=_number(merged, "approval_ttl_hours", float, cls.approval_ttl_hours),
            pkcs11_module=_text(merged, "pkcs11_module", cls.pkcs11_module),
            pkcs11_token_label=_text(merged, "pkcs11_token_label", cls.pkcs11_token_label),
            pkcs11_pin_file=_path(merged, "pkcs11_pin_file", None),
            pkcs11_kek_label=_text(merged, "pkcs11_kek_label", cls.pkcs11_kek_label),
            pkcs11_signing_key_label=_text(merged, "pkcs11_signing_key_label", cls.pkcs11_signing_key_label),
            allow_local_kek=_flag(merged, "allow_local_kek", cls.allow_local_kek),
            # Issue 12: webhooks (R3.6).
            webhook_urls=_webhook_urls(merged, production=str(merged.get("environment")) == "production"),
            webhook_secret_file=_path(merged, "webhook_secret_file", None),
            webhook_every_alert=_flag(merged, "webhook_every_alert", cls.webhook_every_alert),
            webhook_max_attempts=_number(merged, "webhook_max_attempts", int, cls.webhook_max_attempts),
            webhook_backoff_seconds=_number(merged, "webhook_backoff_seconds", float, cls.webhook_backoff_seconds),
            webhook_timeout_seconds=_number(merged, "webhook_timeout_seconds", float, cls.webhook_timeout_seconds),
            # Issue 12, monitoring (R3.6).
            **_monitor_settings(merged),
            # Issue 13 (R5.3).
            privacy_deadline_check_seconds=_number(merged, "privacy_deadline_check_seconds", float,
                                                   cls.privacy_deadline_check_seconds),
            # Issue 13: retention periods (R5.4, R5.5).
            aml_retention_years=_number(merged, "aml_retention_years", float, cls.aml_retention_years,
                                        allow_zero=True),
            profile_retention_years=_number(merged, "profile_retention_years", float,
                                            cls.profile_retention_years),
            key_backup_retention_days=_number(merged, "key_backup_retention_days", float,
                                              cls.key_backup_retention_days),
            # Issue 14 (R6.1, R6.2, R6.4).
            training_validity_days=_number(merged, "training_validity_days", float, cls.training_validity_days),
            **{name: _number(merged, name, float, getattr(cls, name)) for name in (
                "recert_interval_days", "recert_review_days", "recert_escalation_days")},
        )


def _monitor_settings(merged: Mapping[str, Any]) -> dict[str, str]:
    """Issue 12: the monitor's settings, checked now so a bad rule stops start-up."""
    rules = merged.get("monitor_rules") or ""
    chosen = {
        "monitor_rules": rules if isinstance(rules, str) else json.dumps(rules),
        "monitor_business_hours": _text(merged, "monitor_business_hours", Settings.monitor_business_hours),
        "monitor_business_days": _text(merged, "monitor_business_days", Settings.monitor_business_days),
        "monitor_time_zone": _text(merged, "monitor_time_zone", Settings.monitor_time_zone),
    }
    try:
        rules_from(chosen["monitor_rules"])
        BusinessHours.parse(chosen["monitor_business_hours"], chosen["monitor_business_days"],
                            chosen["monitor_time_zone"])
    except RuleError as exc:
        raise ConfigurationError(str(exc)) from None
    return chosen


def monitor_rules(settings: Settings) -> tuple[Rule, ...]:
    """The active rules (defaults with `monitor_rules` applied)."""
    return rules_from(settings.monitor_rules)


def monitor_hours(settings: Settings) -> BusinessHours:
    return BusinessHours.parse(settings.monitor_business_hours, settings.monitor_business_days,
                               settings.monitor_time_zone)


def _read_config(config_file: Path, names: set[str]) -> dict[str, Any]:
    try:
        loaded = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{config_file} is not valid JSON (line {exc.lineno})") from None
    if not isinstance(loaded, dict):
        raise ConfigurationError(f"{config_file} must hold a JSON object")
    unknown = sorted(set(loaded) - names - _FILE_NOTES)
    if unknown:
        raise ConfigurationError(f"{config_file}: unknown setting{'s' if len(unknown) > 1 else ''}: "
                                 f"{', '.join(unknown)}")
    return {k: v for k, v in loaded.items() if k not in _FILE_NOTES}


def _where(name: str) -> str:
    return f"{name} ({ENV_PREFIX}{name.upper()} or {CONFIG_FILE})"


def _number(merged: Mapping[str, Any], name: str, kind: Callable[[Any], Any], default: Any,
            *, allow_zero: bool = False) -> Any:
    """A finite number above zero (or zero, with `allow_zero`), an int or a float per
    `kind`. The message never echoes the value: it could be anything pasted there."""
    value = merged.get(name, default)
    what = "a whole number" if kind is int else "a number"
    try:
        if isinstance(value, bool):
            raise ValueError(name)
        number = kind(value)
        if not math.isfinite(number) or (kind is int and isinstance(value, float) and value != number):
            raise ValueError(name)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{_where(name)} must be {what}") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise ConfigurationError(f"{_where(name)} must be {'0 or more' if allow_zero else 'greater than 0'}")
    return number


def _sender(merged: Mapping[str, Any]) -> str:
    value = merged.get("smtp_sender", Settings.smtp_sender)
    if not isinstance(value, str) or not 3 <= len(value) <= 254 or "@" not in value or not value.isprintable():
        raise ConfigurationError(f"{_where('smtp_sender')} must be an email address")
    return value


def _text(merged: Mapping[str, Any], name: str, default: str) -> str:
    value = merged.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ConfigurationError(f"{_where(name)} must be text")
    return value


def _path(merged: Mapping[str, Any], name: str, default: Path | None) -> Path | None:
    value = merged.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, (str, Path)):
        raise ConfigurationError(f"{_where(name)} must be a path")
    return Path(value)


def _webhook_urls(merged: Mapping[str, Any], *, production: bool) -> tuple[str, ...]:
    """A JSON list, or (from the environment) URLs separated by commas; each checked
    (infrastructure/webhooks.py `check_url`). The message never echoes a URL: one may
    carry a token in its path."""
    value = merged.get("webhook_urls") or []
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip().startswith("[") else [u.strip() for u in value.split(",")]
        except ValueError:
            raise ConfigurationError(f"{_where('webhook_urls')} must be a list of URLs") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(u, str) for u in value):
        raise ConfigurationError(f"{_where('webhook_urls')} must be a list of URLs")
    urls = tuple(u for u in value if u)
    for number, url in enumerate(urls, 1):
        try:
            check_url(url, production=production)
        except WebhookRefused as exc:
            raise ConfigurationError(f"{_where('webhook_urls')}: URL {number}: {exc}") from None
    return urls


def _flag(merged: Mapping[str, Any], name: str, default: bool) -> bool:
    value = merged.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigurationError(f"{_where(name)} must be true or false")


def token_config(settings: Settings, *, pin: str | None = None) -> TokenConfig:
    """Where the instance's PKCS#11 token is; the PIN from `pin`, else from
    STRONGROOM_PKCS11_PIN or `pkcs11_pin_file` (KekError when there is none)."""
    return TokenConfig(
        module=settings.pkcs11_module, token_label=settings.pkcs11_token_label,
        kek_label=settings.pkcs11_kek_label, signing_key_label=settings.pkcs11_signing_key_label,
        pin=pin if pin is not None else read_pin(settings.pkcs11_pin_file),
    )


def load_kek(settings: Settings) -> KekProvider:
    """The instance's KEK; a missing file or token, or a wrong PIN, raises KekError."""
    if settings.key_provider == "pkcs11":
        return Pkcs11Kek(Pkcs11Token(token_config(settings)))
    return LocalKek.load(settings.kek_path)


@dataclass
class Components:
    """Everything `build()` made, each once: the entrypoints take services from here."""

    settings: Settings
    app: Strongroom
    keyring: KeyRing
    directory: CustomerDirectory
    projection: CustomerProjection
    events_db: Database
    keys_db: Database
    # Chain checkpoints, verification and the published key (R3.3, R6.3).
    tamper_evidence: TamperEvidence
    # The one authorisation policy (R2.10); it reads the identity's clock.
    policy: Policy
    # Customer use cases on behalf of a staff member (R2.6-R2.8, R3.2).
    customers: CustomerService
    # Reading the audit trail (R3.5), and chain verification for auditors.
    audit_trail: AuditTrail
    # Staff identity (R2.1-R2.4) and staff administration (R2.5, R2.8, R2.9).
    identity: Identity
    staff_admin: StaffAdministration
    # Account activation out of band (R2.9).
    activation: Activation
    # Operator use cases over the log, read models and keys (the command line's).
    operations: Operations
    # Ending a lockout early, by a security officer (R2.3).
    lockouts: LockoutAdministration
    # Issue 13 (R5.2, R5.3, R5.6): the consent ledger and data-subject requests.
    consents: ConsentLedger
    privacy: PrivacyRequests
    # Issue 13: erasure against AML holds with certificates (R5.4), the retention run (R5.5).
    erasures: ErasureService
    retention: RetentionRun
    # Security training completions (R6.4).
    training: TrainingRecords
    # Access recertification campaigns (R6.2).
    recertification: Recertification
    # Internal-audit reports over the log (R6.1).
    reports: Reports
    # Issue 12: alerts listed and acknowledged (R3.6), and the table they come from.
    alerts: AlertDesk | None = None
    alert_table: AlertTable | None = None
    webhooks: WebhookOutbox | None = None

    def close(self) -> None:
        self.tamper_evidence.close()  # stops the checkpointer before the recorder closes
        self.app.close()
        self.events_db.close()
        self.keyring.close()  # the key-ledger listener (issue 13)
        self.keys_db.close()
        if isinstance(self.keyring.kek, Pkcs11Kek):
            self.keyring.kek.close()  # logs out of the token


def build(settings: Settings, *, kek: KekProvider | None = None, create_schema: bool = True,
          allow_incomplete_restore: bool = False) -> Components:
    """Wire the application; a wrong or missing KEK stops here and changes nothing (R1.4).

    `create_schema=False` (or the `create_schema` setting false) is for an
    application role that may not change the schema: the owner creates it
    (`strongroom db roles`). A store that is the destination of a restore that never
    finished is refused before anything is written to it (ConfigurationError);
    only the restore itself passes `allow_incomplete_restore`.
    """
    loaded_kek = kek is None
    kek = kek or load_kek(settings)
    # What is built so far, closed again (newest first) if a later step fails: a
    # failed start leaves no pool, connection or listener thread behind.
    with ExitStack() as undo:
        if loaded_kek and isinstance(kek, Pkcs11Kek):
            undo.callback(kek.close)
        components = _build(settings, kek, undo, create_schema=create_schema and settings.create_schema,
                            allow_incomplete_restore=allow_incomplete_restore)
        undo.pop_all()
    return components


def _build(settings: Settings, kek: KekProvider, undo: ExitStack, *, create_schema: bool,
           allow_incomplete_restore: bool) -> Components:
    deadline = settings.request_deadline_seconds
    events_db = Database.connect(settings.database_url, timeout=deadline)
    undo.callback(events_db.close)
    if not allow_incomplete_restore:
        try:
            refuse_incomplete_restore(events_db)
        except RestoreIncomplete as exc:
            raise ConfigurationError(str(exc)) from None
    keys_db = Database.connect(settings.keys_database_url, timeout=deadline,
                               schema=KEYS_SCHEMA if is_postgres(settings.keys_database_url) else None)
    undo.callback(keys_db.close)
    key_store = KeyStore(keys_db)
    if create_schema:
        key_store.create_tables()
    keyring = KeyRing(key_store, kek, cache_seconds=settings.key_cache_seconds)
    keyring.check_kek()
    keyring.watch = ledger_watch(keys_db)
    undo.callback(keyring.close)  # the key-ledger listener; before keys_db closes
    if create_schema:
        with events_db.transaction() as cur:
            create_tables(cur, events_db.dialect)
            create_monitor_tables(cur, events_db.dialect)  # issue 12: the monitor's position
    blind_index = BlindIndex(keyring.raw_key(SYSTEM_SUBJECT, BLIND_INDEX_ROOT), settings.blind_index_bits)
    # Issue 15: keys in the same PostgreSQL database are read with a lookup's candidates.
    same_database = is_postgres(settings.database_url) and settings.keys_database_url == settings.database_url
    directory = CustomerDirectory(events_db, keyring, blind_index, keys_schema=KEYS_SCHEMA if same_database else None)
    alert_table = AlertTable(events_db, keyring)  # issue 12: the alerts read model (R3.6)
    webhooks = WebhookOutbox(events_db, [check_url(u) for u in settings.webhook_urls],
                             every_alert=settings.webhook_every_alert)
    if create_schema:
        alert_table.create_tables()
        webhooks.create_tables()
    if webhooks.targets:
        alert_table.on_new.append(webhooks.enqueue)  # queued in the alert's own transaction
    projection = CustomerProjection(directory, events_db, inline=settings.projection == "inline",
                                    alerts=alert_table)
    # Issue 15: `rebuild(jobs=P)` partitions the log by customer over P worker processes.
    projection.partitioned = PartitionedRebuild(settings, kek, allow_incomplete_restore=allow_incomplete_restore)
    idempotency = IdempotencyTable(events_db, keyring.raw_key(SYSTEM_SUBJECT, BLIND_INDEX_ROOT))
    if create_schema:
        idempotency.create_tables()
    env = recorder_environment(settings.database_url, fail_fast=True, deadline_seconds=deadline)
    env["CREATE_TABLE"] = "y" if create_schema else "n"
    app = Strongroom(
        env,
        mapper_factory=lambda transcoder: SubjectMapper(transcoder, keyring),
        keys=keyring,
        read_model=directory,
        projection=projection,
        idempotency=idempotency,
        alert_records=alert_table,
        retention=AmlRetention(settings.aml_retention_years),
    )
    undo.callback(app.close)
    evidence = tamper_evidence(settings, app, keyring, events_db, create_schema=create_schema)
    undo.callback(evidence.close)  # stops the checkpointer before the recorder closes

    # The events share this database: each authentication reads the account's stream
    # version with its session, in one statement (issue 15 item 6).
    identity_store = IdentityStore(events_db, keyring, events_table=app.recorder.events_table_name)
    if create_schema:
        identity_store.create_tables()
    # Step-up times are stamped by the identity's clock, so the policy reads that same
    # clock (tests move it); a closure, because each of the two needs the other.
    identity: Identity
    policy = Policy(app.access_log, clock=lambda: identity.now(),
                    training_validity=timedelta(days=settings.training_validity_days))
    throttle = Throttle(rate_limiter(settings, events_db, keyring, lambda: identity.now(), create_schema=create_schema),
                        throttle_limits(settings))
    identity = Identity(
        app, sessions=identity_store, challenges=identity_store, throttle=identity_store,
        totp_steps=identity_store, directory=identity_store, break_glass=identity_store,
        hasher=BoundedHasher(Argon2PasswordHasher(), settings.password_hash_slots),
        common_passwords=common_passwords, new_recovery_codes=new_recovery_codes,
        recovery_code_matches=recovery_code_matches, recovery_code_outdated=is_legacy_recovery_code,
        policy=policy, rate_limits=throttle,
    )
    channel = None if settings.smtp_host is None else SmtpActivationChannel(
        settings.smtp_host, settings.smtp_port, settings.smtp_sender, starttls=settings.smtp_starttls,
        timeout=settings.smtp_timeout_seconds, ca_file=settings.smtp_ca_file,
    )
    activation = Activation(
        identity, identity_store, channel,
        activation_code_hasher(keyring.raw_key(SYSTEM_SUBJECT, BLIND_INDEX_ROOT)),
        ttl=timedelta(hours=settings.activation_ttl_hours),
    )
    staff_admin = StaffAdministration(
        app=app, identity=identity, directory=identity_store, approvals=identity_store,
        break_glass=identity_store, policy=policy, activation=activation,
        approval_ttl=timedelta(hours=settings.approval_ttl_hours),
    )
    audit_trail = AuditTrail(app, evidence, policy=policy)
    consents = ConsentLedger(app, policy, clock=lambda: identity.now())
    # One erasure path, certified, for the API's erase and a data-subject request's (R5.4).
    erasures = ErasureService(app, policy, ErasureCertificates(evidence.signer), HeldKycReader(app.recorder, app.mapper),
                              clock=lambda: identity.now(),
                              backup_retention=timedelta(days=settings.key_backup_retention_days))
    return Components(
        settings=settings, app=app, keyring=keyring, directory=directory, projection=projection,
        events_db=events_db, keys_db=keys_db, tamper_evidence=evidence, policy=policy,
        customers=CustomerService(app, policy=policy, throttle=throttle),
        audit_trail=audit_trail,
        identity=identity, staff_admin=staff_admin, activation=activation,
        operations=Operations(app, projection, directory, keyring),
        lockouts=LockoutAdministration(identity),
        alerts=AlertDesk(app, alert_table, policy, deliveries=webhooks), alert_table=alert_table,
        webhooks=webhooks,
        consents=consents,
        privacy=PrivacyRequests(app, policy, consents, audit_trail, ExportSeal(evidence.signer),
                                clock=lambda: identity.now(), erasures=erasures),
        erasures=erasures,
        retention=RetentionRun(app, ReadModelRetentionCandidates(events_db),
                               profile_years=settings.profile_retention_years, clock=lambda: identity.now()),
        training=TrainingRecords(identity, policy),
        recertification=Recertification(
            identity, staff_admin, identity_store, policy,
            review_period=timedelta(days=settings.recert_review_days),
            escalation_period=timedelta(days=settings.recert_escalation_days),
            interval=timedelta(days=settings.recert_interval_days),
        ),
        reports=Reports(app, policy, training_validity=timedelta(days=settings.training_validity_days)),
    )


# Who the webhook dispatcher's records name (the events of delivery outcomes).
WEBHOOK_ACTOR = "worker:webhooks"


def webhook_dispatcher(built: Components) -> WebhookDispatcher | None:
    """The dispatcher for this instance's webhooks (issue 12), None when none are
    configured; a missing or weak secret is a ConfigurationError. Saved alerts wake
    it at once when they are saved in this process."""
    settings = built.settings
    if built.webhooks is None or built.alert_table is None or not built.webhooks.targets:
        return None
    try:
        secret = read_secret(settings.webhook_secret_file)
    except WebhookRefused as exc:
        raise ConfigurationError(str(exc)) from None
    desk = built.alerts

    def record_outcome(alert_id: str, outcome: str) -> None:
        if desk is not None:
            with acting_as(RequestContext(actor_id=WEBHOOK_ACTOR, via="worker")):
                desk.record_webhook_outcome(alert_id, outcome)

    dispatcher = WebhookDispatcher(
        built.webhooks, built.alert_table, secret, max_attempts=settings.webhook_max_attempts,
        backoff_seconds=settings.webhook_backoff_seconds, timeout_seconds=settings.webhook_timeout_seconds,
        on_outcome=record_outcome,
    )
    built.app.alert_listeners.append(dispatcher.wake)
    return dispatcher


def throttle_limits(settings: Settings) -> ThrottleLimits:
    return ThrottleLimits(
        search=(Limit(settings.search_per_minute, 60), Limit(settings.search_per_hour, 3600)),
        login_failures_per_address=(Limit(1, settings.login_address_interval_seconds,
                                          burst=settings.login_failures_per_address),),
        login_attempts_per_account=(Limit(1, settings.login_account_interval_seconds,
                                          burst=settings.login_attempts_per_account),),
    )


def rate_limiter(settings: Settings, events_db: Database, keyring: KeyRing, clock: Callable[[], datetime],
                 *, create_schema: bool = True) -> DatabaseRateLimiter:
    """Counters in the events database, so every API process shares them (R7.4)."""
    digest_key = hashlib.sha256(b"strongroom/rate-limit-keys/v1\x00"
                                + keyring.raw_key(SYSTEM_SUBJECT, BLIND_INDEX_ROOT)).digest()
    limiter = DatabaseRateLimiter(events_db, digest_key, clock)
    if create_schema:
        limiter.create_tables()
    return limiter


def tamper_evidence(settings: Settings, app: Strongroom, keyring: KeyRing, events_db: Database,
                    *, create_schema: bool = True) -> TamperEvidence:
    """Signed checkpoints after each commit, their folder copy, and the public key (R3.3)."""
    # The audit key lives where the KEK lives: in the token with pkcs11 (R1.4).
    if isinstance(keyring.kek, Pkcs11Kek):
        signer = CheckpointSigner.in_token(keyring.kek.token, keyring)
    else:
        signer = CheckpointSigner.from_keyring(keyring)
    store = CheckpointStore(events_db, settings.checkpoint_dir)
    if create_schema:
        store.create_table()
    recorder: Any = app.recorder
    checkpointer = Checkpointer(
        recorder, store, signer,
        every_rows=settings.checkpoint_rows, every_seconds=settings.checkpoint_seconds,
    )
    recorder.commit_listeners.append(checkpointer.after_commit)
    evidence = TamperEvidence(recorder, store, signer, checkpointer, settings.instance,
                              copy_grace_seconds=settings.checkpoint_copy_grace_seconds)
    evidence.write_public_key()
    return evidence


def open_keyless_verification(settings: Settings) -> KeylessVerification:
    """The event store, the checkpoint store and `audit-signing.pub`: `audit verify`
    without the KEK (R3.3: verification survives key loss). Writes nothing: no
    schema, no checkpoint, no key file."""
    path = settings.instance / PUBLIC_KEY_FILE
    try:
        public_key = load_public_key(path.read_bytes())
    except OSError:
        raise ConfigurationError(f"without the KEK, verification needs the published key {path}, "
                                 "which cannot be read") from None
    except PublicKeyError as exc:
        raise ConfigurationError(f"{path} is not usable ({exc})") from None
    deadline = settings.request_deadline_seconds
    env = recorder_environment(settings.database_url, fail_fast=True, deadline_seconds=deadline)
    env["CREATE_TABLE"] = "n"
    # The same environment the application's recorder is made from (its name picks the table).
    factory = InfrastructureFactory.construct(Environment(Strongroom.name, {**os.environ, **env}))
    events_db = Database.connect(settings.database_url, timeout=deadline)

    def close() -> None:
        factory.close()
        events_db.close()

    # An unfinished restore is refused here too: its chain may stop part-way and still
    # look intact (issue 9, item 6).
    try:
        refuse_incomplete_restore(events_db)
    except RestoreIncomplete as exc:
        close()
        raise ConfigurationError(str(exc)) from None

    return KeylessVerification(factory.application_recorder(), CheckpointStore(events_db, settings.checkpoint_dir),
                               public_key, copy_grace_seconds=settings.checkpoint_copy_grace_seconds, close=close)
