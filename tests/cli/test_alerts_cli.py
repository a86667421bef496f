"""`strongroom alerts list|ack` (R3.6): the operator lists alerts with filters and
acknowledges one with a note, as operator:<user>@<host>; each listing is recorded;
the client address an alert carries is never printed."""

from __future__ import annotations

import json

import pytest

from application.context import RequestContext, acting_as
from cli.context import operator_id
from domain.alerts import Alert
from domain.audit import AccessRecord
from infrastructure.composition import Settings, build
from tests.cli.test_cli import run

ADDRESS = "192.0.2.44"


def settings_from(env):
    return {k.removeprefix("STRONGROOM_").lower(): v for k, v in env.items() if k != "STRONGROOM_WEBHOOK_SECRET"}


def raise_alerts(instance, env):
    settings = Settings.load(instance, settings_from(env))
    built = build(settings)
    try:
        with acting_as(RequestContext(actor_id="monitor", via="worker")):
            ids = []
            for n, (rule, severity) in enumerate([("login_burst", "medium"), ("break_glass", "critical"),
                                                  ("login_burst", "medium")]):
                alert = Alert.raise_alert(rule_id=rule, key=str(n), severity=severity, summary=f"{rule} seen",
                                          actor_id="staff-7", client_addr=ADDRESS, positions=[n])
                built.app.save(alert)
                ids.append(str(alert.id))
        return ids
    finally:
        built.close()


def listings(instance, env) -> list:
    settings = Settings.load(instance, settings_from(env))
    built = build(settings)
    try:
        events = [built.app.mapper.to_domain_event(n)
                  for n in built.app.recorder.select_notifications(start=1, limit=10_000)]
        return [e for e in events if isinstance(e, AccessRecord.Event) and e.details.get("operation") == "alerts:list"]
    finally:
        built.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request, tmp_path):
    if request.param == "sqlite":
        return {}
    return {"STRONGROOM_DATABASE_URL": request.getfixturevalue("pg_url")}


def test_the_operator_lists_and_acknowledges_alerts(tmp_path, store_env):
    instance = tmp_path / "instance"
    assert run(instance, "init", "--json", env=store_env).exit_code == 0
    ids = raise_alerts(instance, store_env)

    listed = run(instance, "alerts", "list", "--json", "--rule", "login_burst", env=store_env)
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert sorted(r["id"] for r in rows) == sorted([ids[0], ids[2]]) and ADDRESS not in listed.output
    table = run(instance, "alerts", "list", "--severity", "critical", env=store_env)
    assert table.exit_code == 0 and ids[1] in table.output and ids[0] not in table.output

    acked = run(instance, "alerts", "ack", ids[1], "--note", "break-glass was a drill", "--json", env=store_env)
    assert acked.exit_code == 0, acked.output
    assert json.loads(acked.output)["acknowledged_by"] == operator_id()
    again = run(instance, "alerts", "ack", ids[1], "--note", "again", env=store_env)
    assert again.exit_code == 1 and "already acknowledged" in again.output
    missing = run(instance, "alerts", "ack", "00000000-0000-4000-8000-000000000000", "--note", "x", env=store_env)
    assert missing.exit_code == 1 and "no such alert" in missing.output
    blank = run(instance, "alerts", "ack", ids[0], "--note", "   ", env=store_env)
    assert blank.exit_code == 2 and "note" in blank.output
    open_ones = run(instance, "alerts", "list", "--json", "--status", "open", env=store_env)
    assert {json.loads(line)["id"] for line in open_ones.output.splitlines()} == {ids[0], ids[2]}
    bad = run(instance, "alerts", "list", "--since", "2026-02-01", "--until", "2026-01-01", env=store_env)
    assert bad.exit_code == 2 and "since" in bad.output

    records = listings(instance, store_env)
    assert len(records) == 3 and all(r.kind == "audit_read" for r in records)


def test_worker_webhooks_dead_letters_then_the_operator_redelivers(tmp_path, pg_url):
    """`strongroom worker --webhooks` (a real process, PostgreSQL) gives up on a receiver
    that is down; `alerts dead-letters` lists it and `alerts redeliver` sends it once the
    receiver is back."""
    import signal
    import subprocess
    import time

    from tests.e2e.server import ROOT, clean_env, strongroom
    from tests.infrastructure.test_webhooks import free_port
    from tests.infrastructure.webhook_receiver import SECRET, webhook_receiver

    port = free_port()
    env = {"STRONGROOM_DATABASE_URL": pg_url, "STRONGROOM_WEBHOOK_URLS": f"http://127.0.0.1:{port}/hook",
           "STRONGROOM_WEBHOOK_SECRET": SECRET, "STRONGROOM_WEBHOOK_MAX_ATTEMPTS": "2",
           "STRONGROOM_WEBHOOK_BACKOFF_SECONDS": "0.05"}
    instance = tmp_path / "instance"
    assert run(instance, "init", "--json", env=env).exit_code == 0
    worker = subprocess.Popen(strongroom("--instance", str(instance), "worker", "--webhooks"), cwd=ROOT,
                              env={**clean_env(), **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        alert_id = raise_alerts(instance, env)[1]
        deadline = time.monotonic() + 30  # the worker process starts on a busy machine
        while True:
            listed = run(instance, "alerts", "dead-letters", "--json", env=env)
            dead = [json.loads(line) for line in listed.output.splitlines()]
            if len(dead) == 3:
                break
            assert time.monotonic() < deadline, listed.output
            time.sleep(0.2)
        assert alert_id in {d["alert_id"] for d in dead} and {d["attempts"] for d in dead} == {2}
        assert SECRET not in listed.output
        with webhook_receiver(port=port) as receiver:
            sent = run(instance, "alerts", "redeliver", alert_id, env=env)
            assert sent.exit_code == 0, sent.output
            started = time.monotonic()
            while not receiver.taken():
                assert time.monotonic() - started < 5.0
                time.sleep(0.02)
            assert [d.delivery_id for d in receiver.taken()] == [alert_id] and receiver.taken()[0].verified
        nothing = run(instance, "alerts", "redeliver", alert_id, env=env)
        assert nothing.exit_code == 1 and "no dead webhook delivery" in nothing.output
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=10)[0].decode()
    assert worker.returncode == 0, output
    assert SECRET not in output and "webhook delivery dead-lettered" in output


def test_doctor_checks_webhooks_and_never_shows_the_secret(tmp_path, monkeypatch):
    """Attack named: alerts sent in clear over the network (plain http) in production,
    or signed with a secret that another local user can read."""
    from tests.infrastructure.webhook_receiver import SECRET

    instance = tmp_path / "instance"
    assert run(instance, "init").exit_code == 0
    config = json.loads((instance / "strongroom.json").read_text())
    monkeypatch.setenv("STRONGROOM_WEBHOOK_URLS", "http://127.0.0.1:9/t0k3n")
    missing = run(instance, "doctor", "--json")
    assert missing.exit_code == 1
    failed = {c["check"]: c["detail"] for c in json.loads(missing.output) if not c["passed"]}
    assert list(failed) == ["webhook signing secret usable"] and "t0k3n" not in missing.output

    secret_file = tmp_path / "webhook.secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o644)
    monkeypatch.setenv("STRONGROOM_WEBHOOK_SECRET_FILE", str(secret_file))
    readable = run(instance, "doctor", "--json")
    assert readable.exit_code == 1 and "chmod 600" in readable.output
    secret_file.chmod(0o600)
    fine = run(instance, "doctor", "--json")
    assert fine.exit_code == 0, fine.output
    assert SECRET not in fine.output and "t0k3n" not in fine.output

    (instance / "strongroom.json").write_text(json.dumps({**config, "environment": "production",
                                                          "allow_local_kek": True}))
    production = run(instance, "doctor", "--json")
    assert production.exit_code == 2 and "plain http webhooks are refused in production" in production.output
    monkeypatch.setenv("STRONGROOM_WEBHOOK_URLS", "https://hooks.example.org/t0k3n")
    https = run(instance, "doctor", "--json")
    assert https.exit_code == 0, https.output
    assert {c["check"] for c in json.loads(https.output)} >= {"webhooks use https", "webhook signing secret usable"}
