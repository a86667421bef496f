"""The monitor checked from outside (issue 12; R3.6, R2.8, R7.4): attacks over TLS against
a real `strongroom serve` (two workers) on PostgreSQL, watched by a real
`strongroom worker --monitor` process woken by NOTIFY; each alert must be stored
exactly once within 2 s of the request that completed it, with its response applied —
in the store, in `GET /api/v1/alerts` (as a security officer) and at a real webhook
receiver on loopback, its signature checked with the shared secret.

Then the monitor is killed with SIGKILL in the middle of a burst and started again:
the burst still raises its alert, once. And once on SQLite, where the monitor runs
inside `strongroom serve` (one of its workers holds the lock).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from application.context import RequestContext, acting_as
from infrastructure.composition import Settings, build
from tests.conftest import fresh_pg_database
from tests.infrastructure.webhook_receiver import SECRET, Receiver, webhook_receiver
from tests.e2e.server import (
    ROOT,
    call,
    clean_env,
    first_sign_in,
    initialise,
    serving,
    staff_add,
    strongroom,
)

PASSWORD = "quiet-harbour lanterns at noon"
ALL_WEEK = {"monitor_business_hours": "00:00-23:59:59", "monitor_business_days": "mon,tue,wed,thu,fri,sat,sun"}
WITHIN = 2.0  # seconds from the completing request to the stored alert (R3.6)


class AlertReader:
    """Alerts as stored in the log, read with the instance's keys (as the operator); with
    a server, an officer's token and a receiver, each alert waited for must also be
    listed by the API and delivered to the receiver, within the same time."""

    def __init__(self, instance: Path, *, server: dict | None = None, officer: str | None = None,
                 receiver: Receiver | None = None) -> None:
        self.built = build(Settings.load(instance, {"create_schema": False}))
        self.seen: list[Any] = []
        self.after = 0
        self.server, self.officer, self.receiver = server, officer, receiver

    def refresh(self) -> list[Any]:
        app = self.built.app
        with acting_as(RequestContext(actor_id="operator:test", via="cli")):
            for notification in app.recorder.select_notifications(start=self.after + 1, limit=10_000):
                self.after = notification.id
                if notification.topic.endswith("Alert.Raised"):
                    self.seen.append(app.repository.get(notification.originator_id))
        return self.seen

    def wait_for(self, rule_id: str, actor_id: str | None = None, *, within: float = WITHIN,
                 since: float | None = None) -> Any:
        """The one alert of `rule_id` (for `actor_id`), once it is stored; fails past `within`."""
        started = since if since is not None else time.monotonic()
        while True:
            found = [a for a in self.refresh() if a.rule_id == rule_id and actor_id in (None, a.actor_id)]
            if found and self._listed_and_delivered(str(found[0].id)):
                took = time.monotonic() - started
                assert took <= within, f"{rule_id} took {took:.2f} s"
                return app_alert(self.built.app, found[0].id)
            if time.monotonic() - started > within:
                pytest.fail(f"no {rule_id} alert within {within} s")
            time.sleep(0.05)

    def _listed_and_delivered(self, alert_id: str) -> bool:
        if self.server is not None and self.officer is not None:
            status, _, page = call(self.server, "GET", f"/api/v1/alerts/{alert_id}", token=self.officer)
            if status != 200:
                return False
        if self.receiver is not None:
            delivered = [d for d in self.receiver.taken() if d.alert["id"] == alert_id]
            if not delivered:
                return False
            assert all(d.verified for d in delivered), "a delivery failed its signature check"
        return True

    def listed(self, rule_id: str) -> list[dict[str, Any]]:
        """The alerts of `rule_id` the API lists to the security officer."""
        status, _, page = call(self.server, "GET", f"/api/v1/alerts?rule_id={rule_id}&limit=200", token=self.officer)
        assert status == 200, page
        return list(page["items"])

    def delivered(self, alert_id: str) -> int:
        """Deliveries of the alert the receiver took (repeats by delivery id dropped)."""
        assert self.receiver is not None
        return len([d for d in self.receiver.taken() if d.alert["id"] == alert_id])

    def count(self, rule_id: str, actor_id: str | None = None) -> int:
        return len([a for a in self.refresh() if a.rule_id == rule_id and actor_id in (None, a.actor_id)])

    def close(self) -> None:
        self.built.close()


_USED_STEPS: dict[int, int] = {}


def fresh_code(totp: Any) -> str:
    """A TOTP code of a step this account has not used yet (each counts once; ±1 step
    is accepted), waiting for the clock when need be. `first_sign_in` used the steps up
    to one past its own."""
    step = max(int(time.time()) // 30 - 1, _USED_STEPS.get(id(totp), int(time.time()) // 30 + 1) + 1)
    while step > int(time.time()) // 30 + 1:
        time.sleep(0.5)
    _USED_STEPS[id(totp)] = step
    return str(totp.generate_otp(step))


def app_alert(app: Any, alert_id: Any) -> Any:
    """The alert as it is now (its responses recorded)."""
    return app.repository.get(alert_id)


@contextmanager
def monitor_process(instance: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`strongroom worker --monitor`, up once it logs that it follows the log."""
    log = log_path.open("ab")
    process = subprocess.Popen(strongroom("--instance", str(instance), "worker", "--monitor"), cwd=ROOT,
                               env=clean_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "monitor following the log" not in log_path.read_text():
            if process.poll() is not None:
                pytest.fail(f"the monitor exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail("the monitor did not start within 60 s")
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


def configure(instance: Path, **settings: Any) -> None:
    config = json.loads((instance / "strongroom.json").read_text())
    (instance / "strongroom.json").write_text(json.dumps({**config, **settings}))


def with_webhook(instance: Path, receiver: Receiver) -> None:
    """Alerts go to `receiver`, signed with a secret from an owner-only file."""
    secret = instance / "webhook.secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    configure(instance, webhook_urls=[receiver.url], webhook_secret_file=str(secret),
              webhook_backoff_seconds=0.2)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("monitor-pg")
    with fresh_pg_database() as url, webhook_receiver() as receiver:
        instance = folder / "instance"
        admin = initialise(instance, {"STRONGROOM_DATABASE_URL": url})
        configure(instance, database_url=url, **ALL_WEEK)
        with_webhook(instance, receiver)
        accounts = {name: staff_add(instance, name, role, portfolio) for name, role, portfolio in (
            ("prober", "agent", "retail"), ("prober.two", "agent", "retail"),
            ("glass.sup", "supervisor", "retail"), ("wanderer", "agent", "retail"),
            ("second.admin", "admin", None), ("dual.role", ("agent", "supervisor"), "retail"),
            ("watcher", "security_officer", None))}
        reader = None
        try:
            with serving(instance, folder / "serve.log", workers=2) as server, \
                    monitor_process(instance, folder / "monitor.log") as monitor:
                tokens = {}
                for name, account in accounts.items():
                    if name != "dual.role":
                        tokens[name] = first_sign_in(server, account, PASSWORD)
                        _USED_STEPS[id(tokens[name][1])] = int(time.time()) // 30 + 1
                reader = AlertReader(instance, server=server, officer=tokens["watcher"][0], receiver=receiver)
                yield {"server": server, "instance": instance, "tokens": tokens, "admin": admin, "reader": reader,
                       "ids": {n: a["id"] for n, a in accounts.items()}, "monitor": monitor, "folder": folder,
                       "receiver": receiver}
        finally:
            if reader is not None:
                reader.close()


def once_everywhere(reader: AlertReader, rule_id: str, actor_id: str | None = None) -> None:
    """Exactly one alert of the rule (for the actor) in the store, in the API's listing
    and at the receiver: nothing raised or delivered twice."""
    assert reader.count(rule_id, actor_id) == 1
    listed = [a for a in reader.listed(rule_id) if actor_id in (None, a["actor_id"])]
    assert len(listed) == 1, listed
    assert reader.delivered(listed[0]["id"]) == 1


@pytest.mark.controls("PCI-DSS-10.4.1.1", "GDPR-33")
def test_a_search_oracle_is_alerted_once_and_the_probers_sessions_end(world):
    server, (token, _) = world["server"], world["tokens"]["prober"]
    for guess in range(10):
        status, _, body = call(server, "GET", f"/api/v1/customers?email=guess{guess}%40example.org", token=token)
        assert status == 200 and body["items"] == [], body
        completed = time.monotonic()
    alert = world["reader"].wait_for("searches_empty", world["ids"]["prober"], since=completed)
    assert alert.severity == "critical" and alert.applied["end_sessions"] == "every live session ended"
    # The response, seen from outside: the prober's token no longer works.
    assert call(server, "GET", "/api/v1/customers?portfolio=retail", token=token)[0] == 401
    time.sleep(0.5)
    once_everywhere(world["reader"], "searches_empty", world["ids"]["prober"])


def test_a_password_spray_from_one_address_is_alerted_once(world):
    server = world["server"]
    names = ["prober", "glass.sup", "wanderer", "second.admin", "dual.role"]
    for attempt in range(10):
        status, _, _ = call(server, "POST", "/api/v1/auth/login", source="127.0.0.9",
                            body={"username": names[attempt % len(names)], "password": "Winter2026!Winter2026!"})
        assert status in (401, 429)  # past five failures the address is throttled (R2.11)
        completed = time.monotonic()
    alert = world["reader"].wait_for("login_failures_address", since=completed)
    assert alert.client_addr == "127.0.0.9" and alert.details["count"] == "10"
    time.sleep(0.5)
    once_everywhere(world["reader"], "login_failures_address")


def test_break_glass_is_alerted_at_once(world):
    # `first_sign_in` stepped up moments ago: break-glass needs that within 5 minutes.
    server, (token, _) = world["server"], world["tokens"]["glass.sup"]
    status, _, grant = call(server, "POST", "/api/v1/break-glass", token=token,
                            body={"portfolio": "private", "reason": "INC-77 fraud on a private account",
                                  "minutes": 15})
    completed = time.monotonic()
    assert status == 201, grant
    alert = world["reader"].wait_for("break_glass_opened", world["ids"]["glass.sup"], since=completed)
    assert alert.severity == "critical" and alert.details["grant_id"] == grant["id"]
    once_everywhere(world["reader"], "break_glass_opened", world["ids"]["glass.sup"])


def test_a_role_change_is_alerted(world):
    server, (token, _) = world["server"], world["tokens"]["second.admin"]
    subject = world["ids"]["dual.role"]
    status, _, changed = call(server, "POST", f"/api/v1/staff/{subject}/roles", token=token,
                              body={"grant": [], "revoke": ["supervisor"]})
    completed = time.monotonic()
    assert status == 200, changed
    alert = world["reader"].wait_for("privilege_change", world["ids"]["second.admin"], since=completed)
    assert alert.details == {"staff_id": subject, "revoked": "supervisor"}
    once_everywhere(world["reader"], "privilege_change", world["ids"]["second.admin"])


def test_a_sign_in_from_a_new_address_is_alerted(world):
    server = world["server"]
    status, _, started = call(server, "POST", "/api/v1/auth/login", source="127.0.0.23",
                              body={"username": "wanderer", "password": PASSWORD})
    assert status == 200, started
    _, totp = world["tokens"]["wanderer"]
    status, _, opened = call(server, "POST", "/api/v1/auth/mfa", source="127.0.0.23",
                             body={"challenge": started["challenge"], "code": fresh_code(totp)})
    completed = time.monotonic()
    assert status == 200, opened
    alert = world["reader"].wait_for("new_address", world["ids"]["wanderer"], since=completed)
    assert alert.client_addr == "127.0.0.23"
    once_everywhere(world["reader"], "new_address", world["ids"]["wanderer"])


@pytest.mark.controls("PCI-DSS-10.4.1.1")
def test_a_monitor_killed_in_the_middle_of_a_burst_raises_its_alert_once_after_restart(world):
    server, (token, _) = world["server"], world["tokens"]["prober.two"]
    reader, prober = world["reader"], world["ids"]["prober.two"]
    for guess in range(6):
        assert call(server, "GET", f"/api/v1/customers?email=half{guess}%40example.org", token=token)[0] == 200
    time.sleep(1.0)  # the monitor has read the first half of the burst (and tracked it)
    world["monitor"].send_signal(signal.SIGKILL)
    world["monitor"].wait()
    for guess in range(6, 12):
        assert call(server, "GET", f"/api/v1/customers?email=half{guess}%40example.org", token=token)[0] == 200
    assert reader.count("searches_empty", prober) == 0  # nobody is watching
    with monitor_process(world["instance"], world["folder"] / "monitor-again.log"):
        started = time.monotonic()
        alert = reader.wait_for("searches_empty", prober, since=started, within=WITHIN + 3)
        assert alert.positions and len(alert.positions) == 10
        time.sleep(1.0)
        once_everywhere(reader, "searches_empty", prober)
        assert reader.count("searches_empty") == 2  # the first test's, and this one: none twice
    logged = (world["folder"] / "monitor-again.log").read_text().splitlines()
    assert logged and all(json.loads(line) for line in logged)  # JSON lines only (R7.3)


def test_on_sqlite_the_monitor_runs_inside_serve(tmp_path: Path):
    instance = tmp_path / "instance"
    initialise(instance)
    configure(instance, **ALL_WEEK)
    account = staff_add(instance, "lone.prober", "agent", "retail")
    officer = staff_add(instance, "lone.watcher", "security_officer")
    with webhook_receiver() as receiver:
        with_webhook(instance, receiver)
        with serving(instance, tmp_path / "serve.log", workers=2) as server:
            token, _ = first_sign_in(server, account, PASSWORD)
            watcher, _ = first_sign_in(server, officer, PASSWORD)
            for guess in range(10):
                assert call(server, "GET", f"/api/v1/customers?email=g{guess}%40example.org", token=token)[0] == 200
            completed = time.monotonic()
            reader = AlertReader(instance, server=server, officer=watcher, receiver=receiver)
            try:
                alert = reader.wait_for("searches_empty", account["id"], since=completed)
                assert alert.applied["end_sessions"] == "every live session ended"
                assert call(server, "GET", "/api/v1/customers?portfolio=retail", token=token)[0] == 401
                time.sleep(0.5)
                once_everywhere(reader, "searches_empty")  # two workers, one monitor, one dispatcher
            finally:
                reader.close()
    running = [line for line in (tmp_path / "serve.log").read_text().splitlines()
               if "monitor running in this server process" in line]
    assert len(running) == 1
