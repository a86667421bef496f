"""Alerts sent to webhooks (R3.6): signed, retried, dead-lettered, delivered by one
process at a time.

**The outbox.** When an alert's row first enters the alerts table, one delivery row
per configured webhook (`webhook_deliveries`) is written in the same transaction
(`WebhookOutbox.enqueue`, hooked on `AlertTable.on_new`): an alert the log holds
has its deliveries queued, and a rolled-back save queues nothing. A rebuild or a
restore announces no alert, so nothing goes out twice from them.

**Delivery.** `WebhookDispatcher` claims due rows and POSTs each alert as JSON. The
claim is a lease (`lease_until`), taken in a transaction that on PostgreSQL locks
the rows `FOR UPDATE SKIP LOCKED`: any number of dispatchers share one database and
never deliver the same row at once. A dispatcher killed mid-delivery leaves a lease
that runs out, and the row is tried again: delivery is at least once, and the
receiver drops repeats by the delivery's id (the alert id, also sent as
`Idempotency-Key`). SQLite has one dispatcher (`strongroom serve` starts it).

**Failures.** A non-2xx answer, a refused connection or a timeout is tried again
after `backoff * 2^(attempt-1)` seconds (at most `MAX_BACKOFF_SECONDS`); after
`max_attempts` the row is dead: listed by `strongroom alerts dead-letters`, put back
by `strongroom alerts redeliver ID`. Redirects are not followed (a redirect could
lead the signed body to plain HTTP or to another host).

**Signature.** `X-Strongroom-Signature: t=<unix seconds>,v1=<hex>`, where `v1` is
HMAC-SHA256 under the shared secret over `<t>.` followed by the exact body bytes.
A receiver recomputes it, compares in constant time and refuses a `t` too far from
its clock (replays); `verify_signature` is that check (docs/operations.md).

**What is sent.** Ids, the rule, severity, counts and times: never the client
address an alert carries, nor its details. The secret never appears in a log, an
error, `doctor` or the settings (it comes from STRONGROOM_WEBHOOK_SECRET or the file
`webhook_secret_file` names, owner-readable only).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infrastructure.alerts_table import AlertTable
from infrastructure.logs import WORKER_LOGGER
from infrastructure.sql import Cursor, Database, lock_schema_changes

log = logging.getLogger(WORKER_LOGGER)

TABLE = "webhook_deliveries"
SECRET_ENV = "STRONGROOM_WEBHOOK_SECRET"  # nosec B105 - the variable's name, not a secret
SECRET_MIN_LENGTH = 32
SIGNATURE_HEADER = "X-Strongroom-Signature"
DELIVERY_HEADER = "X-Strongroom-Delivery"
MAX_BACKOFF_SECONDS = 300.0
POLL_SECONDS = 0.5
PARALLEL_DELIVERIES = 8  # deliveries in flight at once, per dispatcher
# The fields of an alert a webhook receives: ids and vocabulary, no personal data.
SENT_FIELDS = ("id", "rule_id", "severity", "summary", "actor_id", "customer_ids", "positions",
               "responses", "raised_at", "status")
_DOUBLE = {"sqlite": "REAL", "postgres": "DOUBLE PRECISION"}
_INT = {"sqlite": "INTEGER", "postgres": "INTEGER"}


class WebhookRefused(ValueError):
    """A webhook setting that cannot be used (the message names the rule, not the secret)."""


# -- targets and the secret -------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebhookTarget:
    """One receiver. `key` names it in the deliveries table (a digest: a URL may carry
    a token in its path, which the database need not hold); `label` names it in logs
    and listings (scheme, host and port only)."""

    url: str

    @property
    def key(self) -> str:
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def check_url(url: str, *, production: bool = False) -> WebhookTarget:
    """A usable webhook URL: https, or http to loopback only (a test receiver) and
    never in production; no credentials in it, no fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise WebhookRefused("a webhook URL must be https://host/...")
    if parts.username or parts.password:
        raise WebhookRefused("a webhook URL must not carry credentials (the signature authenticates)")
    if parts.scheme == "http":
        # Plain HTTP would show every alert to the network and let it be changed in
        # flight; loopback (a receiver on this host) is the one exception, and not in production.
        if production:
            raise WebhookRefused("plain http webhooks are refused in production: use https")
        if not _is_loopback(host):
            raise WebhookRefused("a webhook URL must be https (plain http only to loopback)")
    return WebhookTarget(url)


def read_secret(secret_file: Path | None, *, env: str = SECRET_ENV) -> bytes:
    """The signing secret from `env`, else from `secret_file` (owner-readable only)."""
    value = os.environ.get(env)
    if not value:
        if secret_file is None:
            raise WebhookRefused(f"webhooks need a signing secret: set {env} or the webhook_secret_file setting")
        try:
            mode = secret_file.stat().st_mode
        except OSError:
            raise WebhookRefused(f"the webhook secret file {secret_file} cannot be read") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Another local user could read the secret and forge alerts to the receiver.
            raise WebhookRefused(f"{secret_file} is readable by others: run `chmod 600 {secret_file}`")
        value = secret_file.read_text().strip()
    if len(value) < SECRET_MIN_LENGTH:
        raise WebhookRefused(f"the webhook signing secret must be at least {SECRET_MIN_LENGTH} characters")
    return value.encode()


# -- signing ------------------------------------------------------------------------------------


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: bytes, header: str, body: bytes, *, now: float | None = None,
                     tolerance: float = 300.0) -> bool:
    """What a receiver does: the header's `v1` matches the body and `t` is recent."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).partition(",v1=")[2]
    return hmac.compare_digest(expected, given)


def payload(record: Mapping[str, Any]) -> bytes:
    """The body sent for an alert: its non-personal fields, as canonical JSON."""
    body = {"event": "alert.raised", "alert": {k: record.get(k) for k in SENT_FIELDS}}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


# -- the outbox --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    alert_id: str
    target: str
    attempts: int


class WebhookOutbox:
    """The deliveries table: queued in the alert's transaction, claimed with a lease."""

    def __init__(self, database: Database, targets: Sequence[WebhookTarget], *, every_alert: bool = True) -> None:
        self.db = database
        self.targets = list(targets)
        self.every_alert = every_alert

    def create_tables(self) -> None:
        dialect = self.db.dialect
        double = _DOUBLE[dialect]
        with self.db.transaction() as cur:
            lock_schema_changes(cur, dialect)
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (alert_id TEXT NOT NULL, target TEXT NOT NULL,"
                f" label TEXT NOT NULL, status TEXT NOT NULL, attempts {_INT[dialect]} NOT NULL DEFAULT 0,"
                f" next_attempt_at {double} NOT NULL, lease_until {double}, last_error TEXT,"
                f" created_at {double} NOT NULL, finished_at {double}, PRIMARY KEY (alert_id, target))"
            )
            cur.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (status, next_attempt_at)")

    def enqueue(self, cur: Cursor, record: Mapping[str, Any]) -> None:
        """One delivery per target for a new alert, in the alert's own transaction."""
        if not self.every_alert and "webhook" not in record.get("responses", ()):
            return
        now = time.time()
        for target in self.targets:
            cur.execute(
                f"INSERT INTO {TABLE} (alert_id, target, label, status, attempts, next_attempt_at, created_at)"  # nosec B608
                " VALUES (?, ?, ?, 'pending', 0, ?, ?) ON CONFLICT (alert_id, target) DO NOTHING",
                (str(record["id"]), target.key, target.label, now, now),
            )

    def claim(self, lease_seconds: float, limit: int) -> list[Claimed]:
        """Due rows no one holds, leased to the caller for `lease_seconds`."""
        now = time.time()
        lock = " FOR UPDATE SKIP LOCKED" if self.db.dialect == "postgres" else ""
        with self.db.transaction() as cur:
            cur.execute(
                f"SELECT alert_id, target, attempts FROM {TABLE} WHERE status = 'pending'"  # nosec B608
                " AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)"
                f" ORDER BY next_attempt_at LIMIT ?{lock}",
                (now, now, limit),
            )
            rows = [Claimed(str(a), str(t), int(n)) for a, t, n in cur.fetchall()]
            cur.executemany(f"UPDATE {TABLE} SET lease_until = ? WHERE alert_id = ? AND target = ?",  # nosec B608
                            [(now + lease_seconds, r.alert_id, r.target) for r in rows])
        return rows

    def delivered(self, claimed: Claimed) -> None:
        with self.db.transaction() as cur:
            cur.execute(f"UPDATE {TABLE} SET status = 'delivered', attempts = ?, lease_until = NULL,"  # nosec B608
                        " last_error = NULL, finished_at = ? WHERE alert_id = ? AND target = ?",
                        (claimed.attempts + 1, time.time(), claimed.alert_id, claimed.target))

    def failed(self, claimed: Claimed, error: str, retry_in: float | None) -> None:
        """Another attempt in `retry_in` seconds, or (None) a dead letter."""
        now = time.time()
        with self.db.transaction() as cur:
            if retry_in is None:
                cur.execute(f"UPDATE {TABLE} SET status = 'dead', attempts = ?, lease_until = NULL,"  # nosec B608
                            " last_error = ?, finished_at = ? WHERE alert_id = ? AND target = ?",
                            (claimed.attempts + 1, error, now, claimed.alert_id, claimed.target))
            else:
                cur.execute(f"UPDATE {TABLE} SET attempts = ?, lease_until = NULL, last_error = ?,"  # nosec B608
                            " next_attempt_at = ? WHERE alert_id = ? AND target = ?",
                            (claimed.attempts + 1, error, now + retry_in, claimed.alert_id, claimed.target))

    def dead_letters(self) -> list[dict[str, Any]]:
        with self.db.transaction(write=False) as cur:
            cur.execute(f"SELECT alert_id, label, attempts, last_error, finished_at FROM {TABLE}"  # nosec B608
                        " WHERE status = 'dead' ORDER BY finished_at, alert_id")
            return [{"alert_id": str(a), "target": str(t), "attempts": int(n), "last_error": e,
                     "dead_since": float(f)} for a, t, n, e, f in cur.fetchall()]

    def redeliver(self, alert_id: str) -> int:
        """Put an alert's dead deliveries back in the queue, due now; returns how many."""
        with self.db.transaction() as cur:
            cur.execute(f"UPDATE {TABLE} SET status = 'pending', attempts = 0, next_attempt_at = ?,"  # nosec B608
                        " lease_until = NULL, finished_at = NULL WHERE alert_id = ? AND status = 'dead'",
                        (time.time(), alert_id))
            cur.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE alert_id = ? AND status = 'pending'",  # nosec B608
                        (alert_id,))
            return int(cur.fetchone()[0])

    def counts(self) -> dict[str, int]:
        with self.db.transaction(write=False) as cur:
            cur.execute(f"SELECT status, COUNT(*) FROM {TABLE} GROUP BY status")  # nosec B608
            return {str(s): int(n) for s, n in cur.fetchall()}


# -- sending -----------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is answered as a failure, never followed


class WebhookDispatcher:
    """Delivers queued alerts; see the module docstring. `wake()` after an alert is
    saved (Strongroom's alert listeners) sends it at once; `run_forever` also looks
    every `POLL_SECONDS` for what another process queued or a retry that fell due."""

    def __init__(self, outbox: WebhookOutbox, alerts: AlertTable, secret: bytes, *,
                 max_attempts: int = 8, backoff_seconds: float = 1.0, timeout_seconds: float = 5.0,
                 clock: Callable[[], float] = time.time,
                 on_outcome: Callable[[str, str], None] | None = None) -> None:
        self.outbox = outbox
        # Told (alert id, outcome) once a delivery is done either way: the composition
        # records it as an event on the alert.
        self.on_outcome = on_outcome
        self.alerts = alerts
        self._secret = secret
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self._targets = {t.key: t for t in outbox.targets}
        self._wake = threading.Event()
        self._opener = urllib.request.build_opener(_NoRedirect())
        # Kept for the dispatcher's life: its threads (and their SQLite connections,
        # one per thread) are reused rather than made for every batch.
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL_DELIVERIES, thread_name_prefix="webhook")

    def __repr__(self) -> str:  # never the secret
        return f"WebhookDispatcher(targets={[t.label for t in self._targets.values()]})"

    def wake(self) -> None:
        self._wake.set()

    def run_forever(self, stop: Callable[[], bool]) -> None:
        """Claim due deliveries as threads come free and send them in parallel: a
        receiver that hangs until the timeout holds one thread, not the others' alerts
        (a claimed row is leased, so it is not claimed again while in flight)."""
        inflight: set[Future[None]] = set()
        try:
            while not stop():
                self._wake.clear()
                inflight = {f for f in inflight if not f.done()}
                free = PARALLEL_DELIVERIES - len(inflight)
                claimed: list[Claimed] = []
                if free > 0:
                    try:
                        claimed = self.outbox.claim(lease_seconds=self.timeout_seconds + 30.0, limit=free)
                    except Exception as exc:
                        # A store outage pauses delivery; the queue waits in the database.
                        log.warning("webhook delivery paused", extra={"fields": {"exc_type": type(exc).__name__}})
                for item in claimed:
                    future = self._pool.submit(self._deliver_safely, item)
                    future.add_done_callback(lambda _: self._wake.set())
                    inflight.add(future)
                if claimed and len(claimed) == free:
                    continue  # more may be due; a finished delivery wakes the loop
                self._wake.wait(POLL_SECONDS)
        finally:
            self._pool.shutdown(wait=True)

    def _deliver_safely(self, item: Claimed) -> None:
        try:
            self._deliver(item)
        except Exception as exc:
            # The store went away mid-delivery: the lease runs out and the row is tried again.
            log.warning("webhook delivery interrupted",
                        extra={"fields": {"alert_id": item.alert_id, "exc_type": type(exc).__name__}})

    def _deliver(self, item: Claimed) -> None:
        target = self._targets.get(item.target)
        record = self.alerts.get(item.alert_id)
        if target is None or record is None:
            # A webhook removed from the settings, or an alert gone from the table (a
            # restore to before it): nothing to send it with, or to.
            self.outbox.failed(item, "target no longer configured" if target is None else "alert not found", None)
            return
        body = payload(record)
        error = self._post(target, body, item.alert_id)
        fields = {"alert_id": item.alert_id, "target": target.label, "attempt": item.attempts + 1}
        # The outcome goes on the alert before the row changes state, so whoever sees a
        # dead letter (and redelivers it) finds its event already in the log.
        if error is None:
            self._tell(item.alert_id, f"delivered to {target.label}")
            self.outbox.delivered(item)
            log.info("alert delivered to webhook", extra={"fields": fields})
            return
        attempts = item.attempts + 1
        retry_in = None if attempts >= self.max_attempts else min(
            self.backoff_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
        if retry_in is None:
            self._tell(item.alert_id, f"dead letter at {target.label} after {attempts} attempts ({error})")
        self.outbox.failed(item, error, retry_in)
        log.warning("webhook delivery failed" if retry_in is not None else "webhook delivery dead-lettered",
                    extra={"fields": {**fields, "error": error, "retry_in_seconds": retry_in}})

    def _tell(self, alert_id: str, outcome: str) -> None:
        if self.on_outcome is None:
            return
        try:
            self.on_outcome(alert_id, outcome)
        except Exception as exc:
            # The deliveries table is the truth about delivery; the event is its record.
            log.warning("webhook outcome not recorded on the alert",
                        extra={"fields": {"alert_id": alert_id, "exc_type": type(exc).__name__}})

    def _post(self, target: WebhookTarget, body: bytes, alert_id: str) -> str | None:
        """None when the receiver took it (2xx); else what went wrong, in a few words."""
        request = urllib.request.Request(target.url, data=body, method="POST", headers={
            "Content-Type": "application/json",
            "User-Agent": "strongroom-webhooks/1",
            SIGNATURE_HEADER: sign(self._secret, body, int(self.clock())),
            DELIVERY_HEADER: alert_id,
            "Idempotency-Key": alert_id,
        })
        try:
            with self._opener.open(request, timeout=self.timeout_seconds) as response:  # nosec B310 - https or loopback http only (check_url)
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
        except (OSError, ValueError) as exc:
            return type(exc).__name__  # the type alone: a message may name a host or a path
        return None if 200 <= status < 300 else f"http {status}"
