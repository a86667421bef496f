"""The monitor's log follower (R3.6, R7.4): reads the event log, raises alerts exactly once.

Exactly once, by two locks on one door:

* the position the monitor has read up to (`monitor_position`) is written in the
  same transaction as the alerts that rows up to it raised, their responses (a
  session ended, a step-up lapsed, an account locked) and the client addresses
  learnt: a monitor killed at any point either committed all of it or none (rows
  that raised nothing may run ahead of the stored position for up to a second and
  are read again after a restart: `LogMonitor.step`);
* an alert's id is `alert_id(rule, key)`, the key derived from the rows that raised
  it, so an alert raised again (a second monitor racing) meets the first one's
  stream instead of being stored twice; the monitor also skips a finding whose alert
  is already stored.

After a restart the rules' windows are rebuilt from the rows just before the tracked
position (the longest window's worth), fed with `raising=False`: a burst cut in two
by a `kill -9` is still one burst.

Waking: on PostgreSQL, `LISTEN` on the channel the insert function NOTIFYs for every
write (infrastructure/eventstore/postgres_schema.py), with a slow poll as a fallback
in case a notification is missed; on SQLite, whose recorder cannot notify, a short
poll. A store that stops answering pauses the monitor and it carries on from its
tracked position, like the projection worker. It logs only JSON lines (R7.3).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.audit_trail import AuditTrail
from application.context import RequestContext, acting_as
from application.customers import Strongroom, chain_hooks
from application.errors import VersionConflict
from application.monitoring import (
    MONITOR_ACTOR,
    AddressBook,
    BusinessHours,
    Finding,
    MonitorResponses,
    Rule,
    RuleEngine,
    access_observation,
    observation_of,
)
from application.ports import InTransactionHook
from domain.alerts import Alert, alert_id
from domain.audit import AccessRecord
from domain.operations import RECOVERY_LOG_ID, RecoveryLog
from domain.staff import StaffMember
from infrastructure.crypto.envelope import TamperedEvent
from infrastructure.faults import is_store_unavailable
from infrastructure.logs import WORKER_LOGGER
from infrastructure.sql import Cursor, Database, adapt_cursor, lock_schema_changes

log = logging.getLogger(WORKER_LOGGER)

# Rows per read: one query and, after the rules, one short write transaction per
# page (the position, with any alerts). Larger pages spend less on commits while
# catching up; a page of access records is opened in about 0.1 s, so an alert
# still commits well inside the 2 s goal.
PAGE = 2000
OUTAGE_PAUSE_MAX = 5.0
POSITION_EVERY = 1.0  # seconds a position with nothing else to commit may wait (see step)
TRACKING_NAME = "monitor"
# Only the rows a rule reads are opened (decrypted and decoded), chosen by the topic,
# which is stored in clear: every access record, and of the changes only these two
# (RuleEngine._changes). Staff members' and the recovery log's other events are only
# authenticated (one AES-GCM tag check, no decoding), so tampering with them still
# raises `chain_verification_failed`; customers' own changes (personal data under their
# keys) are skipped before anything is decrypted.
ACCESS_TOPICS = f"{AccessRecord.__module__}:{AccessRecord.__qualname__}."
_WITH_VALUES = frozenset({f"{StaffMember.__module__}:StaffMember.RolesChanged",
                          f"{RecoveryLog.__module__}:RecoveryLog.Drilled"})
AUTHENTICATED_TOPICS = tuple(f"{cls.__module__}:{cls.__qualname__}." for cls in (StaffMember, RecoveryLog))
_BIGINT = {"sqlite": "INTEGER", "postgres": "BIGINT"}


def create_monitor_tables(cur: Cursor, dialect: str) -> None:
    lock_schema_changes(cur, dialect)
    cur.execute(f"CREATE TABLE IF NOT EXISTS monitor_position (name TEXT PRIMARY KEY, position {_BIGINT[dialect]}"
                " NOT NULL)")
    # Addresses a member signed in from, as keyed digests (never the address itself).
    cur.execute("CREATE TABLE IF NOT EXISTS monitor_addresses (staff_id TEXT NOT NULL, digest TEXT NOT NULL,"
                " PRIMARY KEY (staff_id, digest))")


class MonitorStore(AddressBook):
    """The monitor's tracked position and the address book, in the events database."""

    def __init__(self, db: Database, key: bytes) -> None:
        self.db = db
        self._key = key

    def create_tables(self) -> None:
        with self.db.transaction() as cur:
            create_monitor_tables(cur, self.db.dialect)

    def position(self) -> int:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT position FROM monitor_position WHERE name = ?", (TRACKING_NAME,))
            row = cur.fetchone()
        return 0 if row is None else int(row[0])

    def _digest(self, staff_id: str, client_addr: str) -> str:
        return hmac.new(self._key, f"monitor/address|{staff_id}|{client_addr}".encode(), hashlib.sha256).hexdigest()

    def known(self, staff_id: str, client_addr: str) -> bool:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT 1 FROM monitor_addresses WHERE staff_id = ? AND digest = ?",
                        (staff_id, self._digest(staff_id, client_addr)))
            return cur.fetchone() is not None

    def any_known(self, staff_id: str) -> bool:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT 1 FROM monitor_addresses WHERE staff_id = ? LIMIT 1", (staff_id,))
            return cur.fetchone() is not None

    def write(self, cur: Cursor, position: int, learned: Sequence[tuple[str, str]]) -> None:
        """The position (only forwards) and the addresses learnt, in the caller's transaction."""
        cur.execute(
            "INSERT INTO monitor_position (name, position) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position"
            " WHERE monitor_position.position < excluded.position",
            (TRACKING_NAME, position),
        )
        for staff_id, addr in learned:
            cur.execute("INSERT INTO monitor_addresses (staff_id, digest) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (staff_id, self._digest(staff_id, addr)))

    def tracking(self, position: int, learned: Sequence[tuple[str, str]]) -> InTransactionHook:
        dialect, learned = self.db.dialect, list(learned)

        def track(raw_cursor: Any, _positions: Sequence[int]) -> None:
            self.write(adapt_cursor(dialect, raw_cursor), position, learned)

        return track


class LogMonitor:
    """Follows the log from its tracked position and stores what the rules find."""

    def __init__(
        self, app: Strongroom, trail: AuditTrail, store: MonitorStore, responses: MonitorResponses, *,
        rules: Sequence[Rule], hours: BusinessHours, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        overdue_every: float = 60.0,
    ) -> None:
        self.app = app
        self.trail = trail
        self.store = store
        self.responses = responses
        self.rules = tuple(rules)
        self.hours = hours
        self.clock = clock
        self.overdue_every = overdue_every
        self._next_overdue = 0.0
        self.engine = self._fresh_engine()
        self.position = 0
        self._written = 0  # the position as stored (self.position may run ahead, see step)
        self._write_by = 0.0
        self.started = False

    def _fresh_engine(self) -> RuleEngine:
        return RuleEngine(self.rules, self.hours, self.store)

    # -- starting: rebuild the windows ----------------------------------------------------------

    def start(self) -> None:
        """Rebuild the windows from the rows before the tracked position, raising nothing."""
        self.engine = self._fresh_engine()
        self.position = self._written = self.store.position()
        self.started = True
        if self.position == 0:
            return
        windows = [r.window_seconds for r in self.rules if r.enabled and r.id not in ("backup_overdue", "off_hours")]
        head = self.app.recorder.select_timed_notifications(self.position, 1, self.position)
        if not head or not windows:
            return
        since = head[0].recorded_at.timestamp() - max(windows)
        first = self.app.recorder.position_at(datetime.fromtimestamp(since, UTC)) + 1
        for notification in self._read(first, self.position):
            self._observe(notification, raising=False)
        self.engine.new_addresses.clear()  # those are in the table already

    def _read(self, start: int, stop: int) -> Any:
        while start <= stop:
            page = self.app.recorder.select_timed_notifications(start, PAGE, stop)
            if not page:
                return
            yield from page
            start = page[-1].id + 1

    def _observe(self, notification: Any, *, raising: bool) -> list[Finding]:
        topic = notification.topic
        with_values = topic in _WITH_VALUES
        try:
            if topic.startswith(ACCESS_TOPICS):
                opened = self.app.mapper.open_event(notification)
                observation = access_observation(notification.id, notification.recorded_at,
                                                 opened.meta, opened.attributes)
            elif with_values:
                observation = observation_of(self.trail.entry(notification, with_values=True))
            else:
                if topic.startswith(AUTHENTICATED_TOPICS):
                    self.app.mapper.authenticate(notification)
                return []
        except TamperedEvent:
            # A changed row must not stop the monitor; it is itself the alert.
            return self.engine.unreadable(notification.id, notification.recorded_at) if raising else []
        return self.engine.observe(observation, raising=raising)

    # -- one step --------------------------------------------------------------------------------

    def step(self) -> int:
        """Read the next page of the log; store its findings with the new position.
        Returns the number of rows read (0: caught up).

        The page is read and the rules run outside any write transaction; only what
        must commit together (alerts, responses, addresses, position) takes the write
        lock, in one short transaction. A page that found nothing and learnt no address
        moves the position in memory only, written with the next batch or
        `POSITION_EVERY` seconds on (or by `catch_up(flush=True)`): under load on
        SQLite that is one commit a second instead of ten, each one a wait for the
        writers' lock and an fsync. A monitor killed meanwhile reads those rows again,
        exactly as if it had been killed before reading them; they raised nothing and
        changed nothing, so nothing can be stored twice."""
        if not self.started:
            self.start()
        page = self.app.recorder.select_timed_notifications(self.position + 1, PAGE)
        findings: list[Finding] = []
        if page:
            for notification in page:
                findings.extend(self._observe(notification, raising=True))
        if time.monotonic() >= self._next_overdue:
            self._next_overdue = time.monotonic() + self.overdue_every
            findings.extend(self._overdue())
        if not page and not findings:
            if self.position > self._written and time.monotonic() >= self._write_by:
                self._commit([], self.position)
            return 0
        last = page[-1].id if page else self.position
        if findings or self.engine.new_addresses or time.monotonic() >= self._write_by:
            self._commit(findings, last)
        self.position = last
        return len(page)

    def _commit(self, findings: list[Finding], last: int) -> None:
        try:
            self._store(findings, last)
        except BaseException:
            self.started = False  # the windows saw rows that did not commit: rebuild them
            raise
        self._written = last
        self._write_by = time.monotonic() + POSITION_EVERY

    def catch_up(self, *, flush: bool = True) -> int:
        """Read until the head; returns the rows read. `flush`: write the position
        even if not due (a caller about to stop, a test); `run_forever` does not, so
        a monitor polling a busy log commits once a second, not at every poll."""
        done = 0
        while (read := self.step()) > 0:
            done += read
        if flush and self.position > self._written:
            self._commit([], self.position)
        return done

    def _overdue(self) -> list[Finding]:
        try:
            recovery: Any = self.app.repository.get(RECOVERY_LOG_ID)
            backups = list(recovery.last_backups.values())
        except AggregateNotFoundError:  # no recovery log yet: never backed up
            backups = []
        last = max(((datetime.fromisoformat(b["at"]), int(b["position"])) for b in backups), default=None)
        first = self.app.recorder.select_timed_notifications(1, 1)
        started = first[0].recorded_at if first else None
        return self.engine.overdue(self.clock(), last, started)

    def _store(self, findings: list[Finding], last: int) -> None:
        learned = list(self.engine.new_addresses)
        alerts: list[Alert] = []
        hooks: list[InTransactionHook | None] = []
        now = self.clock()
        for finding in findings:
            if self._stored(alert_id(finding.rule.id, finding.key)):
                continue  # raised before (a restart, a race): exactly once
            alert = Alert.raise_alert(
                rule_id=finding.rule.id, key=finding.key, severity=finding.rule.severity,
                summary=finding.summary, actor_id=finding.actor_id, client_addr=finding.client_addr,
                customer_ids=finding.customer_ids, positions=finding.positions, details=finding.details,
                responses=finding.rule.responses,
            )
            hooks.extend(self._responses(finding, alert, now))
            alerts.append(alert)
        track = self.store.tracking(last, learned)
        if alerts:
            with acting_as(RequestContext(actor_id=MONITOR_ACTOR, via="worker", purpose="monitoring")):
                try:
                    self.app._save(*alerts, in_transaction=chain_hooks(*hooks, track))
                except (IntegrityError, VersionConflict):
                    # Another monitor stored one of them first: rebuild and read again.
                    log.warning("an alert was stored meanwhile; the monitor reads the rows again",
                                extra={"fields": {"position": self.position}})
                    raise
        else:
            with self.store.db.transaction() as cur:
                self.store.write(cur, last, learned)
        self.engine.new_addresses.clear()
        for alert in alerts:
            log.info("alert raised", extra={"fields": {
                "alert_id": str(alert.id), "rule_id": alert.rule_id, "severity": alert.severity,
                "applied": sorted(alert.applied)}})

    def _stored(self, aggregate_id: Any) -> bool:
        return bool(self.app.recorder.select_events(aggregate_id, limit=1))

    def _responses(self, finding: Finding, alert: Alert, now: datetime) -> list[InTransactionHook]:
        """The rule's responses on the finding's staff member, recorded on the alert; they
        commit with it. `webhook` deliveries are queued in the same transaction by the alerts table's
        outbox and sent by the dispatcher the app's alert listeners wake (infrastructure/webhooks.py)."""
        target = finding.target_staff_id
        hooks: list[InTransactionHook] = []
        for response in finding.rule.responses:
            if response in ("alert", "webhook"):
                continue
            if target is None:
                alert.record_response(response, "skipped: no staff member to act on")
                continue
            if response == "step_up":
                hooks.append(self.responses.lapsing_step_ups(target))
                alert.record_response(response, "step-up lapsed on every live session")
            elif response == "end_sessions":
                hooks.append(self.responses.ending_sessions(target, now, f"monitor:{finding.rule.id}"))
                alert.record_response(response, "every live session ended")
            elif response == "lock_account":
                hooks.append(self.responses.locking(target, now))
                alert.record_response(response, "account locked until a security officer unlocks it")
        return hooks

    # -- running ---------------------------------------------------------------------------------

    def run_forever(self, *, stop: Callable[[], bool], wait: Callable[[float], Any],
                    idle_wait: float = 0.1) -> None:
        """Follow the log until told to stop; `wait(seconds)` returns early when woken
        (a NOTIFY) and otherwise after `seconds`. Rides out an unavailable store."""
        pause = 0.0
        while not stop():
            try:
                read = self.catch_up(flush=False)
            except Exception as exc:
                if not is_store_unavailable(exc) and not isinstance(exc, (IntegrityError, VersionConflict)):
                    raise
                self.started = False
                pause = min(max(0.2, 2 * pause), OUTAGE_PAUSE_MAX)
                log.warning("store unavailable; the monitor will try again",
                            extra={"fields": {"exc_type": type(exc).__name__, "retry_in_seconds": pause}})
                _sleep_unless(stop, pause)
                continue
            if pause:
                log.info("store available again; the monitor carries on",
                         extra={"fields": {"position": self.position}})
                pause = 0.0
            if read == 0:
                wait(min(idle_wait, self.overdue_every))


def _sleep_unless(stop: Callable[[], bool], seconds: float) -> None:
    until = time.monotonic() + seconds
    while not stop() and time.monotonic() < until:
        time.sleep(min(0.1, max(0.0, until - time.monotonic())))


class Listener:
    """PostgreSQL LISTEN on the events table's channel: `wait` returns at the first
    NOTIFY, or after the fallback poll. A lost connection is reopened on the next wait."""

    def __init__(self, database_url: str, channel: str) -> None:
        self.url = database_url
        self.channel = channel
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg
        from psycopg import sql

        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        return conn

    def wait(self, seconds: float) -> None:
        try:
            if self._conn is None:
                self._conn = self._connect()
            for _ in self._conn.notifies(timeout=seconds, stop_after=1):
                pass
            # Drain what else arrived: one catch-up reads it all.
            for _ in self._conn.notifies(timeout=0.0):
                pass
        except Exception as exc:  # noqa: BLE001 - any failure: reconnect next time, poll now
            log.warning("listening for new events failed; polling meanwhile",
                        extra={"fields": {"exc_type": type(exc).__name__}})
            self.close()
            time.sleep(min(seconds, 1.0))

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001,S110 - closing a broken connection  # nosec B110
                pass
            self._conn = None


def build_monitor(built: Any) -> LogMonitor:
    """The monitor over a composition's `Components` (infrastructure/composition.py)."""
    from infrastructure.composition import monitor_hours, monitor_rules
    from infrastructure.crypto.keyring import BLIND_INDEX_ROOT, SYSTEM_SUBJECT

    settings = built.settings
    store = MonitorStore(built.events_db, built.keyring.raw_key(SYSTEM_SUBJECT, BLIND_INDEX_ROOT))
    return LogMonitor(built.app, built.audit_trail, store, built.identity.sessions,
                      rules=monitor_rules(settings), hours=monitor_hours(settings),
                      clock=built.identity.now)


class InProcessMonitor:
    """The monitor as a thread of `strongroom serve` on SQLite: every gunicorn worker
    tries an exclusive lock on `<instance>/monitor.lock`; the one holding it runs the
    monitor, the others try again every few seconds (so a worker that dies hands it
    on). One monitor per instance, however many workers."""

    def __init__(self, built: Any, lock_path: Path, *, poll: float = 0.1, retry: float = 2.0) -> None:
        self.built = built
        self.lock_path = lock_path
        self.poll = poll
        self.retry = retry
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="strongroom-monitor", daemon=True)
        self.running = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        handle = open(self.lock_path, "a+")  # noqa: SIM115 - held for the thread's life
        try:
            while not self._stop.is_set():
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    self._stop.wait(self.retry)
                    continue
                self.running = True
                log.info("monitor running in this server process", extra={"fields": {"lock": str(self.lock_path)}})
                try:
                    build_monitor(self.built).run_forever(stop=self._stop.is_set, wait=self._stop.wait,
                                                          idle_wait=self.poll)
                except Exception as exc:  # noqa: BLE001 - logged, lock handed on, tried again
                    log.error("the monitor stopped", extra={"fields": {"exc_type": type(exc).__name__}})
                    self._stop.wait(self.retry)
                finally:
                    self.running = False
                    fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            handle.close()
