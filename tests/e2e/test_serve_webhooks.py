"""`strongroom serve` on SQLite runs the one webhook dispatcher (R3.6): an alert saved
into the store reaches a real receiver on loopback within 2 s, signed, and a security
officer lists it over TLS; stopping serve stops the dispatcher. Without a signing
secret, serve refuses to start."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from application.context import RequestContext, acting_as
from domain.alerts import Alert
from infrastructure.composition import Settings, build
from tests.e2e.server import ROOT, call, clean_env, first_sign_in, initialise, serving, staff_add, strongroom
from tests.infrastructure.webhook_receiver import SECRET, webhook_receiver


def _raise(instance: Path, url: str, key: str) -> str:
    built = build(Settings.load(instance, {"webhook_urls": [url]}))
    try:
        alert = Alert.raise_alert(rule_id="password_spray", key=key, severity="high",
                                  summary="failed logins for many accounts from one address",
                                  client_addr="127.0.0.9", positions=[int(key)])
        with acting_as(RequestContext(actor_id="monitor", via="worker")):
            built.app.save(alert)
        return str(alert.id)
    finally:
        built.close()


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def test_serve_delivers_alerts_to_the_webhook_and_lists_them(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    initialise(instance)
    officer = staff_add(instance, "sofia", "security_officer")
    with webhook_receiver() as receiver:
        env = {"STRONGROOM_WEBHOOK_URLS": receiver.url, "STRONGROOM_WEBHOOK_SECRET": SECRET}
        with serving(instance, tmp_path / "serve.log", env=env) as server:
            started = time.monotonic()
            alert_id = _raise(instance, receiver.url, "1")
            while not receiver.taken():
                assert time.monotonic() - started < 2.0, (tmp_path / "serve.log").read_text()
                time.sleep(0.02)
            (delivery,) = receiver.taken()
            assert delivery.verified and delivery.delivery_id == alert_id and b"127.0.0.9" not in delivery.body

            token, _ = first_sign_in(server, officer, "marmalade kettle over the fjord")
            status, _, page = call(server, "GET", "/api/v1/alerts?rule_id=password_spray", token=token)
            assert status == 200 and [a["id"] for a in page["items"]] == [alert_id]
            dispatchers = [pid for pid in _children(server["process"].pid)
                           if "--webhooks" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
            assert len(dispatchers) == 1
        # serve stopped its dispatcher (and reaped it) on the way out.
        assert not Path(f"/proc/{dispatchers[0]}").exists()
    log_lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines() if line.startswith("{")]
    assert any(line.get("message") == "alert delivered to webhook" for line in log_lines)
    assert SECRET not in (tmp_path / "serve.log").read_text()


def test_serve_refuses_to_start_with_webhooks_but_no_secret(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    initialise(instance)
    done = subprocess.run(strongroom("--instance", str(instance), "serve", "--port", "1"), cwd=ROOT,
                          env={**clean_env(), "STRONGROOM_WEBHOOK_URLS": "https://hooks.example.org/x"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "signing secret" in done.stderr
    assert os.environ.get("STRONGROOM_WEBHOOK_SECRET") is None
