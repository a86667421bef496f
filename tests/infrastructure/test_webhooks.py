"""Alerts delivered to webhooks (R3.6), against a real HTTP receiver on loopback that
checks each signature, on SQLite and PostgreSQL.

A raised alert reaches the receiver within 2 s, signed (a tampered body fails the
check), with its id as the delivery id and no client address; a receiver that
answers 500 then 200 gets it on the retry; one that is down dead-letters it after
the last attempt, and it goes out when redelivered once the receiver is up; two
dispatchers on one PostgreSQL never deliver the same alert twice.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from application.context import RequestContext, acting_as
from application.security import Actor
from domain.alerts import Alert
from infrastructure.composition import ConfigurationError, Settings, webhook_dispatcher
from infrastructure.webhooks import WebhookRefused, check_url, payload, sign, verify_signature
from tests.application.conftest import make_components
from tests.infrastructure.webhook_receiver import SECRET, webhook_receiver

ADDRESS = "203.0.113.200"
OFFICER = Actor(staff_id="staff-so", username="so", roles=frozenset({"security_officer"}), portfolios=frozenset())


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_WEBHOOK_SECRET", SECRET)


def built_for(tmp_path: Any, database_url: str, *urls: str, **settings: Any) -> Any:
    return make_components(tmp_path, database_url, webhook_urls=list(urls), webhook_max_attempts=3,
                           webhook_backoff_seconds=0.05, webhook_timeout_seconds=2.0, **settings)


class Running:
    """A dispatcher's run_forever in a thread, stopped on exit."""

    def __init__(self, built: Any) -> None:
        self.dispatcher = webhook_dispatcher(built)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.dispatcher.run_forever, args=(self.stopping.is_set,), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stopping.set()
        self.thread.join(5)


def raise_alert(built: Any, key: str, rule_id: str = "login_burst") -> str:
    alert = Alert.raise_alert(rule_id=rule_id, key=key, severity="high", summary="failed logins from one address",
                              actor_id="staff-1", client_addr=ADDRESS, positions=[int(key)],
                              details={"address_seen": "yes"})
    with acting_as(RequestContext(actor_id="monitor", via="worker")):
        built.app.save(alert)
    return str(alert.id)


def wait_for(condition: Any, seconds: float = 5.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError("not within the time")
        time.sleep(0.01)
    return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def built(request: pytest.FixtureRequest, tmp_path: Any, database_url: str) -> Iterator[Any]:
    made: list[Any] = []

    def make(*urls: str, **settings: Any) -> Any:
        components = built_for(tmp_path, database_url, *urls, **settings)
        made.append(components)
        return components

    yield make
    for components in made:
        components.close()


@pytest.mark.controls("PCI-DSS-10.4.1.1")
def test_a_raised_alert_reaches_the_receiver_signed_within_two_seconds(built: Any) -> None:
    with webhook_receiver() as receiver:
        components = built(receiver.url)
        with Running(components):
            alert_id = raise_alert(components, "1")
            took = wait_for(lambda: receiver.taken(), 2.0)
        assert took < 2.0
        (delivery,) = receiver.taken()
        assert delivery.verified and delivery.delivery_id == delivery.idempotency_key == alert_id
        assert delivery.alert["id"] == alert_id and delivery.alert["rule_id"] == "login_burst"
        # Ids only: the address and the details an alert carries stay home.
        assert ADDRESS.encode() not in delivery.body and b"address_seen" not in delivery.body
        # Attack: a man in the middle changes the body (or replays an old one); the check fails.
        tampered = delivery.body.replace(b'"high"', b'"low"')
        assert not verify_signature(SECRET.encode(), delivery.signature, tampered)
        assert not verify_signature(b"another-secret-another-secret-xx", delivery.signature, delivery.body)
        assert not verify_signature(SECRET.encode(), delivery.signature, delivery.body, now=time.time() + 3600)
        assert components.webhooks.counts() == {"delivered": 1}


def test_a_receiver_answering_500_then_200_gets_it_on_the_retry(built: Any) -> None:
    with webhook_receiver(answers=[500]) as receiver:
        components = built(receiver.url)
        with Running(components):
            alert_id = raise_alert(components, "2")
            wait_for(lambda: receiver.taken(), 3.0)
        assert receiver.attempts == 2 and [d.delivery_id for d in receiver.taken()] == [alert_id]
        assert components.webhooks.counts() == {"delivered": 1} and components.webhooks.dead_letters() == []


def test_a_receiver_that_is_down_gets_a_dead_letter_then_the_redelivery(built: Any) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/strongroom"
    components = built(url)
    with Running(components):
        alert_id = raise_alert(components, "3")
        wait_for(lambda: components.webhooks.dead_letters(), 5.0)
        (dead,) = components.webhooks.dead_letters()
        assert (dead["alert_id"], dead["attempts"], dead["last_error"]) == (alert_id, 3, "URLError")
        assert dead["target"] == f"http://127.0.0.1:{port}"
        with webhook_receiver(port=port) as receiver, acting_as(RequestContext(actor_id="staff-so", via="api")):
            assert components.alerts.redeliver(OFFICER, alert_id) == 1
            wait_for(lambda: receiver.taken(), 2.0)
            assert [d.delivery_id for d in receiver.taken()] == [alert_id] and receiver.taken()[0].verified
        # The dead letter, the redelivery and the delivery are each an event on the alert.
        wait_for(lambda: components.alert_table.get(alert_id)["applied"]["webhook"].startswith("delivered"), 2.0)
    assert components.webhooks.dead_letters() == []
    assert components.alert_table.get(alert_id)["applied"] == {"webhook": f"delivered to http://127.0.0.1:{port}"}
    stored = components.app.recorder.select_events(uuid.UUID(alert_id))
    outcomes = [getattr(components.app.mapper.to_domain_event(e), "outcome", None) for e in stored]
    assert outcomes == [None, f"dead letter at http://127.0.0.1:{port} after 3 attempts (URLError)",
                        "redelivery requested", f"delivered to http://127.0.0.1:{port}"]


def test_every_configured_receiver_gets_each_alert_and_a_failed_save_queues_nothing(built: Any) -> None:
    with webhook_receiver() as first, webhook_receiver() as second:
        components = built(first.url, second.url)
        raise_alert(components, "4")
        with pytest.raises(Exception):
            raise_alert(components, "4")  # the same alert again: refused, nothing queued
        with Running(components):
            wait_for(lambda: first.taken() and second.taken(), 2.0)
        time.sleep(0.6)
        assert first.attempts == second.attempts == 1
        assert components.webhooks.counts() == {"delivered": 2}


def test_only_alerts_asking_for_a_webhook_when_not_every_alert(built: Any) -> None:
    with webhook_receiver() as receiver:
        components = built(receiver.url, webhook_every_alert=False)
        quiet = raise_alert(components, "5")
        loud = Alert.raise_alert(rule_id="break_glass", key="6", severity="critical", summary="break-glass opened",
                                 responses=("alert", "webhook"))
        with acting_as(RequestContext(actor_id="monitor", via="worker")):
            components.app.save(loud)
        with Running(components):
            wait_for(lambda: receiver.taken(), 2.0)
            time.sleep(0.6)
        assert [d.delivery_id for d in receiver.taken()] == [str(loud.id)] and quiet


def test_two_dispatchers_on_one_postgresql_never_deliver_the_same_alert_twice(tmp_path: Any, pg_url: str) -> None:
    """Several API or worker processes share one database (R7.4): each row is leased
    under FOR UPDATE SKIP LOCKED, so no alert goes out twice while both run."""
    with webhook_receiver() as receiver:
        one = built_for(tmp_path, pg_url, receiver.url)
        two = built_for(tmp_path, pg_url, receiver.url)
        try:
            with Running(one), Running(two):
                ids = {raise_alert(one if n % 2 else two, str(n)) for n in range(1, 41)}
                wait_for(lambda: len(receiver.taken()) == 40, 10.0)
                time.sleep(0.6)
            assert {d.delivery_id for d in receiver.taken()} == ids
            assert receiver.attempts == 40  # not one repeat
        finally:
            one.close()
            two.close()


@pytest.mark.parametrize("url", [
    "http://hooks.example.org/x",  # plain http off the host
    "ftp://127.0.0.1/x",
    "https://user:pass@hooks.example.org/x",  # credentials in a URL
    "https:///nohost",
])
def test_unusable_webhook_urls_are_refused(url: str) -> None:
    with pytest.raises(WebhookRefused):
        check_url(url)


def test_settings_refuse_plain_http_in_production_and_never_echo_the_url(tmp_path: Any) -> None:
    assert check_url("http://127.0.0.1:9/x").label == "http://127.0.0.1:9"
    assert check_url("https://hooks.example.org/t0k3n").label == "https://hooks.example.org"
    with pytest.raises(ConfigurationError) as refused:
        Settings.load(tmp_path, {"environment": "production", "webhook_urls": ["http://127.0.0.1:9/t0k3n"]})
    assert "production" in str(refused.value) and "t0k3n" not in str(refused.value)
    with pytest.raises(ConfigurationError):
        Settings.load(tmp_path, {"webhook_urls": "not a list ["})
    settings = Settings.load(tmp_path, {"webhook_urls": "https://a.example.org/1, https://b.example.org/2"})
    assert settings.webhook_urls == ("https://a.example.org/1", "https://b.example.org/2")


def test_a_missing_or_short_secret_stops_the_dispatcher(built: Any, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Any) -> None:
    components = built("https://hooks.example.org/x")
    monkeypatch.delenv("STRONGROOM_WEBHOOK_SECRET")
    with pytest.raises(ConfigurationError, match="signing secret"):
        webhook_dispatcher(components)
    monkeypatch.setenv("STRONGROOM_WEBHOOK_SECRET", "short")
    with pytest.raises(ConfigurationError, match="at least"):
        webhook_dispatcher(components)


def test_the_signature_covers_timestamp_and_body() -> None:
    body = payload({"id": "a", "rule_id": "r", "client_addr": ADDRESS})
    assert ADDRESS not in body.decode() and json.loads(body)["alert"]["id"] == "a"
    header = sign(SECRET.encode(), body, 1_700_000_000)
    assert verify_signature(SECRET.encode(), header, body, now=1_700_000_010)
    moved = header.replace("t=1700000000", "t=1700000001")  # a replay with a fresh time
    assert not verify_signature(SECRET.encode(), moved, body, now=1_700_000_010)
    assert not verify_signature(SECRET.encode(), "garbage", body)


def test_a_receiver_that_hangs_holds_up_no_other(built: Any) -> None:
    """Attack (or accident): one receiver accepts connections and never answers; alerts
    still reach the others within 2 s, and the hung one is retried after its timeout."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    try:
        with webhook_receiver() as receiver:
            components = built(f"http://127.0.0.1:{hung.getsockname()[1]}/hook", receiver.url)
            with Running(components):
                ids = {raise_alert(components, str(n)) for n in range(1, 4)}
                took = wait_for(lambda: len(receiver.taken()) == 3, 2.0)
            assert took < 2.0 and {d.delivery_id for d in receiver.taken()} == ids
    finally:
        hung.close()
